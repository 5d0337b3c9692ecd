"""LesionSegSmallLesion offline: the module under stub Slicer modules (parameter node, .ui, CMake lists), and the logic
driving real background processes that run a fake ``lesionseg`` (``predict small-lesion-il`` and ``prior``, same
arguments and outputs, PROGRESS and error lines): prior choices, ROI, one segment per lesion, errors, Cancel."""
from __future__ import annotations

import json
import sys
import types
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import EXTENSION
from LesionSegLib import lesiontable, nodes, scene
from slicer_stubs import add_tables_to_scene, check_cmake_lists, fake_backend, load_module, panel_widgets, stub_modules

from lesionseg import InputError

MODULE = EXTENSION / "LesionSegSmallLesion"
sys.path.insert(0, str(MODULE))
from LesionSegSmallLesionLib import run, scenarios, smalllesion  # noqa: E402

FAKE_BACKEND = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from lesionseg import Box
from lesionseg.geometry import box_to_index
from lesionseg.io import read_image, write_image
from lesionseg.lesions import lesion_table, write_lesion_table

args = sys.argv[1:]
if args[:2] != ["--progress", "lines"] or args[2] not in ("prior", "predict"):
    sys.stderr.write(f"error: unexpected arguments {args}\n"); sys.exit(2)

def options(rest):
    found, n = {}, 0
    while n < len(rest):
        width = 6 if rest[n] == "--roi" else (0 if rest[n] == "--weights" and n + 1 == len(rest) else 1)
        found[rest[n]] = rest[n + 1:n + 1 + width]; n += 1 + width
    return found

if args[2] == "prior":
    opts = options(args[3:])
    if "--image" in opts:
        mask = read_image(opts["--mask"][0]).array > 0
        values = read_image(opts["--image"][0]).array[mask]
        prior = {"source": "kde", "mean_hu": float(values.mean()), "voxels": int(mask.sum())}
    else:
        prior = {"source": "gaussian" if "--mean" in opts else "model"}
    sys.stderr.write("PROGRESS 1.0 prior fitted\n")
    if "-o" in opts:
        Path(opts["-o"][0]).write_text(json.dumps({**prior, "args": args}))
    Path(opts["--plot"][0]).write_bytes(b"\x89PNG\r\n\x1a\n" + json.dumps(prior).encode())
    sys.exit(0)

if args[3] != "small-lesion-il":
    sys.stderr.write("error: unknown method\n"); sys.exit(2)
ct_path, opts = Path(args[4]), options(args[5:])
weights = Path(opts.get("--weights", ["installed"])[0]).name
if weights == "error":
    sys.stderr.write("error: the image does not look like CT in HU\n"); sys.exit(2)
if weights == "slow":
    sys.stderr.write("PROGRESS 0.05 loading\n"); sys.stderr.flush(); time.sleep(60)
if "--prior-table" in opts and not Path(opts["--prior-table"][0]).is_file():
    sys.stderr.write("error: no prior table\n"); sys.exit(2)
sys.stderr.write("PROGRESS 0.5000 segmenting\n"); sys.stderr.flush()
ct = read_image(ct_path)
label = (ct.array > 100).astype(np.uint8)
if "--roi" in opts:
    inside = np.zeros_like(label)
    inside[box_to_index(ct, Box(*np.reshape([float(v) for v in opts["--roi"]], (2, 3)))).slices] = 1
    label *= inside
rows = lesion_table(ct.with_array(label), ct, connectivity=26)
if weights == "mismatch":
    rows = rows[:-1]
write_lesion_table(rows, opts["--table"][0], method="small-lesion-il", image=str(ct_path))
write_image(ct.with_array(label), opts["-o"][0])
Path(opts["-o"][0]).with_name("args.json").write_text(json.dumps(args))
sys.stderr.write("PROGRESS 1.0000 done\n")
"""


class FakeNode(types.SimpleNamespace):
    """A volume, segmentation or ROI node of the fake scene."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name=name, transform=None, **kwargs)
        self.GetName, self.GetID = (lambda: self.name), (lambda: f"vtkMRMLNode{self.name}")
        self.GetTransformNodeID = lambda: self.transform
        self.GetParentTransformNode = lambda: None


