"""The "Lesion GrabCut/CRF" Segment Editor effect offline: its pure computation (``LesionSegLib.refine``, real
backend) and the effect file itself, loaded the way Slicer loads it, under stub ``slicer``/``qt``/``ctk``.

Slicer's ``qSlicerSegmentEditorScriptedEffect::setPythonSource`` uses the parent folder's name as the module name
("Use parent directory name as module name") and loads the file with ``imp.load_source(<folder>, <file>)`` up to
5.8 and ``importlib.util.spec_from_file_location`` + ``module_from_spec`` + ``sys.modules[<folder>] = module`` from
5.10 (``Base/QTCore/qSlicerScriptedUtils.cxx`` ``loadSourceAsModule``), after ``PyImport_AddModule(<folder>)``.
``sys.modules["SegmentEditorLesionRefineLib"]`` is then the effect file, not the package.
"""
from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import EXTENSION
from LesionSegLib import refine as effect_refine

from lesionseg import Image, InputError

EFFECT = EXTENSION / "SegmentEditorLesionRefine"
EFFECT_FILE = EFFECT / "SegmentEditorLesionRefineLib" / "SegmentEditorEffect.py"
MODULE_NAME = EFFECT_FILE.parent.name
OVERWRITE_ALL, OVERWRITE_VISIBLE, OVERWRITE_NONE = 0, 1, 2  # vtkMRMLSegmentEditorNode.h


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


def test_effect_slider_defaults_are_the_backends():
    import inspect

    from lesionseg.refiners import DenseCRFRefiner

    backend = inspect.signature(DenseCRFRefiner).parameters
    settings = effect_refine.RefineSettings()
    for name in ("gaussian_sxy_mm", "gaussian_compat", "bilateral_sxy_mm", "bilateral_sintensity",
                 "bilateral_compat"):
        assert getattr(settings, name) == backend[name].default, name
    assert settings.crf_iterations == backend["iterations"].default


def test_refine_job_runs_without_densecrf_and_says_so(monkeypatch):
    image, truth = nodule()
    seen = []
    monkeypatch.setattr(effect_refine, "refine", lambda *args: seen.append(args[-1]) or np.zeros(image.shape, np.uint8))
    reports = []
    result = effect_refine.refine_job(reports.append, image, truth, None, None, effect_refine.RefineSettings(), False)
    assert seen[0].use_crf is False and result.notes == (effect_refine.NO_CRF_NOTE,) and reports == ["GrabCut..."]
    result = effect_refine.refine_job(reports.append, image, truth, None, None, effect_refine.RefineSettings(), True)
    assert seen[1].use_crf is True and result.notes == () and reports[-1] == "GrabCut + DenseCRF..."


def test_settings_from_parameters_round_iterations_and_flag():
    values = {**{n: float(v) for n, v in vars(effect_refine.RefineSettings()).items()}, "iterations": 7.0,
              "use_crf": 0.0, "band_mm": 2.5}
    settings = effect_refine.RefineSettings.from_parameters(values.__getitem__)
    assert settings.iterations == 7 and isinstance(settings.iterations, int) and settings.use_crf is False
    assert settings.band_mm == 2.5 and settings.crf_iterations == 5


def test_effect_cmake_and_sliders():
    text = (EFFECT / "CMakeLists.txt").read_text()
    listed = re.findall(r"^\s+(\S+\.(?:py|png))\s*$", text, re.MULTILINE)
    for name in listed:
        assert (EFFECT / name.replace("${MODULE_NAME}", "SegmentEditorLesionRefine")).is_file(), name
    assert "SegmentEditorLesionRefineLib/SegmentEditorEffect.py" in listed
    assert {s[0] for s in effect_refine.SLIDERS} == set(effect_refine.RefineSettings.names()) - {"use_crf"}
    assert len(EFFECT_FILE.read_text().splitlines()) <= 300


