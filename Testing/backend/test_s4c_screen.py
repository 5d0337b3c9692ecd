"""S4C case screening (``lesionseg screen``): report contract, verdicts, pictures, no partial output on error."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lesionseg import Image, read_image, write_image
from lesionseg.errors import InputError, OutputExistsError
from lesionseg.methods.s4c import cli_screen
from lesionseg.methods.s4c.network import S4CNet
from lesionseg.methods.s4c.rules import ScreeningRule, phase_findings
from lesionseg.methods.s4c.screen import orthogonal_view, picture_target, screen_case
from lesionseg.methods.s4c.segmenter import S4CPreprocessing, S4CSegmenter
from lesionseg.modelfolder import save_model_folder

REPORT_KEYS = {"method", "positive", "verdict", "reasons", "rule", "model", "phases", "timings_s"}
PHASE_KEYS = {"input", "positive", "verdict", "inconclusive", "tumour_voxels", "duct_voxels", "tumour_mm3",
              "duct_mm3", "pancreas_mm3", "findings", "reasons", "segmentation", "picture", "seconds"}
FINDING_KEYS = {"kind", "voxels", "volume_mm3", "centroid_lps", "box_ijk"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOXEL_MM3 = 1.5 * 1.5 * 2.0


def _ct(origin=(-20.0, 10.0, -300.0), shape=(12, 24, 28)) -> Image:
    """A (12, 24, 28) int16 CT, 1.5 x 1.5 x 2 mm: air around a 40 HU body holding a 120 HU 'pancreas'."""
    arr = np.full(shape, -1000, np.int16)
    arr[2:10, 3:21, 3:25] = 40
    arr[4:8, 8:14, 6:22] = 120
    return Image(arr, (1.5, 1.5, 2.0), origin)


def _pancreas(tumour: int = 0, duct: bool = False) -> np.ndarray:
    """Labels on :func:`_ct`'s grid: a pancreas block, a cube of ``tumour`` voxels at its corner, and with
    ``duct`` a 135-voxel (607.5 mm3) duct whose centre is voxel (i, j, k) = (17, 11, 5)."""
    lab = np.zeros((12, 24, 28), np.uint8)
    lab[4:8, 8:14, 6:22] = 1
    side = round(tumour ** (1 / 3))
    lab[4:4 + side, 8:8 + side, 6:6 + side] = 2
    if duct:
        lab[4:7, 9:14, 13:22] = 3
    return lab


STUB_RULE = ScreeningRule(pancreas_min_mm3=1000.0, pancreas_adult_min_mm3=1000.0)
"""The paper's rule with pancreas bounds below :func:`_pancreas`'s 1.7 mL block (384 voxels of 4.5 mm3), which
stands for a real gland of 50-100 mL; the default bounds (5 mL; 15-250 mL) are tested with :data:`ScreeningRule`
itself."""
SHOUT = {"positive": "POSITIVE", "negative": "negative", "inconclusive": "INCONCLUSIVE"}
"""How ``report.md`` and the terminal write each verdict."""


class StubSegmenter:
    """Returns the given label arrays in turn (venous first, then arterial) and records its calls; its findings
    run every check of the verdict, the anatomy check on the CT it was given included."""

    def __init__(self, *labels: np.ndarray, rule: ScreeningRule = STUB_RULE) -> None:
        self.labels, self.calls, self.rule, self._label = list(labels), [], rule, None

    def set_image(self, ct: Image) -> None:
        self.calls.append(ct)
        self._label = ct.with_array(self.labels.pop(0))

    def predict(self, prompt=None) -> Image:
        return self._label

    def findings(self, phase: str):
        return phase_findings(self._label, self.rule, phase, self.calls[-1])


def _tiny_segmenter() -> S4CSegmenter:
    torch.manual_seed(0)
    return S4CSegmenter(net=S4CNet(channels=(4, 8, 16)), preprocessing=S4CPreprocessing(patch=16, stride=8))


def _non_ct() -> Image:
    return Image(np.random.default_rng(0).random((12, 24, 28)).astype(np.float32), (1.5, 1.5, 2.0),
                 (-20.0, 10.0, -300.0))


def test_report_contract_and_files_with_the_real_segmenter(tmp_path):
    out = tmp_path / "case"
    venous, arterial = _ct(), _ct(origin=(-17.0, 12.0, -296.0))
    report = screen_case({"arterial": arterial, "venous": venous}, _tiny_segmenter(), out,
                         inputs={"venous": "/data/v.nii.gz"})
    assert set(report) == REPORT_KEYS and report["method"] == "s4c"
    assert report["verdict"] in ("positive", "negative", "inconclusive")
    assert report["positive"] is {"positive": True, "negative": False, "inconclusive": None}[report["verdict"]]
    assert report["rule"] == ScreeningRule().to_dict() and report["model"] == {"folder": None,
                                                                              "synthetic_training_data": None}
    assert list(report["phases"]) == ["venous", "arterial"] and report["reasons"]
    assert {"venous segmentation", "arterial segmentation", "total"} <= set(report["timings_s"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["venous_seg.nii.gz", "venous.png", "arterial_seg.nii.gz", "arterial.png", "report.json", "report.md",
         ".lesionseg-output.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]          # no temporary sibling left
    assert json.loads((out / "report.json").read_text()) == report
    for name, ct in (("venous", venous), ("arterial", arterial)):
        entry = report["phases"][name]
        assert set(entry) == PHASE_KEYS and entry["picture"] == f"{name}.png"
        assert isinstance(entry["tumour_voxels"], int) and isinstance(entry["tumour_mm3"], float)
        assert isinstance(entry["seconds"], float) and entry["seconds"] >= 0
        assert all(set(f) == FINDING_KEYS for f in entry["findings"])
        seg = read_image(out / entry["segmentation"])
        assert seg.same_grid(ct) and seg.array.dtype == np.uint8 and seg.array.max() <= 3
        assert entry["tumour_voxels"] == int((seg.array == 2).sum())
        assert entry["duct_voxels"] == int((seg.array == 3).sum())
        assert (out / entry["picture"]).read_bytes()[:8] == PNG_MAGIC
    assert report["phases"]["venous"]["input"] == "/data/v.nii.gz" and report["phases"]["arterial"]["input"] is None
    md = (out / "report.md").read_text()
    assert md.startswith(f"# S4C screening: {SHOUT[report['verdict']]}\n") and "![venous phase](venous.png)" in md


@pytest.mark.parametrize("labels, verdicts, positive", [
    ({"venous": _pancreas(tumour=64), "arterial": _pancreas()}, {"venous": True, "arterial": False}, True),
    ({"venous": _pancreas(), "arterial": _pancreas()}, {"venous": False, "arterial": False}, False),
    ({"arterial": _pancreas(duct=True)}, {"arterial": True}, True),
    ({"venous": _pancreas(tumour=8)}, {"venous": False}, False),                    # 36 mm3 < 40 mm3
])
def test_verdicts_follow_the_rule_and_fusion(tmp_path, labels, verdicts, positive):
    order = [p for p in ("venous", "arterial") if p in labels]
    seg = StubSegmenter(*(labels[p] for p in order))
    report = screen_case({p: _ct() for p in order}, seg, tmp_path / "out")
    assert report["positive"] is positive and report["verdict"] == ("positive" if positive else "negative")
    assert report["reasons"] and all(not r.startswith("no pancreas") for r in report["reasons"])
    assert {p: e["positive"] for p, e in report["phases"].items()} == verdicts
    expected = [r for p in order if report["phases"][p]["positive"] == positive for r in report["phases"][p]["reasons"]]
    assert report["reasons"] == expected
    for phase, entry in report["phases"].items():
        assert entry["tumour_voxels"] == int((labels[phase] == 2).sum())
        assert entry["duct_mm3"] == pytest.approx(int((labels[phase] == 3).sum()) * VOXEL_MM3)


def test_findings_and_reasons_in_the_report(tmp_path):
    report = screen_case({"venous": _ct()}, StubSegmenter(_pancreas(tumour=64, duct=True)), tmp_path / "out")
    venous = report["phases"]["venous"]
    assert [f["kind"] for f in venous["findings"]] == ["tumour", "duct"]
    assert venous["findings"][0]["voxels"] == 64 and venous["findings"][0]["box_ijk"] == [[6, 8, 4], [9, 11, 7]]
    assert venous["tumour_mm3"] == pytest.approx(64 * VOXEL_MM3) and len(report["reasons"]) == 2
    assert report["reasons"][0].startswith("venous: tumour 288 mm3")


def test_bad_input_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    built = []
    far = _ct(origin=(500.0, 10.0, -300.0))
    with pytest.raises(InputError, match="do not overlap"):
        screen_case({"venous": _ct(), "arterial": far}, lambda: built.append(1), out)
    assert built == []                                   # the segmenter is built only after the checks
    with pytest.raises(InputError, match="venous and/or --arterial"):
        screen_case({}, StubSegmenter(), out)
    with pytest.raises(InputError, match="unknown phase"):
        screen_case({"portal": _ct()}, StubSegmenter(), out)
    with pytest.raises(InputError, match="look like CT"):          # the venous phase was written already
        screen_case({"venous": _ct(), "arterial": _non_ct()}, _tiny_segmenter(), out)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_before_any_work_or_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep")
    seg = StubSegmenter(_pancreas())
    with pytest.raises(OutputExistsError, match="not empty"):
        screen_case({"venous": _ct()}, seg, out)
    assert seg.calls == [] and (out / "old.txt").read_text() == "keep"
    with pytest.raises(InputError, match="not a LesionSeg output folder"):   # --overwrite deletes only our own output
        screen_case({"venous": _ct()}, seg, out, overwrite=True)
    assert seg.calls == [] and sorted(p.name for p in out.iterdir()) == ["old.txt"]
    (out / "old.txt").unlink()
    screen_case({"venous": _ct()}, seg, out)                       # an empty folder is used
    (out / "report.json").write_text("{}")                         # ours: replaced by the next run
    screen_case({"venous": _ct()}, StubSegmenter(_pancreas()), out, overwrite=True)   # our own output is replaced
    assert json.loads((out / "report.json").read_text())["method"] == "s4c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(InputError, match="output folder .* does not exist"):
        screen_case({"venous": _ct()}, StubSegmenter(_pancreas()), tmp_path / "missing" / "out")


# --- pictures ---------------------------------------------------------------------------------------------

def test_picture_target_prefers_tumour_then_duct_then_pancreas():
    ct = _ct()

    def target(arr):
        lab = ct.with_array(arr)
        return picture_target(lab, phase_findings(lab, ScreeningRule(tumour_min_mm3=1.0), "venous"))

    both = _pancreas(tumour=27, duct=True)
    assert target(both)[0].tolist() == [7, 9, 5] and target(both)[1] == "largest tumour (122 mm3)"
    duct_only = _pancreas(duct=True)
    assert target(duct_only)[0].tolist() == [17, 11, 5] and target(duct_only)[1] == "largest duct (608 mm3)"
    assert target(_pancreas())[0].tolist() == [14, 10, 6] and "pancreas centre" in target(_pancreas())[1]
    assert target(np.zeros((12, 24, 28), np.uint8))[0].tolist() == [14, 12, 6]
    bent = np.zeros((12, 24, 28), np.uint8)              # an L whose centroid falls outside it
    bent[5, 4:12, 4] = 2
    bent[5, 4, 4:12] = 2
    where, _ = target(bent)
    assert bent[where[2], where[1], where[0]] == 2


def test_orthogonal_views_are_radiological_for_any_axis_signs():
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    centre = np.array([2, 3, 1])
    img = Image(arr, (1.0, 0.5, 2.0))
    axial, info = orthogonal_view(img, centre, 2)
    assert np.array_equal(axial, arr[1]) and info["plane"] == "axial" and info["target"] == (3, 2)
    assert info["ends"] == ("R", "L", "A", "P") and info["aspect"] == 0.5
    coronal, info = orthogonal_view(img, centre, 1)
    assert np.array_equal(coronal, arr[::-1, 3, :]) and info["ends"] == ("R", "L", "S", "I")
    assert info["target"] == (2, 2) and info["aspect"] == 2.0
    sagittal, info = orthogonal_view(img, centre, 0)
    assert np.array_equal(sagittal, arr[::-1, :, 2]) and info["ends"] == ("A", "P", "S", "I")
    flipped = Image(arr, (1.0, 0.5, 2.0), direction=np.diag([-1.0, 1.0, -1.0]))
    axial, info = orthogonal_view(flipped, centre, 2)
    assert np.array_equal(axial, arr[1, :, ::-1]) and info["target"] == (3, 3)
    coronal, _ = orthogonal_view(flipped, centre, 1)
    assert np.array_equal(coronal, arr[:, 3, ::-1])
    wide = Image(np.zeros((3, 4, 400), np.int16), (1.0, 1.0, 1.0))
    assert orthogonal_view(wide, np.array([10, 2, 1]), 2)[0].shape == (4, 71)   # 120 mm field, clipped at 0


# --- command line -----------------------------------------------------------------------------------------

def _main(argv: list[str]) -> int:
    from lesionseg import cli

    return cli.main(argv)


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    net = S4CNet(channels=(4, 8, 16))
    card = {"method": "s4c", "network": {"class": "S4CNet", "kwargs": net.config},
            "preprocessing": S4CPreprocessing(patch=16, stride=8).to_dict(), "rule": ScreeningRule().to_dict(),
            "training": {"synthetic": True}}
    return save_model_folder(tmp_path / "model", card, {"weights.pt": net.state_dict()}).path


def test_cli_end_to_end(tmp_path, model_dir, capsys):
    write_image(_ct(), tmp_path / "v.nii.gz")
    write_image(_ct(origin=(-18.0, 10.0, -300.0)), tmp_path / "a.nii.gz")
    out = tmp_path / "report"
    code = _main(["--progress", "lines", "screen", "--venous", str(tmp_path / "v.nii.gz"), "--arterial",
                  str(tmp_path / "a.nii.gz"), "-o", str(out), "--weights", str(model_dir), "--device", "cpu",
                  "--stride", "16"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert stdout.startswith(f"S4C screening verdict: {report['verdict'].upper()} (venous ")
    assert "trained on synthetic phantoms only" in stdout and f"report: {out / 'report.json'}" in stdout
    assert "PROGRESS" in stderr and "screening the arterial phase" in stderr
    assert report["model"] == {"folder": str(model_dir), "synthetic_training_data": True}
    assert report["phases"]["venous"]["input"] == str((tmp_path / "v.nii.gz").resolve())
    assert read_image(out / "arterial_seg.nii.gz").same_grid(read_image(tmp_path / "a.nii.gz"))


@pytest.mark.parametrize("extra, message", [
    ([], "give --venous and/or --arterial"),
    (["--venous", "missing.nii.gz"], "no such file"),
    (["--venous", "V", "--stride", "0"], "stride must be between 1 and 16"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, model_dir, capsys, extra, message):
    write_image(_ct(), tmp_path / "v.nii.gz")
    extra = [str(tmp_path / "v.nii.gz") if e == "V" else str(tmp_path / e) if e.endswith(".gz") else e
             for e in extra]
    code = _main(["--progress", "none", "screen", *extra, "-o", str(tmp_path / "out"), "--weights", str(model_dir)])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stdout == "" and stderr.count("\n") == 1
    assert stderr.startswith("error: ") and message in stderr
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_non_empty_output(tmp_path, model_dir, capsys):
    write_image(_ct(), tmp_path / "v.nii.gz")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    code = _main(["screen", "--venous", str(tmp_path / "v.nii.gz"), "-o", str(tmp_path / "out")])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x"]


def _fresh_python(code: str, *argv: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise AssertionError(done.stderr[-1500:])
    return done.stdout.split()


def test_the_cli_module_imports_no_torch():
    """``lesionseg.cli`` builds its parser with :func:`cli_screen.add_parser`; that must stay light."""
    assert _fresh_python("import sys, lesionseg.methods.s4c.cli_screen; print('torch' in sys.modules)") == ["False"]


def test_a_card_naming_s4cnet_builds_in_a_fresh_interpreter(model_dir):
    code = ("import sys; from lesionseg.registry import build; "
            "print(type(build('s4c', weights=sys.argv[1], device='cpu').net).__name__)")
    assert _fresh_python(code, str(model_dir)) == ["S4CNet"]


def test_add_parser_defaults():
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    args = cli_screen.add_parser(sub).parse_args(["-o", "x"])
    assert args.venous is None and args.arterial is None and args.stride is None and args.device == "auto"


# --- inconclusive: the verdict says what it does not know -------------------------------------------------

def _air() -> Image:
    """An all-air CT (-1000 HU) on :func:`_ct`'s grid: nothing to screen."""
    return _ct().with_array(np.full((12, 24, 28), -1000, np.int16))


