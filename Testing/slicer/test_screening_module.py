"""LesionSegScreening offline: the pure helpers, the module under stub Slicer modules, and the logic driving a real
background process that runs a fake ``lesionseg screen`` (same arguments, same outputs, PROGRESS lines)."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import EXTENSION
from LesionSegLib import process, scene, selftests
from slicer_stubs import check_cmake_lists, fake_backend, load_module, panel_widgets, stub_modules

from lesionseg import InputError

MODULE = EXTENSION / "LesionSegScreening"
sys.path.insert(0, str(MODULE))
from LesionSegScreeningLib import screening  # noqa: E402

V, A = object(), object()


def test_phase_volumes_and_input_problem():
    assert screening.phase_volumes(V, A) == {"venous": V, "arterial": A}
    assert list(screening.phase_volumes(arterial=A)) == ["arterial"]
    assert screening.input_problem(False, True) is None and screening.input_problem(True, False) is None
    assert screening.input_problem(False, False) == "Select a venous or an arterial CT volume (or both)."
    with pytest.raises(ValueError, match="no phase to screen: select a venous or an arterial CT"):
        screening.phase_volumes()
    with pytest.raises(ValueError, match="same volume"):
        screening.phase_volumes(V, V)


def test_screen_arguments(tmp_path):
    args = screening.screen_arguments({"arterial": Path("a.nrrd"), "venous": Path("v.nrrd")}, Path("out"))
    assert args == ["screen", "--venous", "v.nrrd", "--arterial", "a.nrrd", "-o", "out", "--device", "auto",
                    "--stride", "20"]
    args = screening.screen_arguments({"arterial": Path("a.nrrd")}, Path("o"), tmp_path, "cpu", 32)
    assert args == ["screen", "--arterial", "a.nrrd", "-o", "o", "--device", "cpu", "--stride", "32",
                    "--weights", str(tmp_path)]
    assert "--weights" not in screening.screen_arguments({"venous": Path("v")}, Path("o"), "")
    for stride in (0, 65, True, 2.5, "20"):
        with pytest.raises(ValueError, match="stride"):
            screening.screen_arguments({"venous": Path("v")}, Path("o"), stride=stride)
    with pytest.raises(ValueError, match="does not exist"):
        screening.screen_arguments({"venous": Path("v")}, Path("o"), tmp_path / "missing")
    with pytest.raises(ValueError, match="phases must be among"):
        screening.screen_arguments({"portal": Path("p")}, Path("o"))
    with pytest.raises(ValueError, match="got none"):
        screening.screen_arguments({}, Path("o"))


REPORT = {
    "method": "s4c", "positive": True, "verdict": "positive",
    "reasons": ["venous: tumour 812 mm3 (>= 40 mm3) at (12.1, -40.2, -380.0) mm <b>"],
    "model": {"folder": "x", "synthetic_training_data": True},
    "phases": {
        "arterial": {"positive": False, "tumour_mm3": 12.4, "duct_mm3": 0.0, "findings": [],
                     "segmentation": "arterial_seg.nii.gz"},
        "venous": {"positive": True, "tumour_mm3": 812.0, "duct_mm3": 499.6, "segmentation": "venous_seg.nii.gz",
                   "findings": [{"kind": "tumour", "voxels": 812, "volume_mm3": 812.0,
                                 "centroid_lps": [12.1, -40.2, -380.0]},
                                {"kind": "duct", "voxels": 3, "volume_mm3": 2.5, "centroid_lps": [-1, 2, 3]}]}},
}


def test_verdict_banner_and_reasons():
    verdict = screening.verdict_from_report(REPORT)
    assert verdict.positive is True and verdict.title == "Positive" and "#c62828" in verdict.style
    assert verdict.verdict == "positive" and verdict.reason == ""
    assert verdict.disclaimer == "synthetic-trained model \u2014 not for diagnosis"
    assert verdict.phases == ("venous: Positive (tumour 812 mm3, duct 500 mm3)",
                              "arterial: Negative (tumour 12 mm3, duct 0 mm3)")
    assert verdict.reasons == tuple(REPORT["reasons"])
    assert ">Positive</div>" in verdict.banner_html() and "not for diagnosis" in verdict.banner_html()
    assert "mm &lt;b&gt;</li>" in verdict.reasons_html()  # backend text is escaped
    negative = screening.verdict_from_report({**REPORT, "positive": False, "verdict": "negative", "reasons": [],
                                              "model": {"synthetic_training_data": False}})
    assert negative.title == "Negative" and "#2e7d32" in negative.style and negative.reasons == ()
    assert negative.positive is False and negative.disclaimer == "research model \u2014 not for diagnosis"
    older = screening.verdict_from_report({key: v for key, v in REPORT.items() if key != "verdict"})
    assert older.title == "Positive"                          # a report without "verdict" is read from "positive"
    assert screening.verdict_from_report({**REPORT, "verdict": "POSITIVE"}).title == "Positive"   # before #18
    with pytest.raises(ValueError, match="lacks"):
        screening.verdict_from_report({"phases": {}})
    with pytest.raises(ValueError, match="true, false or null"):
        screening.verdict_from_report({"positive": "yes", "phases": {}})


NO_PANCREAS = ("no pancreas in view (arterial phase: 0.0 mL segmented, under 5 mL): is this an abdominal CT "
               "covering the pancreas?")
INCONCLUSIVE_REPORT = {
    "method": "s4c", "positive": None, "verdict": "inconclusive",
    "reasons": [NO_PANCREAS, "venous: tumour 12 mm3 (< 40) and duct 0 mm3 (< 500) in 61.3 mL of pancreas"],
    "model": {"folder": "x", "synthetic_training_data": True},
    "phases": {
        "arterial": {"positive": None, "verdict": "inconclusive", "inconclusive": True, "tumour_mm3": 0.0,
                     "duct_mm3": 0.0, "pancreas_mm3": 0.0, "findings": [], "segmentation": "arterial_seg.nii.gz"},
        "venous": {"positive": False, "verdict": "negative", "inconclusive": False, "tumour_mm3": 12.4,
                   "duct_mm3": 0.0, "pancreas_mm3": 61300.0, "findings": [], "segmentation": "venous_seg.nii.gz"}},
}


def test_an_inconclusive_report_is_neither_green_nor_negative():
    verdict = screening.verdict_from_report(INCONCLUSIVE_REPORT)
    assert verdict.positive is None and verdict.verdict == "inconclusive"
    assert verdict.title == f"Inconclusive: {NO_PANCREAS}"              # the banner says why: the first failed check
    assert verdict.style == screening.INCONCLUSIVE_STYLE and "#2e7d32" not in verdict.style
    assert verdict.disclaimer.startswith("A phase failed its checks, so the case was not screened there")
    assert verdict.disclaimer.endswith("Synthetic-trained model \u2014 not for diagnosis")
    assert verdict.phases == ("venous: Negative (tumour 12 mm3, duct 0 mm3, pancreas 61 mL)",
                              "arterial: Inconclusive (tumour 0 mm3, duct 0 mm3, pancreas 0 mL)")
    banner = verdict.banner_html()
    assert ">Inconclusive<span" in banner and ": no pancreas in view (arterial phase" in banner
    assert "abdominal CT in HU" in banner
    assert screening.verdict_from_report({**INCONCLUSIVE_REPORT, "verdict": "unheard-of"}).title.startswith(
        "Inconclusive: ")
    assert screening.verdict_from_report({**INCONCLUSIVE_REPORT, "reasons": []}).title == "Inconclusive"
    older = screening.verdict_from_report({**INCONCLUSIVE_REPORT, "verdict": "INCONCLUSIVE", "positive": False})
    assert older.verdict == "inconclusive" and older.positive is None   # issue #22's backends wrote false
    for contradiction in ({"positive": True}, {"verdict": "positive"}, {"verdict": "negative"}):
        with pytest.raises(ValueError, match="contradicts itself"):
            screening.verdict_from_report({**INCONCLUSIVE_REPORT, **contradiction})
    with pytest.raises(ValueError, match="verdict negative but positive None"):
        screening.verdict_from_report({**REPORT, "verdict": "negative", "positive": None})


def test_read_report_refuses_a_contradictory_verdict(tmp_path):
    (tmp_path / "venous_seg.nii.gz").write_bytes(b"x")
    (tmp_path / "report.json").write_text(json.dumps({**REPORT, "verdict": "negative"}))
    with pytest.raises(ValueError, match="verdict negative but positive True"):
        screening.read_report(tmp_path, ["venous"])
    (tmp_path / "report.json").write_text(json.dumps(INCONCLUSIVE_REPORT))
    read = screening.read_report(tmp_path, ["venous"])
    assert read["verdict"] == "inconclusive" and read["positive"] is None        # JSON null is read back as None


def test_jump_targets_are_ras():
    targets = screening.jump_targets(REPORT)
    assert [(t.phase, t.kind) for t in targets] == [("venous", "tumour"), ("venous", "duct")]
    assert targets[0].ras == (-12.1, 40.2, -380.0) and targets[1].ras == (1.0, -2.0, 3.0)
    assert targets[0].cells() == ("venous", "tumour", "812", "(-12.1, 40.2, -380.0)")
    bad = json.loads(json.dumps(REPORT))
    bad["phases"]["venous"]["findings"][0]["centroid_lps"] = [1.0, float("nan"), 2.0]
    with pytest.raises(ValueError, match="centroid_lps"):
        screening.jump_targets(bad)
    assert screening.jump_targets({"positive": False, "phases": {}}) == []


def test_segment_specs_names_colours_terminology():
    specs = {phase: screening.segment_specs(phase) for phase in screening.PHASES}
    assert [s.name for s in specs["venous"]] == ["venous pancreas", "venous tumour", "venous duct"]
    assert [s.label for s in specs["arterial"]] == [1, 2, 3]
    colours = [s.color for phase in specs for s in specs[phase]]
    assert len(set(colours)) == 6 and all(0 <= c <= 1 for rgb in colours for c in rgb)
    assert specs["venous"][1].tags == {"LesionSeg.phase": "venous", "LesionSeg.label": "2"}
    assert "SCT^15776009^Pancreas" in specs["venous"][0].terminology
    assert "SCT^4147007^Mass" in specs["venous"][1].terminology
    assert "SCT^69930009^Pancreatic duct" in specs["venous"][2].terminology
    assert all(s.terminology.count("~") == 6 for s in specs["venous"])
    with pytest.raises(ValueError):
        screening.segment_specs("portal")
    assert screening.segmentation_name({"arterial": "A", "venous": "V"}) == "V screening"


def test_read_report(tmp_path):
    (tmp_path / "venous_seg.nii.gz").write_bytes(b"x")
    with pytest.raises(ValueError, match="no report"):
        screening.read_report(tmp_path, ["venous"])
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        screening.read_report(tmp_path, ["venous"])
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert screening.read_report(tmp_path, ["venous"])["verdict"] == "positive"
    with pytest.raises(ValueError, match="arterial segmentation arterial_seg.nii.gz is missing"):
        screening.read_report(tmp_path, ["venous", "arterial"])
    (tmp_path / "report.json").write_text(json.dumps({**REPORT, "phases": {}}))
    with pytest.raises(ValueError, match="no venous segmentation"):
        screening.read_report(tmp_path, ["venous"])
    bad = json.loads(json.dumps(REPORT))
    del bad["phases"]["venous"]["findings"][1]["centroid_lps"]
    (tmp_path / "report.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="venous finding has no valid centroid_lps: None"):
        screening.read_report(tmp_path, ["venous"])


FAKE_BACKEND = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from lesionseg.io import read_image, write_image

args = sys.argv[1:]
if args[:3] != ["--progress", "lines", "screen"]:
    sys.stderr.write(f"error: unexpected arguments {args}\n"); sys.exit(2)
opts = dict(zip(args[3::2], args[4::2]))
stride = int(opts["--stride"])
if stride == 13:
    sys.stderr.write("error: the venous and arterial phases do not overlap\n"); sys.exit(2)
if stride == 63:
    sys.stderr.write("PROGRESS 0.05 loading\n"); sys.stderr.flush(); time.sleep(60)
out = Path(opts["-o"])
partial = out.parent / "out.partial"
partial.mkdir()
phases = {}
for n, phase in enumerate(("venous", "arterial")):
    if f"--{phase}" not in opts:
        continue
    sys.stderr.write(f"PROGRESS {0.1 + 0.4 * n:.4f} segmenting {phase}\n"); sys.stderr.flush()
    image = read_image(opts[f"--{phase}"])
    label = np.where(image.array > 0, 2, np.where(image.array > -700, 1, 0)).astype(np.uint8)
    label[0, 0, 0] = 3
    write_image(image.with_array(label), partial / f"{phase}_seg.nii.gz")
    phases[phase] = {"input": opts[f"--{phase}"], "positive": True, "tumour_mm3": float((label == 2).sum()),
                     "duct_mm3": 1.0, "segmentation": f"{phase}_seg.nii.gz", "reasons": [f"{phase}: tumour"],
                     "findings": [{"kind": "tumour", "volume_mm3": 5.0, "centroid_lps": [1.0, 2.0, 3.0]}]}
report = {"method": "s4c", "positive": True, "verdict": "positive", "reasons": ["tumour"], "phases": phases,
          "model": {"synthetic_training_data": True}, "args": args}
(partial / "report.json").write_text(json.dumps(report))
partial.rename(out)
sys.stderr.write("PROGRESS 1.0000 done\n")
"""


