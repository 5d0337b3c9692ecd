"""``lesionseg evaluate s4c``: the paper's tables (Tables 1 and 2) with inconclusive counted explicitly, the plain
baseline, pooling per-fold JSONs, held-out / all-cases scoring with a tiny model, and MSD Task07 end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lesionseg import Image, write_image
from lesionseg.methods.s4c.evaluate import S4CEvaluation, classification, summarise

TINY = ["--minutes", "0.02", "--train-patch", "16", "--patch", "16", "--channels", "4", "8", "16", "16",
        "--steps-per-epoch", "1", "--spacing", "3", "--device", "cpu"]


def _main(argv: list[str]) -> int:
    from lesionseg import cli

    return cli.main(["--progress", "none", *argv])


def _record(case, phase, truth, verdict, raw_mm3=0.0, dsc_pancreas=0.9, dsc_tumour=None, model="m"):
    return {"case": case, "patient": case, "model": model, "row": phase, "seconds": 1.0,
            "scores": {"phase": phase, "truth_positive": truth, "truth_tumour": truth, "truth_duct": False,
                       "verdict": verdict, "positive": {"positive": True, "negative": False}.get(verdict.lower()),
                       "raw_tumour_mm3": raw_mm3,
                       "dsc_pancreas": dsc_pancreas, "dsc_tumour": dsc_tumour, "dsc_duct": None}}


def _cohort():
    """Two positive cases (p1 seen only in the arterial phase, p2 missed) and two negatives (n2 over-called
    in the venous phase)."""
    return [_record("p1", "arterial", True, "positive", 300.0, 0.8, 0.5),
            _record("p1", "venous", True, "negative", 10.0, 0.8, 0.1),
            _record("p2", "arterial", True, "negative", 0.0, 0.7, 0.0),
            _record("p2", "venous", True, "negative", 0.0, 0.7, 0.0),
            _record("n1", "arterial", False, "negative", 2.0, 0.95), _record("n1", "venous", False, "negative", 0.0, 0.95),
            _record("n2", "arterial", False, "negative", 5.0, 0.9), _record("n2", "venous", False, "positive", 60.0, 0.9)]


def test_summary_counts_misses_wrong_calls_and_fuses_phases_by_any():
    s = summarise(_cohort())
    art, ven, fused = s["phases"]["arterial"], s["phases"]["venous"], s["fused"]
    assert (art["misses"], art["wrong_calls"], art["sensitivity"], art["specificity"]) == (1, 0, 50.0, 100.0)
    assert (ven["misses"], ven["wrong_calls"], ven["sensitivity"], ven["specificity"]) == (2, 1, 0.0, 50.0)
    assert (fused["misses"], fused["wrong_calls"], fused["sensitivity"], fused["specificity"]) == (1, 1, 50.0, 50.0)
    assert art["dsc_normal_pancreas"] == 92.5 and art["dsc_abnormal_pancreas"] == 75.0 and art["dsc_tumour"] == 25.0
    assert art["dsc_duct"] is None
    # the plain baseline: a phase is positive at >= T mm^3 of raw tumour, whatever the rules said
    assert s["baseline"]["1"]["fused"]["wrong_calls"] == 2 and s["baseline"]["1"]["fused"]["misses"] == 1
    assert s["baseline"]["500"]["fused"]["sensitivity"] == 0.0 and s["baseline"]["500"]["fused"]["specificity"] == 100.0
    table = S4CEvaluation.markdown({"method": "s4c", "dataset": "D", "synthetic": True, "models": ["m"], "cases": 4,
                                    "summary": s})
    assert "| S4C fused (any phase) | 1/2 | 1/2 | 0 / 0 | 50.0 | 50.0 |" in table
    assert "| baseline tumour >= 40 mm3, fused | 1/2 | 1/2 | 0 / 0 | 50.0 | 50.0 |" in table


def test_inconclusive_is_neither_a_hit_nor_an_all_clear():
    """An inconclusive call is never a true or false positive or negative: counted apart, it stays in the
    denominators of sensitivity and specificity (and lowers both)."""
    calls = [(True, "positive"), (True, "inconclusive"), (True, "negative"),
             (False, "negative"), (False, "inconclusive"), (False, "positive"), (False, "negative")]
    assert classification(calls) == {"cases": 7, "positive_cases": 3, "negative_cases": 4, "misses": 1,
                                     "wrong_calls": 1, "inconclusive": 2, "inconclusive_positive": 1,
                                     "inconclusive_negative": 1, "sensitivity": 33.33, "specificity": 50.0}
    # fused: a case is inconclusive when no phase is positive and one is inconclusive
    records = [_record("p", "arterial", True, "inconclusive"), _record("p", "venous", True, "negative"),
               _record("n", "arterial", False, "negative"), _record("n", "venous", False, "inconclusive"),
               _record("q", "arterial", True, "inconclusive"), _record("q", "venous", True, "positive")]
    assert [r["scores"]["positive"] for r in records[:2]] == [None, False]
    fused = summarise(records)["fused"]
    assert (fused["sensitivity"], fused["specificity"], fused["misses"], fused["wrong_calls"]) == (50.0, 0.0, 0, 0)
    assert (fused["inconclusive"], fused["inconclusive_positive"], fused["inconclusive_negative"]) == (2, 1, 1)


def test_records_written_before_lower_case_verdicts_are_read_alike():
    """Evaluation JSONs written before issue #18 hold upper-case verdicts; pooled with today's, they count the same;
    anything else is refused."""
    from lesionseg.errors import InputError

    lower = summarise(_cohort())
    upper = [{**r, "scores": {**r["scores"], "verdict": r["scores"]["verdict"].upper()}} for r in _cohort()]
    assert summarise(upper) == lower
    with pytest.raises(InputError, match="unknown verdict 'maybe'"):
        classification([(True, "maybe")])


def _write(path: Path, records: list) -> Path:
    path.write_text(json.dumps({"method": "s4c", "dataset": str(path.parent / "nowhere"), "synthetic": True,
                                "models": ["m"], "cases": len({r["case"] for r in records}), "records": records,
                                "summary": summarise(records)}), encoding="utf-8")
    return path


def test_pooling_fold_jsons_equals_summarising_all_records(tmp_path, capsys):
    from lesionseg.evaluation import pool

    records = _cohort()
    a = _write(tmp_path / "f0.json", records[:4])
    b = _write(tmp_path / "f1.json", records[4:])
    pooled = pool([a, b])
    assert pooled["records"] == records and pooled["cases"] == 4
    assert _main(["evaluate", "s4c", "--pool", str(a), "--pool", str(b), "--json", str(tmp_path / "pooled.json")]) == 0
    assert "| S4C fused (any phase) | 1/2 | 1/2 |" in capsys.readouterr().out
    written = json.loads((tmp_path / "pooled.json").read_text(encoding="utf-8"))
    assert written["summary"]["fused"] == json.loads(json.dumps(summarise(records)))["fused"]
    assert _main(["evaluate", "s4c", "--pool", str(a), "--pool", str(a)]) == 2
    assert "scored twice" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-case synthetic cohort and a tiny model that held out one case (fold 0 of 2)."""
    root = tmp_path_factory.mktemp("s4c_eval")
    data, model = root / "cohort", root / "m"
    assert _main(["data", "synthetic", "s4c", "-o", str(data), "--cases", "2", "--seed", "3"]) == 0
    assert _main(["train", "s4c", "--data", str(data), "-o", str(model), "--folds", "2", "--fold", "0", *TINY]) == 0
    return data, model


