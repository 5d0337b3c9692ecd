"""LesionSegRECIST offline: the pure helper (fake session), the panel's .ui and parameter names, CMake lists."""
from __future__ import annotations

import re
import sys
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import EXTENSION

from lesionseg import Image, InputError, LesionSegError, LesionSegWarning, RecistLine

MODULE = EXTENSION / "LesionSegRECIST"
sys.path.insert(0, str(MODULE))
from LesionSegRECISTLib import recist  # noqa: E402


class FakeSession:
    """Returns a fixed label; records what it was asked."""

    def __init__(self, label: Image, warn: str = "") -> None:
        self.label, self.warn, self.calls = label, warn, []

    def prepare(self, method, device, key, load_image):
        self.calls.append((method, device, key))
        return load_image()

    def predict(self, prompt):
        if self.warn:
            warnings.warn(self.warn, LesionSegWarning)
        return self.label


def ellipse_label() -> Image:
    arr = np.zeros((3, 40, 50), np.uint8)
    j, i = np.indices((40, 50))
    arr[1] = ((i - 25) / 10.0) ** 2 + ((j - 20) / 5.0) ** 2 <= 1.0
    return Image(arr, (0.5, 0.5, 2.0))


def test_segment_recist_measures_the_result():
    label = ellipse_label()
    session = FakeSession(label, warn="the long axis is not on an axial slice")
    line = RecistLine((10.0, 10.0, 2.0), (15.0, 10.0, 2.0))
    result = recist.segment_recist(session, "recist-coseg", "cpu", "key", lambda: label, line)
    assert session.calls == [("recist-coseg", "cpu", "key")]
    assert result.patch.voxels == int(label.array.sum())
    assert result.patch.lo.tolist()[2] == 1 and result.patch.array.shape[0] == 1
    assert result.measured_long_mm == pytest.approx(10.0, abs=0.6)  # 20 px * 0.5 mm
    assert result.measured_short_mm == pytest.approx(5.0, abs=0.6)
    np.testing.assert_allclose(result.measured_long_lps[:, 2], [2.0, 2.0])
    assert result.warnings == ("the long axis is not on an axial slice",)
    assert result.summary().startswith("drawn 5.0 x - mm, result 10.")


def test_empty_result_raises():
    label = ellipse_label().with_array(np.zeros((3, 40, 50), np.uint8))
    with pytest.raises(LesionSegError, match="no lesion"):
        recist.segment_recist(FakeSession(label), "m", "cpu", 1, lambda: label,
                              RecistLine((0, 0, 0), (1, 0, 0)))


def test_axes_text_with_short_axis():
    line = RecistLine((0, 0, 0), (20, 0, 0), (10, -5, 0), (10, 5, 0))
    assert recist.axes_text(line, 21.04, 9.96) == "drawn 20.0 x 10.0 mm, result 21.0 x 10.0 mm"


def test_recist_methods_filter_and_default():
    classes = [type(n, (), {"name": n, "prompt_kind": k, "needs_weights": w})
               for n, k, w in (("b", "recist", True), ("a", "recist", False), ("box", "box", False),
                               ("recist-coseg", "recist", True))]
    names = recist.recist_methods(classes, has_weights=lambda n: n == "recist-coseg")
    assert names == ["a", "recist-coseg"]
    assert recist.default_method(names) == "recist-coseg"
    assert recist.default_method(["a"]) == "a" and recist.default_method([]) is None


def test_ui_binds_every_parameter():
    ui = ET.parse(MODULE / "Resources" / "UI" / "LesionSegRECIST.ui").getroot()
    bound = {w.find("string").text for w in ui.iter("property") if w.get("name") == "SlicerParameterName"}
    source = (MODULE / "LesionSegRECIST.py").read_text()
    block = source.split("class LesionSegRECISTParameterNode:")[1].split("\nclass ")[0]
    fields = set(re.findall(r"^    (\w+): ", block, re.MULTILINE))
    assert fields - {"method"} == bound
    names = {w.get("name") for w in ui.iter("widget")}
    for widget in re.findall(r"self\.ui\.(\w+)", source):
        assert widget in names
    assert len(source.splitlines()) <= 300