def _chest() -> Image:
    """A chest-like CT on :func:`_ct`'s grid: the 40 HU body (18 x 22 voxels per slice) holds two air-filled lungs
    (-850 HU, 14 x 8 voxels each) on every body slice: air fills 224 / 396 = 57 % of its cross-section."""
    arr = _ct().array.copy()
    arr[2:10, 3:21, 3:25] = 40
    arr[2:10, 5:19, 5:13] = -850
    arr[2:10, 5:19, 15:23] = -850
    return _ct().with_array(arr)


NO_PANCREAS = "no pancreas in view (venous phase: 0.0 mL segmented, under 5 mL): is this an abdominal CT covering " \
              "the pancreas?"


def test_an_all_air_ct_is_inconclusive_not_negative(tmp_path):
    from lesionseg.errors import LesionSegWarning
    from lesionseg.methods.s4c.screen import verdict_paragraph

    seg = StubSegmenter(np.zeros((12, 24, 28), np.uint8), rule=ScreeningRule())   # finds nothing at all
    with pytest.warns(LesionSegWarning, match=r"the venous phase failed a check, so the verdict is inconclusive, not "
                                              r"negative: no pancreas in view \(venous phase: 0\.0 mL segmented"):
        report = screen_case({"venous": _air()}, seg, tmp_path / "out")
    assert report["verdict"] == "inconclusive" and report["positive"] is None
    venous = report["phases"]["venous"]
    assert venous["verdict"] == "inconclusive" and venous["inconclusive"] is True and venous["positive"] is None
    assert report["reasons"] == [NO_PANCREAS]
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8")) == report   # null round-trips
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "# S4C screening: INCONCLUSIVE" in md and "| venous | INCONCLUSIVE |" in md and "not screened" in md
    text = verdict_paragraph(report)
    assert text.startswith(f"S4C screening verdict: INCONCLUSIVE (venous inconclusive). {NO_PANCREAS} At least one "
                           "phase failed its checks, so the case was not screened there (neither negative nor positive)")
    assert "abdominal CT in HU" in text