def fake_volume(ct: scenarios.TinyCT) -> FakeNode:
    image = scene.image_from_volume_array(ct.array, ct.ijk_to_ras)
    node = FakeNode("tiny CT", image=image, ijk_to_ras=ct.ijk_to_ras)
    node.GetImageData = lambda: object()
    return node


def fake_segmentation(name: str, masks: dict) -> FakeNode:
    node = FakeNode(name, masks=masks)
    node.GetSegmentation = lambda: types.SimpleNamespace(GetSegment=lambda segmentId: masks.get(segmentId))
    return node


def fake_roi(centre_ras, size) -> FakeNode:
    node = FakeNode("ROI")
    node.GetInsideOut = lambda: False
    node.GetCenterWorld = lambda out: out.__setitem__(slice(None), [float(c) for c in centre_ras])
    node.GetSizeWorld = lambda out: out.__setitem__(slice(None), [float(s) for s in size])
    node.GetObjectToWorldMatrix = lambda: np.eye(4)
    return node


@pytest.fixture
def module(monkeypatch, tmp_path):
    fake_scene = {"removed": [], "written": [], "tables": []}
    stubs = stub_modules(tmp_path, ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode", "vtkMRMLMarkupsROINode"))
    slicer = stubs["slicer"]
    slicer.util.arrayFromVolume = lambda node: node.image.array
    slicer.util.arrayFromVTKMatrix = np.asarray

    slicer.mrmlScene = types.SimpleNamespace(IsNodePresent=lambda node: node not in fake_scene["removed"])
    add_tables_to_scene(slicer, fake_scene["tables"])
    mod = load_module(monkeypatch, stubs, MODULE)
    mod.fake_scene = fake_scene
    return mod


@pytest.fixture
def fake(module, monkeypatch):
    """The logic with the scene side faked: export writes the volume's image, segments are recorded."""
    fake_scene, ct = module.fake_scene, scenarios.tiny_ct()
    volume = fake_volume(ct)
    user = fake_segmentation("user segmentation", {"user lesion": ct.largest, "empty": np.zeros_like(ct.largest)})
    fake_backend(monkeypatch, FAKE_BACKEND, fake_scene["written"], lambda node, labels, name: FakeNode(name))
    monkeypatch.setattr(run, "segment_mask", lambda segmentation, segmentId, node: segmentation.masks[segmentId])
    monkeypatch.setattr(nodes, "_place_under_study", lambda volume, node: None)
    return module.LesionSegSmallLesionLogic(), fake_scene, ct, volume, user


def _args(logic) -> list[str]:
    return json.loads((logic.lastOutputDir / "args.json").read_text())


def test_typed_prior_segments_every_lesion(fake):
    logic, fake_scene, ct, volume, user = fake
    progress = []
    result = logic.process(volume, prior=(130.0, 20.0), device="cpu", onProgress=lambda f, m: progress.append((f, m)))
    assert progress == [(0.5, "segmenting"), (1.0, "done")]
    folder = logic.lastOutputDir.parent
    assert _args(logic)[2:] == ["predict", "small-lesion-il", str(folder / "ct.nrrd"), "-o",
                                str(folder / "out" / "lesions.nii.gz"), "--table", str(folder / "out" / "lesions.json"),
                                "--device", "cpu", "--prior-mean", "130.0", "--prior-sd", "20.0"]
    rows = result["lesionRows"]
    assert len(rows) >= 3 and [r.voxels for r in rows] == sorted((r.voxels for r in rows), reverse=True)
    (segmentation, labels, owner, method, name), = fake_scene["written"]
    assert (segmentation, owner, method) == (None, "LesionSegSmallLesion", "small-lesion-il")
    assert name == "tiny CT small lesions"
    names = [smalllesion.segment_name(r) for r in rows]
    assert labels[0].volumeNode is volume and [s.name for s in labels[0].specs] == names
    assert result["segmentIds"] == tuple(names) and [r["segment"] for r in result["rows"]] == names
    table = result["tableNode"]
    assert table.name == "tiny CT small lesions table" and list(table.columns) == list(lesiontable.CT_TABLE_COLUMNS)
    assert table.columns["ID"].tolist() == [r.id for r in rows] and fake_scene["tables"] == [table]
    assert np.bincount(labels[0].label.ravel())[1:].tolist() == [r.voxels for r in rows]  # value n = lesion n
    assert json.loads(labels[0].specs[0].tags[smalllesion.PRIOR_TAG]) == {"kind": "typed", "mean_hu": 130.0,
                                                                            "sd_hu": 20.0}
    assert labels[0].specs[0].tags[smalllesion.ROI_TAG] == "null"
    assert result["prior"] == "typed 130 \u00b1 20 HU" and result["priorPlot"] is None
    assert sorted(p.name for p in folder.iterdir()) == ["out"]  # the input is deleted
    first = logic.lastOutputDir
    logic.process(volume, result["segmentationNode"])
    assert not first.parent.exists() and logic.lastOutputDir.is_dir()  # the previous run's folder is freed
    assert fake_scene["written"][-1][0] is result["segmentationNode"] and "--prior-mean" not in _args(logic)


def test_prior_learnt_from_a_segment_inside_an_roi(fake):
    logic, fake_scene, ct, volume, user = fake
    centre = ct.centres_ras[2]  # the largest lesion; the ROI holds it only
    progress = []
    runner = logic.process(volume, None, fake_roi(centre, (14.0, 14.0, 15.0)), prior="user lesion",
                           waitForCompletion=False, priorSegmentationNode=user,
                           onProgress=lambda f, m: progress.append(round(f, 6)))
    with pytest.raises(RuntimeError, match="already running"):
        logic.process(volume)
    result = logic.finish(runner.wait(timeout=60))
    assert progress == [0.1, 0.55, 1.0]
    out = logic.lastOutputDir
    fitted = json.loads((out / "prior.json").read_text())
    assert fitted["voxels"] == int(ct.largest.sum()) and abs(fitted["mean_hu"] - 130.0) < 3.0
    assert fitted["args"][2:] == ["prior", "--image", str(out.parent / "prior_ct.nrrd"), "--mask",
                                  str(out.parent / "prior_mask.nrrd"), "-o", str(out / "prior.json"), "--plot",
                                  str(out / "prior.png")]
    args = _args(logic)
    lps = np.round(scene.ras_to_lps(centre), 6)
    roi = [float(v) for v in args[args.index("--roi") + 1:args.index("--roi") + 7]]
    np.testing.assert_allclose(roi, [lps[0] - 7, lps[1] - 7, lps[2] - 7.5, lps[0] + 7, lps[1] + 7, lps[2] + 7.5])
    assert args[-2:] == ["--prior-table", str(out / "prior.json")]
    assert [r.voxels for r in result["lesionRows"]] == [int(((ct.array > 100) & (ct.largest > 0)).sum())]
    assert result["priorPlot"] == out / "prior.png" and result["prior"] == "learnt from segment user lesion"
    tags = fake_scene["written"][0][1][0].specs[0].tags
    assert json.loads(tags[smalllesion.ROI_TAG])["kind"] == "box"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # inputs deleted


def test_backend_error_disagreement_and_cancel_change_nothing(fake, tmp_path):
    logic, fake_scene, ct, volume, user = fake
    for name in ("error", "slow", "mismatch"):
        (tmp_path / name).mkdir()
    with pytest.raises(RuntimeError, match="^the image does not look like CT in HU$"):
        logic.process(volume, weights=tmp_path / "error")
    with pytest.raises(ValueError, match="the backend's outputs disagree: the lesion table lists"):
        logic.process(volume, weights=tmp_path / "mismatch")
    runner = logic.process(volume, waitForCompletion=False, weights=tmp_path / "slow")
    folder = logic.job.folder
    logic.cancel()
    assert logic.finish(runner.wait(timeout=20)) is None and not folder.exists()
    with pytest.raises(RuntimeError, match="no lesion segmentation is running"):
        logic.finish(runner.poll())
    assert fake_scene["written"] == [] and logic.job is None and logic.lastResult is None
    assert not list(tmp_path.glob("LesionSegSmallLesion-*"))  # every run's temporary folder is removed


def test_bad_input_raises_before_writing_anything(fake, tmp_path):
    logic, fake_scene, ct, volume, user = fake
    cases = [(dict(prior=(130.0, 0.0)), ValueError, "SD must be more than 0 HU"),
             (dict(prior=str(tmp_path / "none.json")), ValueError, "does not exist"),
             (dict(prior="no such segment", segmentationNode=user), ValueError, "has no segment 'no such segment'"),
             (dict(prior="user lesion"), ValueError, "select the segmentation holding the segment"),
             (dict(prior="empty", segmentationNode=user), ValueError, "segment to learn the prior from is empty"),
             (dict(roiNode=fake_roi(ct.centres_ras[0] + [0, 0, 500.0], (10, 10, 10))), InputError, "entirely outside"),
             (dict(roiNode=fake_roi(ct.centres_ras[0], (10, 0, 0))), InputError, "no extent"),
             (dict(weights=tmp_path / "nope"), ValueError, "weights folder"),
             (dict(device="gpu"), ValueError, "device must be one of")]
    for kwargs, error, message in cases:
        for wait in (True, False):
            with pytest.raises(error, match=message):
                logic.process(volume, waitForCompletion=wait, **kwargs)
    with pytest.raises(ValueError, match="select the CT volume"):
        logic.process(None)
    user.transform = "vtkMRMLLinearTransformNode1"
    with pytest.raises(InputError, match="different transform"):
        logic.process(volume, user)
    assert not list(tmp_path.glob("LesionSegSmallLesion*")) and logic.job is None and fake_scene["written"] == []


def test_prior_preview_files(fake):
    logic, fake_scene, ct, volume, user = fake
    command, png, folder = logic.priorPreviewFiles(volume, (120.0, 10.0))
    assert command[-7:] == ["prior", "--mean", "120.0", "--sd", "10.0", "--plot", str(png)] and png.parent == folder
    command, png, folder = logic.priorPreviewFiles(volume, "user lesion", user, weights=None)
    assert command[-7:] == ["prior", "--image", str(folder / "prior_ct.nrrd"), "--mask",
                            str(folder / "prior_mask.nrrd"), "--plot", str(png)]
    from lesionseg.io import read_image

    crop = read_image(folder / "prior_mask.nrrd")
    assert int(crop.array.sum()) == int(ct.largest.sum())
    command, png, folder = logic.priorPreviewFiles(volume, None)
    assert command[-4:] == ["prior", "--plot", str(png), "--weights"]
    with pytest.raises(ValueError, match="is empty"):
        logic.priorPreviewFiles(volume, "empty", user)


def test_module_structure(module):
    node = module.LesionSegSmallLesionParameterNode
    assert list(node.__annotations__) == ["inputVolume", "roi", "segmentation", "priorMode", "priorMean", "priorSd",
                                          "device"]
    assert node.priorMode == "Built-in (from the model)" and node.device == "auto"
    assert (node.priorMean, node.priorSd) == smalllesion.DEFAULT_TYPED_PRIOR
    assert node.__annotations__["priorSd"].__metadata__[0] == ("WithinRange", smalllesion.MIN_SD_HU, 1000.0)
    classes = panel_widgets(MODULE, node)
    kinds = {"inputVolumeSelector": "qMRMLNodeComboBox", "roiSelector": "qMRMLNodeComboBox",
             "priorModeComboBox": "QComboBox", "priorSdSpinBox": "QDoubleSpinBox",
             "priorSegmentSelector": "qMRMLSegmentSelectorWidget", "priorPlotLabel": "QLabel",
             "lesionTable": "QTableWidget", "deviceComboBox": "QComboBox"}
    assert {name: classes[name] for name in kinds} == kinds
    ui = ET.parse(MODULE / "Resources" / "UI" / "LesionSegSmallLesion.ui").getroot()
    widgets = {w.get("name"): w for w in ui.iter("widget")}
    minimum = widgets["priorSdSpinBox"].find("property[@name='minimum']/double").text
    assert float(minimum) == smalllesion.MIN_SD_HU
    headers = [c.find("property/string").text for c in ui.iter("column")]
    assert headers == list(lesiontable.CT_PANEL_COLUMNS)
    scenes = {c.find("receiver").text for c in ui.iter("connection")}
    assert scenes == {"inputVolumeSelector", "roiSelector", "segmentationSelector", "priorSegmentSelector"}

def test_cmake_lists_every_file():
    check_cmake_lists(MODULE)