def test_cmake_lists_existing_files():
    text = (MODULE / "CMakeLists.txt").read_text()
    listed = re.findall(r"^\s+(\S+\.(?:py|ui|png))\s*$", text, re.MULTILINE)
    assert "LesionSegRECISTLib/recist.py" in listed
    for name in listed:
        assert (MODULE / name.replace("${MODULE_NAME}", "LesionSegRECIST")).is_file(), name


EFFECT = EXTENSION / "SegmentEditorLesionRefine"
sys.path.insert(0, str(EFFECT))
from SegmentEditorLesionRefineLib import refine as effect_refine  # noqa: E402


def nodule() -> tuple[Image, np.ndarray]:
    k, j, i = np.indices((3, 48, 48)).astype(float)
    truth = ((i - 24) ** 2 + (j - 24) ** 2 <= 100) & (k == 1)
    arr = np.where(truth, 40.0, -800.0) + np.random.default_rng(0).normal(0, 20, truth.shape)
    return Image(arr.astype(np.float32), (0.7, 0.7, 2.0), (5.0, -3.0, 10.0)), truth


def test_stroke_points_are_voxel_centres():
    image, truth = nodule()
    strokes = np.zeros(image.shape, np.uint8)
    strokes[1, 24, 20:23] = 1
    pts = effect_refine.stroke_points(image, strokes)
    np.testing.assert_allclose(pts[:, 0], 5.0 + 0.7 * np.array([20, 21, 22]))
    np.testing.assert_allclose(pts[:, 1:], [[-3.0 + 0.7 * 24, 12.0]] * 3)
    assert effect_refine.stroke_points(image, np.zeros(image.shape)) is None
    assert len(effect_refine.stroke_points(image, np.ones(image.shape), limit=10)) == 10
    with pytest.raises(InputError):
        effect_refine.stroke_points(image, strokes[0])


def test_refine_grows_a_cut_mask_with_a_stroke():
    image, truth = nodule()
    cut = truth.copy()
    cut[:, :, 26:] = False
    fg = np.zeros(image.shape, np.uint8)
    fg[1, 24, 28:31] = 1
    bg = np.zeros(image.shape, np.uint8)
    bg[1, 2, 2:5] = 1
    out = effect_refine.refine(image, cut, fg, bg)
    before = 2 * (cut & truth).sum() / (cut.sum() + truth.sum())
    after = 2 * ((out > 0) & truth).sum() / ((out > 0).sum() + truth.sum())
    assert out.dtype == np.uint8 and out[1, 24, 29] == 1 and out[1, 2, 3] == 0
    assert after > max(before, 0.85)
    with pytest.raises(InputError, match="empty"):
        effect_refine.refine(image, np.zeros(image.shape), None, bg)
    assert effect_refine.RefineSettings.names()[0] == "iterations"


def test_effect_cmake_and_sliders():
    text = (EFFECT / "CMakeLists.txt").read_text()
    for name in re.findall(r"^\s+(\S+\.(?:py|png))\s*$", text, re.MULTILINE):
        assert (EFFECT / name.replace("${MODULE_NAME}", "SegmentEditorLesionRefine")).is_file(), name
    source = (EFFECT / "SegmentEditorLesionRefineLib" / "SegmentEditorEffect.py").read_text()
    sliders = set(re.findall(r'^    \("(\w+)", "', source, re.MULTILINE))
    assert sliders == set(effect_refine.RefineSettings.names()) - {"use_crf"}
    assert len(source.splitlines()) <= 300


def test_effect_slider_defaults_are_the_backends():
    import inspect

    from lesionseg.refiners import DenseCRFRefiner

    backend = inspect.signature(DenseCRFRefiner).parameters
    settings = effect_refine.RefineSettings()
    for name in ("gaussian_sxy_mm", "gaussian_compat", "bilateral_sxy_mm", "bilateral_sintensity",
                 "bilateral_compat"):
        assert getattr(settings, name) == backend[name].default, name
    assert settings.crf_iterations == backend["iterations"].default