def test_a_chest_ct_is_never_negative_and_never_positive(tmp_path):
    """Nothing segmented among the lungs: no pancreas in view. A 'pancreas' with a 288 mm3 'tumour' among them
    (bounds low enough to pass, standing for a plausible gland): not an abdominal scan, the tumour set aside."""
    seg = StubSegmenter(np.zeros((12, 24, 28), np.uint8), rule=ScreeningRule())
    with pytest.warns(UserWarning):
        report = screen_case({"venous": _chest()}, seg, tmp_path / "empty")
    assert (report["verdict"], report["positive"], report["reasons"]) == ("inconclusive", None, [NO_PANCREAS])
    with pytest.warns(UserWarning, match="not an abdominal scan"):
        report = screen_case({"venous": _chest()}, StubSegmenter(_pancreas(tumour=64)), tmp_path / "blob")
    assert report["verdict"] == "inconclusive" and report["positive"] is None
    assert report["reasons"] == [
        "not an abdominal scan (venous phase: air fills 57 % of the body at the levels of the segmented pancreas, "
        "over 25 %): it lies in the chest, among the lungs",
        "venous: set aside, since the checks failed: tumour 288 mm3 (>= 40 mm3), largest part at (-8.8, 24.2, "
        "-289.0) mm LPS"]
    report = screen_case({"venous": _ct()}, StubSegmenter(_pancreas(tumour=64)), tmp_path / "abdomen")
    assert report["verdict"] == "positive"                       # the same labels in an abdomen: read