def test_effect_never_imports_from_its_own_folder():
    """Static: no ``import SegmentEditorLesionRefineLib...`` / ``from SegmentEditorLesionRefineLib... import`` and no
    relative import in the effect file (the folder is the effect module itself when Slicer loads it)."""
    tree = ast.parse(EFFECT_FILE.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith(MODULE_NAME), ast.unparse(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith(MODULE_NAME) for a in node.names), ast.unparse(node)


# -- the effect file loaded as Slicer loads it -------------------------------------------------------------------
class Widget:
    """Any Qt/CTK widget: free attributes, ``connect`` records slots."""

    def __init__(self, *args, **kwargs):
        self.args, self.slots, self.children = args, {}, []
        self.text = args[0] if args and isinstance(args[0], str) else ""
        self.enabled, self.checked, self.value = True, False, 0.0

    def connect(self, signal, slot):
        self.slots[signal] = slot

    def setToolTip(self, tip):
        self.toolTip = tip

    def blockSignals(self, block):
        return False

    def addWidget(self, widget):
        self.children.append(widget)

    def addItem(self, text):
        self.children.append(text)

    def addRow(self, *widgets):
        self.children.append(widgets)

    setInterval = start = stop = lambda self, *args: None
    Password = 2


class FakeSettings:
    """``qt.QSettings``: Slicer's application settings (empty: "Run on" this computer)."""

    def __init__(self, *args):
        self.values = {}

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value):
        self.values[key] = value


class FakeSegmentation:
    def __init__(self, names):
        self.segments = dict(names)
        self.count = 0

    def GetSegment(self, segmentId):
        return types.SimpleNamespace(GetName=lambda: self.segments[segmentId]) if segmentId in self.segments else None

    def AddEmptySegment(self, segmentId, name, color):
        self.count += 1
        self.segments[f"helper{self.count}"] = name
        return f"helper{self.count}"

    def RemoveSegment(self, segmentId):
        del self.segments[segmentId]


class FakeEditorNode:
    """``vtkMRMLSegmentEditorNode``: the overwrite mode defaults to OverwriteAllSegments (header line 226)."""

    def __init__(self):
        self.mode, self.selected = OVERWRITE_ALL, "lesion"
        self.segmentation = FakeSegmentation({"lesion": "lesion 1", "other": "liver"})
        self.segmentationNode = types.SimpleNamespace(GetSegmentation=lambda: self.segmentation)

    def GetOverwriteMode(self):
        return self.mode

    def SetOverwriteMode(self, mode):
        self.mode = mode

    def GetSelectedSegmentID(self):
        return self.selected

    def SetSelectedSegmentID(self, segmentId):
        self.selected = segmentId

    def GetSegmentationNode(self):
        return self.segmentationNode


class FakeScriptedEffect:
    """``qSlicerSegmentEditorScriptedEffect``: parameters are strings, as in the segment editor node."""

    def __init__(self):
        self.params, self.options, self.selectedEffects, self.undoSaved = {}, [], [], 0
        self.node = FakeEditorNode()

    def setParameterDefault(self, name, value):
        self.params.setdefault(name, str(value))

    def setParameter(self, name, value):
        self.params[name] = str(value)

    def parameter(self, name):
        return self.params.get(name, "")

    def doubleParameter(self, name):
        return float(self.params.get(name) or 0.0)

    def addOptionsWidget(self, widget):
        self.options.append(widget)

    def addLabeledOptionsWidget(self, label, widget):
        self.options.append((label, widget))

    def parameterSetNode(self):
        return self.node

    def selectEffect(self, name):
        self.selectedEffects.append(name)

    def saveStateForUndo(self):
        self.undoSaved += 1


def _stubs():
    qt = types.ModuleType("qt")
    for name in ("QPushButton", "QHBoxLayout", "QCheckBox", "QLabel", "QTimer", "QIcon", "QComboBox", "QLineEdit",
                 "QFormLayout"):
        setattr(qt, name, Widget)
    qt.QSettings = FakeSettings
    ctk = types.ModuleType("ctk")
    ctk.ctkSliderWidget = ctk.ctkCollapsibleButton = Widget
    slicer = types.ModuleType("slicer")
    slicer.util = types.ModuleType("slicer.util")
    slicer.util.errorDisplay = lambda *args, **kwargs: None
    slicer.vtkMRMLSegmentEditorNode = types.SimpleNamespace(OverwriteAllSegments=OVERWRITE_ALL,
                                                             OverwriteVisibleSegments=OVERWRITE_VISIBLE,
                                                             OverwriteNone=OVERWRITE_NONE)
    effects = types.ModuleType("SegmentEditorEffects")

    class AbstractScriptedSegmentEditorEffect:
        def __init__(self, scriptedEffect):
            self.scriptedEffect = scriptedEffect

    effects.AbstractScriptedSegmentEditorEffect = AbstractScriptedSegmentEditorEffect
    return {"qt": qt, "ctk": ctk, "slicer": slicer, "slicer.util": slicer.util, "SegmentEditorEffects": effects}


