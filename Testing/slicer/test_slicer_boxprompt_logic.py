"""LesionSegBoxPromptLogic.process wiring, offline: stub Slicer modules, fake nodes and a fake segmenter.

Slicer cannot run here; these tests import the module file with minimal stand-ins for ``slicer``/``qt``/
``vtk`` and replace the node functions of ``LesionSegLib.nodes`` with fakes, so what is checked is the
logic's own work: method choice, the warm session, RAS->LPS of the slice centre, undo, no change on error.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import EXTENSION
from LesionSegLib import nodes, results, scene, selftests, session

from lesionseg import InputError, LesionSegError
from lesionseg.geometry import box_to_index


def _stub_modules() -> dict:
    slicer = types.ModuleType("slicer")
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    slm.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {"__init__": lambda self, parent: None})
    slm.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
    slm.ScriptedLoadableModuleLogic = type("ScriptedLoadableModuleLogic", (),
                                           {"__init__": lambda self, parent=None: None})
    slm.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (unittest.TestCase,), {})
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = lambda cls: cls
    pnw.Choice = lambda choices: ("Choice", tuple(choices))
    for name in ("vtkMRMLScalarVolumeNode", "vtkMRMLMarkupsROINode", "vtkMRMLSegmentationNode"):
        setattr(slicer, name, type(name, (), {}))
    slicer.app = types.SimpleNamespace(processEvents=lambda: None)
    slicer.util, slicer.ScriptedLoadableModule, slicer.parameterNodeWrapper = util, slm, pnw
    return {"slicer": slicer, "slicer.util": util, "slicer.ScriptedLoadableModule": slm,
            "slicer.parameterNodeWrapper": pnw, "qt": types.ModuleType("qt"), "vtk": types.ModuleType("vtk")}


@pytest.fixture
def module(monkeypatch):
    for name, stub in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, stub)
    path = EXTENSION / "LesionSegBoxPrompt" / "LesionSegBoxPrompt.py"
    spec = importlib.util.spec_from_file_location("LesionSegBoxPrompt_offline", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class FakeVolume:
    name: str
    image: object
    mtime: int = 1


@dataclass
class FakeRoi:
    centre: np.ndarray
    size: np.ndarray


class FakeSegmentationNode:
    def GetName(self) -> str:
        return "lesions"


class FakeScene:
    """What ``nodes`` would do to the MRML scene, recorded."""

    def __init__(self, monkeypatch) -> None:
        self.added, self.removed, self.loads = [], [], 0
        monkeypatch.setattr(nodes, "roi_to_box", lambda roi: scene.roi_to_box(roi.centre, roi.size))
        monkeypatch.setattr(nodes, "volume_cache_key", lambda volume: (volume.name, volume.mtime))
        monkeypatch.setattr(nodes, "volume_to_image", self.volume_to_image)
        monkeypatch.setattr(nodes, "add_lesion_segment", self.add_lesion_segment)

    def volume_to_image(self, volume):
        self.loads += 1
        return volume.image

    def add_lesion_segment(self, volumeNode, segmentationNode, patch, method, prompt):
        segmentId = f"segment_{len(self.added) + 1}"
        self.added.append((volumeNode, segmentationNode, patch, method, prompt))
        node = segmentationNode or FakeSegmentationNode()
        return nodes.AddedSegment(node, segmentId, f"lesion {len(self.added)}", segmentationNode is None,
                                  lambda: self.removed.append(segmentId))


class Threshold:
    def __init__(self) -> None:
        self.set_calls, self.prompts = 0, []

    def set_image(self, image, *others) -> None:
        self.set_calls, self.image = self.set_calls + 1, image

    def predict(self, prompt=None):
        self.prompts.append(prompt)
        index_box = box_to_index(self.image, prompt)
        out = np.zeros(self.image.shape, np.uint8)
        out[index_box.slices] = self.image.array[index_box.slices] > 0
        return self.image.with_array(out)


@pytest.fixture
def setup(module, monkeypatch):
    fake_scene = FakeScene(monkeypatch)
    ct = selftests.synthetic_ct()
    volume = FakeVolume("ct", scene.image_from_volume_array(ct.array, ct.ijk_to_ras))
    logic = module.LesionSegBoxPromptLogic()
    built = []
    logic.segmenterSession = session.SegmenterSession(lambda method, device: built.append((method, device))
                                                      or Threshold())
    return logic, fake_scene, ct, volume, built


def test_process_adds_one_segment_with_the_prompt(setup):
    logic, fake_scene, ct, volume, built = setup
    roi = FakeRoi(ct.centre_ras, ct.box_size)
    segmentId = logic.process(volume, roi, None, method="fake", device="cpu")
    assert segmentId == "segment_1" and built == [("fake", "cpu")]
    (vol, seg, patch, method, prompt), = fake_scene.added
    assert vol is volume and seg is None and method == "fake"
    np.testing.assert_array_equal(prompt.lo, scene.roi_to_box(ct.centre_ras, ct.box_size).lo)
    assert selftests.dice(results.paste(patch, ct.sphere.shape), ct.sphere) == 1.0
    result = logic.lastResult
    assert result.segmentId == segmentId and result.name == "lesion 1" and result.method == "fake"
    assert result.seconds >= 0 and result.warnings == () and logic.canUndo()


def test_model_stays_warm_between_clicks(setup):
    logic, fake_scene, ct, volume, built = setup
    roi = FakeRoi(ct.centre_ras, ct.box_size)
    for _ in range(3):
        logic.process(volume, roi, None, method="fake", device="cpu")
    assert len(built) == 1 and fake_scene.loads == 1
    volume.mtime = 2  # voxels edited: read and set_image again, same model
    logic.process(volume, roi, None, method="fake", device="cpu")
    assert len(built) == 1 and fake_scene.loads == 2


def test_undo_reverts_latest_first(setup):
    logic, fake_scene, ct, volume, built = setup
    roi = FakeRoi(ct.centre_ras, ct.box_size)
    logic.process(volume, roi, None, method="fake", device="cpu")
    logic.process(volume, roi, None, method="fake", device="cpu")
    assert logic.undo() == "lesion 2 in lesions" and fake_scene.removed == ["segment_2"]
    assert logic.undo() == "lesion 1 in lesions" and logic.undo() is None and not logic.canUndo()
    logic.process(volume, roi, None, method="fake", device="cpu")
    logic.reset()
    assert not logic.canUndo() and not logic.segmenterSession.warm


def test_current_slice_uses_the_ras_slice_centre(setup):
    logic, fake_scene, ct, volume, built = setup
    roi = FakeRoi(ct.centre_ras, ct.box_size)
    k = 11
    centre_ras = (ct.ijk_to_ras @ [0.0, 0.0, k, 1.0])[:3]
    logic.process(volume, roi, None, method="fake", device="cpu", currentSliceOnly=True, sliceCenterRAS=centre_ras)
    patch = fake_scene.added[0][2]
    assert patch.lo[2] == patch.hi[2] == k
    logic.process(volume, roi, None, method="fake", device="cpu", currentSliceOnly=True)  # ROI centre's slice
    assert fake_scene.added[1][2].lo[2] == fake_scene.added[1][2].hi[2] == 10  # centre at k = 9.5 -> 10


def test_errors_change_nothing(setup):
    logic, fake_scene, ct, volume, built = setup
    with pytest.raises(InputError, match="select an input volume"):
        logic.process(None, FakeRoi(ct.centre_ras, ct.box_size))
    with pytest.raises(InputError, match="entirely outside"):
        logic.process(volume, FakeRoi(ct.centre_ras + [0.0, 0.0, 500.0], ct.box_size), None, method="fake",
                      device="cpu")
    with pytest.raises(InputError, match="no extent"):
        logic.process(volume, FakeRoi(ct.centre_ras, np.zeros(3)), None, method="fake", device="cpu")
    lung = (ct.ijk_to_ras @ [4.0, 40.0, 3.0, 1.0])[:3]
    with pytest.raises(LesionSegError, match="found no lesion"):
        logic.process(volume, FakeRoi(lung, np.full(3, 4.0)), None, method="fake", device="cpu")
    assert fake_scene.added == [] and not logic.canUndo() and logic.lastResult is None


def test_default_method_prefers_box_unet_then_tsfcn(setup, monkeypatch):
    logic, fake_scene, ct, volume, built = setup
    monkeypatch.setattr(session, "box_methods", lambda: ["classical-box", "tsfcn"])
    logic.process(volume, FakeRoi(ct.centre_ras, ct.box_size))
    assert built == [("tsfcn", "auto")]
    monkeypatch.setattr(session, "box_methods", lambda: ["box-unet", "classical-box", "tsfcn"])
    logic.process(volume, FakeRoi(ct.centre_ras, ct.box_size))
    assert built[-1] == ("box-unet", "auto")
    monkeypatch.setattr(session, "box_methods", lambda: [])
    with pytest.raises(InputError, match="no box-prompt method"):
        logic.process(volume, FakeRoi(ct.centre_ras, ct.box_size))


def test_parameter_node_declares_the_panel_state(module):
    hints = module.LesionSegBoxPromptParameterNode.__annotations__
    assert list(hints) == ["inputVolume", "roi", "segmentation", "method", "currentSliceOnly", "device"]
    assert module.LesionSegBoxPromptParameterNode.device == "auto"
