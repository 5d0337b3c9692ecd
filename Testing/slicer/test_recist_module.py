"""LesionSegRECIST offline: the pure helper (fake session), the panel's .ui and parameter names, CMake lists
(the Lesion GrabCut/CRF effect is tested in test_refine_effect.py)."""
from __future__ import annotations

import re
import sys
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import EXTENSION

from lesionseg import Image, LesionSegError, LesionSegWarning, RecistLine

MODULE = EXTENSION / "LesionSegRECIST"
sys.path.insert(0, str(MODULE))
from LesionSegRECISTLib import recist  # noqa: E402


class FakeSession:
    """Returns a fixed label; records what it was asked."""

    def __init__(self, label: Image, warn: str = "") -> None:
        self.label, self.warn, self.calls = label, warn, []

    def prepare(self, method, device, key, load_image, report=None):
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