class FakeVolume:
    def __init__(self, name: str, seed: int) -> None:
        ct = selftests.synthetic_ct(shape=(6, 20, 24), radius_mm=5.0, seed=seed)
        self.name, self.image, self.ijk_to_ras = name, scene.image_from_volume_array(ct.array, ct.ijk_to_ras), \
            ct.ijk_to_ras

    def GetName(self) -> str:
        return self.name

    def GetTransformNodeID(self):
        return None


@pytest.fixture
def module(monkeypatch, tmp_path):
    stubs = stub_modules(tmp_path, ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"))
    stubs["slicer"].mrmlScene = types.SimpleNamespace(IsNodePresent=lambda node: True)
    return load_module(monkeypatch, stubs, MODULE)


@pytest.fixture
def fake(module, monkeypatch):
    """The logic with the scene side faked: export writes the volume's image, segments are recorded."""
    written = []
    fake_backend(monkeypatch, FAKE_BACKEND, written, lambda node, labels, name: "new segmentation")
    return module.LesionSegScreeningLogic(), written, FakeVolume("v", 0), FakeVolume("a", 1)


def test_process_waits_and_loads_both_phases(fake):
    logic, written, venous, arterial = fake
    progress = []
    report = logic.process(venous, arterial, device="cpu", onProgress=lambda f, m: progress.append((f, m)))
    assert report["positive"] and set(report["phases"]) == {"venous", "arterial"}
    assert progress == [(0.1, "segmenting venous"), (0.5, "segmenting arterial"), (1.0, "done")]
    assert report["args"][3:] == ["--venous", str(logic.lastOutputDir.parent / "venous.nrrd"), "--arterial",
                                  str(logic.lastOutputDir.parent / "arterial.nrrd"), "-o", str(logic.lastOutputDir),
                                  "--device", "cpu", "--stride", "20"]
    (segmentation, labels, owner, method, name), = written
    assert segmentation is None and owner == "LesionSegScreening" and method == "s4c" and name == "v screening"
    assert [item.volumeNode for item in labels] == [venous, arterial]
    expected = np.where(venous.image.array > 0, 2, np.where(venous.image.array > -700, 1, 0))
    expected[0, 0, 0] = 3
    np.testing.assert_array_equal(labels[0].label, expected)
    assert [s.name for s in labels[1].specs] == ["arterial pancreas", "arterial tumour", "arterial duct"]
    assert logic.lastSegmentationNode == "new segmentation" and logic.lastVolumes == {"venous": venous,
                                                                                       "arterial": arterial}
    assert logic.job is None and logic.lastReport is report and logic.lastSeconds > 0
    assert sorted(p.name for p in logic.lastOutputDir.parent.iterdir()) == ["out"]  # inputs deleted
    first, user = logic.lastOutputDir, FakeVolume("user segmentation", 2)
    logic.process(arterialNode=arterial, segmentationNode=user)
    assert not first.parent.exists() and logic.lastOutputDir.is_dir()  # the previous run's folder is freed
    assert written[1][0] is user and [i.volumeNode for i in written[1][1]] == [arterial]


def test_process_without_waiting_returns_the_runner(fake):
    logic, written, venous, arterial = fake
    runner = logic.process(venousNode=venous, waitForCompletion=False)
    assert isinstance(runner, process.BackgroundProcess) and logic.job.runner is runner
    with pytest.raises(RuntimeError, match="already running"):
        logic.process(venousNode=venous)
    report = logic.finish(runner.wait(timeout=60))
    assert list(report["phases"]) == ["venous"] and len(written) == 1
    with pytest.raises(RuntimeError, match="no screening is running"):
        logic.finish(runner.poll())


def test_backend_error_changes_nothing(fake):
    logic, written, venous, arterial = fake
    with pytest.raises(RuntimeError, match="^the venous and arterial phases do not overlap$"):
        logic.process(venous, arterial, stride=13)
    assert written == [] and logic.job is None and logic.lastReport is None
    folders = list(Path(sys.modules["slicer"].util.tempDirectory("probe")).parent.glob("LesionSegScreening-*"))
    assert folders == []  # the run's temporary folder is removed


def test_cancel_returns_none_and_cleans_up(fake):
    logic, written, venous, arterial = fake
    runner = logic.process(venousNode=venous, waitForCompletion=False, stride=63)
    folder = logic.job.folder
    logic.cancel()
    assert logic.finish(runner.wait(timeout=20)) is None
    assert written == [] and logic.job is None and not folder.exists()


def test_bad_input_raises_before_writing_anything(fake, tmp_path):
    logic, written, venous, arterial = fake
    with pytest.raises(ValueError, match="venous or an arterial"):
        logic.process()
    with pytest.raises(ValueError, match="stride"):
        logic.process(venous, stride=0)
    with pytest.raises(ValueError, match="weights folder"):
        logic.process(venous, weights=tmp_path / "nope")
    arterial.GetTransformNodeID = lambda: "vtkMRMLLinearTransformNode1"
    with pytest.raises(InputError, match="different transforms"):
        logic.process(venous, arterial)
    assert not list(tmp_path.glob("LesionSegScreening-*")) and logic.job is None and written == []


def test_module_structure(module):
    node = module.LesionSegScreeningParameterNode
    assert list(node.__annotations__) == ["venousVolume", "arterialVolume", "segmentation", "device", "stride"]
    assert node.device == "auto" and node.stride == 20
    classes = panel_widgets(MODULE, node)
    assert classes["strideSpinBox"] == "QSpinBox" and classes["deviceComboBox"] == "QComboBox"

def test_cmake_lists_every_file():
    check_cmake_lists(MODULE)