@pytest.mark.parametrize("venous, verdict, warning", [
    (_pancreas(), "inconclusive", "the verdict is inconclusive, not negative"),     # negative + unread phase
    (_pancreas(tumour=64), "positive", r"that phase is inconclusive \(the case is positive from the other phase\)"),
])
def test_an_inconclusive_phase_beside_a_read_one(tmp_path, venous, verdict, warning):
    from lesionseg.errors import LesionSegWarning

    seg = StubSegmenter(venous, np.zeros((12, 24, 28), np.uint8))
    with pytest.warns(LesionSegWarning, match=f"the arterial phase failed a check, so {warning}: no pancreas in view"):
        report = screen_case({"venous": _ct(), "arterial": _air()}, seg, tmp_path / "out")
    assert report["verdict"] == verdict and report["positive"] is (True if verdict == "positive" else None)
    assert report["phases"]["arterial"]["verdict"] == "inconclusive"
    assert report["phases"]["venous"]["verdict"] == ("positive" if verdict == "positive" else "negative")
    first = report["reasons"][0]
    assert first.startswith("venous: tumour 288 mm3") if verdict == "positive" else first.startswith(
        "no pancreas in view (arterial phase")


@pytest.mark.parametrize("image", [_air(), _chest()], ids=["air", "chest"])
def test_cli_screens_air_and_a_chest_ct_as_inconclusive(tmp_path, model_dir, capsys, image):
    """Whatever the (untrained) network draws on a chest-like CT, every check-free path to negative or positive is
    closed: under 5 mL no pancreas, 5-15 mL too small, more lies among the lungs. Exit status 0."""
    write_image(image, tmp_path / "ct.nii.gz")
    code = _main(["--progress", "none", "screen", "--venous", str(tmp_path / "ct.nii.gz"), "-o",
                  str(tmp_path / "out"), "--weights", str(model_dir), "--device", "cpu"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert stdout.startswith("S4C screening verdict: INCONCLUSIVE (venous inconclusive).")
    assert "warning: the venous phase failed a check, so the verdict is inconclusive, not negative: " in stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "inconclusive" and report["positive"] is None and report["reasons"]