def test_held_out_and_all_cases_scoring_with_a_tiny_model(trained, tmp_path, capsys):
    data, model = trained
    assert _main(["evaluate", "s4c", "--data", str(data), "--model", str(model), "--stride", "16",
                  "--json", str(tmp_path / "held.json"), "--markdown", str(tmp_path / "held.md")]) == 0
    assert "| S4C fused (any phase) |" in capsys.readouterr().out
    held = json.loads((tmp_path / "held.json").read_text(encoding="utf-8"))
    assert len({r["case"] for r in held["records"]}) == 1 and [r["row"] for r in held["records"]] == ["venous", "arterial"]
    assert {"dsc_pancreas", "verdict", "raw_tumour_mm3", "pancreas_mm3"} <= set(held["records"][0]["scores"])
    assert held["summary"]["fused"]["cases"] == 1 and set(held["summary"]["phases"]) == {"venous", "arterial"}
    assert set(held["summary"]["baseline"]) == {"1", "40", "100", "250", "500", "1000"}
    assert (tmp_path / "held.md").read_text(encoding="utf-8").count("| S4C ") == 3
    assert _main(["evaluate", "s4c", "--data", str(data), "--model", str(model), "--all-cases",
                  "--json", str(tmp_path / "all.json")]) == 0
    every = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))
    assert len(every["records"]) == 4 and every["summary"]["fused"]["cases"] == 2
    assert _main(["evaluate", "s4c", "--data", str(data), "--model", str(model), "--stride", "17"]) == 2
    assert "stride must be between 1 and 16" in capsys.readouterr().err