def _load_like_slicer_5_8(path: Path) -> types.ModuleType:
    """``PyImport_AddModule(name)``, then ``imp.load_source(name, path)`` (which re-executes into that module)."""
    module = sys.modules[MODULE_NAME]
    loader = importlib.machinery.SourceFileLoader(MODULE_NAME, str(path))
    module.__spec__ = importlib.util.spec_from_file_location(MODULE_NAME, str(path), loader=loader)
    module.__file__, module.__loader__ = str(path), loader
    loader.exec_module(module)
    return module


def _load_like_slicer_5_10(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(MODULE_NAME, str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["5.8", "5.10"])
def effect(request, monkeypatch):
    """The effect instance, its file loaded as Slicer ``request.param`` does, with the backend NOT installed."""
    for name, stub in _stubs().items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setitem(sys.modules, "lesionseg", None)  # a fresh Slicer: `import lesionseg` fails
    monkeypatch.setitem(sys.modules, MODULE_NAME, types.ModuleType(MODULE_NAME))  # PyImport_AddModule
    load = _load_like_slicer_5_8 if request.param == "5.8" else _load_like_slicer_5_10
    module = load(EFFECT_FILE)
    assert sys.modules[MODULE_NAME] is module and not hasattr(module, "__path__")  # the file, not the package
    instance = module.SegmentEditorEffect(FakeScriptedEffect())
    instance.setMRMLDefaults()
    instance.setupOptionsFrame()
    return instance


def test_effect_loads_builds_its_options_frame_without_the_backend(effect):
    scripted = effect.scriptedEffect
    assert scripted.name == "Lesion GrabCut/CRF" and scripted.perSegment and scripted.requireSegments
    labels = [w[0] for w in scripted.options if isinstance(w, tuple)]
    assert len(labels) == len(effect_refine.SLIDERS) and labels[0] == "GrabCut iterations:"
    assert effect.previewButton.text == "Preview" and effect.applyButton.text == "Apply"
    assert scripted.options[-1] is effect.runOnSection.widget and effect.runOnSection.widget.text == "Run on"
    assert scripted.params["iterations"] == "5.0" and scripted.params["use_crf"] == "1.0"
    effect.updateGUIFromMRML()  # runs on every editor update
    assert effect.sliders["band_mm"].value == 5.0 and effect.useCrfCheckBox.checked
    assert not effect.paintFgButton.enabled and not effect.applyButton.enabled  # not initialized yet
    effect.onInitialize()
    assert effect._helperId("fg") and effect._helperId("bg") and effect.paintFgButton.enabled


def test_strokes_paint_with_overwrite_none_and_the_mode_comes_back(effect):
    scripted, editorNode = effect.scriptedEffect, effect.scriptedEffect.node
    editorNode.mode = OVERWRITE_VISIBLE  # the user's choice
    effect.onInitialize()
    effect.onPaint("fg")
    assert editorNode.mode == OVERWRITE_NONE and scripted.selectedEffects == ["Paint"]
    assert editorNode.selected == effect._helperId("fg")
    effect.onPaint("bg")  # still painting: the user's mode stays saved, not OverwriteNone
    assert editorNode.mode == OVERWRITE_NONE and scripted.parameter("SavedOverwriteMode") == str(OVERWRITE_VISIBLE)
    effect.activate()  # back in this effect
    assert editorNode.mode == OVERWRITE_VISIBLE and scripted.parameter("SavedOverwriteMode") == ""
    for finish in ("onCancel", "onApply", "onPreview"):
        editorNode.selected = "lesion"
        effect.onInitialize()
        effect.onPaint("fg")
        assert editorNode.mode == OVERWRITE_NONE
        effect.runPreview = lambda waitForCompletion=False: None  # no backend here
        getattr(effect, finish)()
        assert editorNode.mode == OVERWRITE_VISIBLE, finish
    effect.scriptedEffect.node.mode = OVERWRITE_ALL  # the editor's default is saved and restored as well ("0")
    editorNode.selected = "lesion"
    effect.onInitialize()
    effect.onPaint("fg")
    effect.onCancel()
    assert editorNode.mode == OVERWRITE_ALL
    assert set(editorNode.segmentation.segments) == {"lesion", "other"}  # Cancel: helpers gone, segments kept
    assert editorNode.selected == "lesion"
