"""The s4c evaluation's tables (paper Tables 1 and 2) and the pooling of per-fold evaluation JSONs."""
from __future__ import annotations

import json

import pytest

from lesionseg.errors import InputError
from lesionseg.methods.s4c.evaluate import main, markdown, pool_records, summarise


def _record(case, phase, truth, called, raw_mm3=0.0, dsc_pancreas=0.9, dsc_tumour=None):
    return {"case": case, "phase": phase, "model": "m", "truth_positive": truth, "truth_tumour": truth,
            "truth_duct": False, "positive": called, "tumour_mm3": raw_mm3 if called else 0.0, "duct_mm3": 0.0,
            "raw_tumour_mm3": raw_mm3, "dsc_pancreas": dsc_pancreas, "dsc_tumour": dsc_tumour, "dsc_duct": None,
            "seconds": 1.0}


def _cohort():
    """Two positive cases (p1 seen only in the arterial phase, p2 missed) and two negatives (n2 over-called
    in the venous phase)."""
    return [_record("p1", "arterial", True, True, 300.0, 0.8, 0.5), _record("p1", "venous", True, False, 10.0, 0.8, 0.1),
            _record("p2", "arterial", True, False, 0.0, 0.7, 0.0), _record("p2", "venous", True, False, 0.0, 0.7, 0.0),
            _record("n1", "arterial", False, False, 2.0, 0.95), _record("n1", "venous", False, False, 0.0, 0.95),
            _record("n2", "arterial", False, False, 5.0, 0.9), _record("n2", "venous", False, True, 60.0, 0.9)]


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
    table = markdown(s)
    assert "| S4C fused (any phase) | 1/2 | 1/2 | 50.0 | 50.0 |" in table


def _write(path, records):
    path.write_text(json.dumps({"records": records, "summary": summarise(records)}), encoding="utf-8")
    return path


def test_pooling_fold_jsons_equals_summarising_all_records(tmp_path, capsys):
    records = _cohort()
    a = _write(tmp_path / "f0.json", records[:4])
    b = _write(tmp_path / "f1.json", records[4:])
    assert pool_records([a, b]) == records
    assert main(["--pool", str(a), "--pool", str(b), "--json", str(tmp_path / "pooled.json")]) == 0
    pooled = json.loads((tmp_path / "pooled.json").read_text(encoding="utf-8"))
    assert pooled["summary"] == json.loads(json.dumps(summarise(records)))
    assert "S4C fused (any phase) | 1/2 | 1/2" in capsys.readouterr().out


def test_pooling_refuses_a_case_scored_twice_and_a_foreign_json(tmp_path):
    a = _write(tmp_path / "f0.json", _cohort()[:4])
    with pytest.raises(InputError, match="p1 .arterial. is scored in both"):
        pool_records([a, a])
    other = tmp_path / "other.json"
    other.write_text('{"cases": []}', encoding="utf-8")
    with pytest.raises(InputError, match="not an s4c evaluation JSON"):
        pool_records([other])


def test_command_line_needs_models_or_pooled_jsons(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2 and "either --data and --model (and --all-cases), or --pool" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path)])
    assert "--data and --model go together" in capsys.readouterr().err
    a = _write(tmp_path / "f0.json", _cohort())
    with pytest.raises(SystemExit):
        main(["--pool", str(a), "--all-cases"])
    assert "or --pool" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--pool", str(a), "--json", str(tmp_path / "missing" / "out.json")])
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_held_out_and_all_cases_scoring_with_a_tiny_model(tmp_path, capsys):
    from lesionseg import cli
    from lesionseg.methods.s4c.data import write_cohort

    data = tmp_path / "cohort"
    write_cohort(data, 2, seed=3)
    model = tmp_path / "m"
    assert cli.main(["--progress", "none", "train", "s4c", "--data", str(data), "-o", str(model), "--minutes", "0.01",
                     "--train-patch", "16", "--patch", "16", "--channels", "4", "8", "16", "--steps-per-epoch", "1",
                     "--folds", "2", "--fold", "0", "--device", "cpu"]) == 0
    assert main(["--data", str(data), "--model", str(model), "--json", str(tmp_path / "held.json")]) == 0
    held = json.loads((tmp_path / "held.json").read_text(encoding="utf-8"))["records"]
    assert len({r["case"] for r in held}) == 1 and {r["phase"] for r in held} == {"arterial", "venous"}
    assert main(["--data", str(data), "--model", str(model), "--all-cases", "--json", str(tmp_path / "all.json")]) == 0
    every = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))
    assert len(every["records"]) == 4 and every["summary"]["fused"]["cases"] == 2
    with pytest.raises(SystemExit):
        main(["--data", str(data), "--model", str(model), "--model", str(model), "--all-cases"])
    assert "one model; 2 were given" in capsys.readouterr().err
    other = tmp_path / "other"                                  # the cohort without the held-out case
    other.mkdir()
    for path in data.glob("*.nii.gz"):
        if not path.name.startswith(held[0]["case"]):
            (other / path.name).symlink_to(path)
    with pytest.raises(SystemExit):
        main(["--data", str(other), "--model", str(model)])
    assert "is it the cohort the model was trained on" in capsys.readouterr().err