# --- MSD Task07 Pancreas (single phase, labels pancreas=1, cancer=2) ----------------------------------------

def _msd_task07(root: Path, cases: int = 4) -> Path:
    """A tiny Task07-like folder: one CT per case (air around a soft-tissue body), labels pancreas 1 (around
    the tumour, not in it) and cancer 2, one unlabelled test case, macOS ``._`` junk as in the archives."""
    rng = np.random.default_rng(7)
    training = []
    for n in range(cases + 1):
        name, test = f"pancreas_{n + 1:03d}", n == cases
        ct = np.full((10, 20, 20), -1000, np.int16)
        ct[1:9, 2:18, 2:18] = 40 + rng.integers(-20, 20, (8, 16, 16))
        label = np.zeros(ct.shape, np.uint8)
        label[3:7, 5:14, 5:14] = 1
        label[4:6, 8:11, 8:11] = 2
        ct[label == 2] = 120
        kw = {"spacing": (2.0, 2.0, 3.0), "origin": (-20.0, -20.0, 100.0)}
        folder = "imagesTs" if test else "imagesTr"
        (root / folder).mkdir(parents=True, exist_ok=True)
        write_image(Image(ct, **kw), root / folder / f"{name}.nii.gz")
        (root / folder / f"._{name}.nii.gz").write_bytes(b"\x00\x05\x16\x07")
        if not test:
            (root / "labelsTr").mkdir(exist_ok=True)
            write_image(Image(label, **kw), root / "labelsTr" / f"{name}.nii.gz")
            training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    meta = {"name": "Pancreas", "tensorImageSize": "3D", "modality": {"0": "CT"},
            "labels": {"0": "background", "1": "pancreas", "2": "cancer"}, "numTraining": cases, "numTest": 1,
            "training": training, "test": [f"./imagesTs/pancreas_{cases + 1:03d}.nii.gz"]}
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def test_msd_task07_imports_trains_and_evaluates_end_to_end(tmp_path, capsys):
    from lesionseg.modelfolder import load_model_folder

    source, data, model = _msd_task07(tmp_path / "Task07_Pancreas"), tmp_path / "Dataset007", tmp_path / "m"
    assert _main(["data", "import", "msd", str(source), "-o", str(data)]) == 0
    assert _main(["train", "s4c", "--data", str(data), "--minutes", "0.2", "-o", str(model),
                  "--labels", "pancreas=1,tumour=2", *TINY[2:]]) == 0
    card = load_model_folder(model, "s4c").card
    assert card["training"]["label_map"] == "pancreas=1,tumour=2" and len(card["training"]["held_out_cases"]) == 1
    capsys.readouterr()
    assert _main(["evaluate", "s4c", "--data", str(data), "--model", str(model), "--labels", "pancreas=1,tumour=2",
                  "--json", str(tmp_path / "eval.json")]) == 0
    assert "| ct |" in capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert [r["row"] for r in result["records"]] == ["ct"] and result["records"][0]["scores"]["truth_tumour"]
    assert result["summary"]["fused"]["positive_cases"] == 1 and result["summary"]["fused"]["specificity"] is None
    assert result["records"][0]["scores"]["dsc_pancreas"] is not None
    # by name, MSD's "cancer" is s4c's tumour: the same map without --labels
    assert _main(["evaluate", "s4c", "--data", str(data), "--model", str(model), "--json", str(tmp_path / "e2.json")]) == 0
    by_name = json.loads((tmp_path / "e2.json").read_text(encoding="utf-8"))
    assert by_name["records"][0]["scores"] == result["records"][0]["scores"]
    # and the model segments one phase with lesionseg predict
    image = sorted((data / "imagesTr").glob("*_0000.nii.gz"))[0]
    assert _main(["predict", "s4c", str(image), "-o", str(tmp_path / "seg.nii.gz"), "--weights", str(model),
                  "--stride", "8", "--device", "cpu"]) == 0
    assert (tmp_path / "seg.nii.gz").is_file()
