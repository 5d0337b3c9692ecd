"""recist-coseg on the dataset convention: training samples (labelled cases and RECIST-prompt cases), training
through ``lesionseg train`` (stages, card, checkpoints, resume), evaluation on the RECIST slice, and the
DeepLesion chain ``data import deeplesion`` -> ``train`` -> ``evaluate`` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lesionseg import Image, InputError, RecistLine, write_image
from lesionseg.cli import main
from lesionseg.data import Dataset, DatasetWriter
from lesionseg.metrics import recist_axes
from lesionseg.methods.recist.dataset import labelled_samples, lesion_prompts, training_samples
from lesionseg.modelfolder import find_model_folder, load_model_folder
from test_importers import _deeplesion
from test_recist import nodule_case

TINY = ["--channels", "4", "8", "--blocks", "1", "1", "--threads", "1", "--device", "cpu"]


def run(*argv) -> int:
    return main(["--progress", "none", *map(str, argv)])


def _two_nodules() -> tuple[Image, Image]:
    """A (5, 64, 64) CT with two nodules, truth value 2 (``nodule``) and a vessel of value 1 beside them."""
    image, truth = nodule_case(seed=3, radius_mm=4.0)
    label = truth.array.copy() * 2
    label[1:4, 5:9, 50:58] = 2
    label[:, 55:60, 5:10] = 1
    return image, truth.with_array(label)


def _labelled(root: Path, n: int = 3, prompts: dict | None = None, meta: dict | None = None) -> Path:
    """``n`` one-nodule cases (one patient each) and the unlabelled test cases ``prompts`` {case: (patient,
    prompts)}; labels ``nodule`` = 1."""
    with DatasetWriter(root, ("CT",), {"background": 0, "nodule": 1}, meta=meta) as ds:
        for i in range(n):
            image, truth = nodule_case(seed=i, radius_mm=4.0 + i)
            ds.add(f"N_{i}", [image], truth, patient=f"P{i}")
        for name, (patient, given) in (prompts or {}).items():
            ds.add(name, [nodule_case(seed=9)[0]], None, patient=patient, test=True, prompts=given)
    return root


def test_samples_of_labelled_and_prompted_cases(tmp_path):
    image, label = _two_nodules()
    line = RecistLine(*recist_axes(nodule_case(seed=9)[1]).long_endpoints_lps)
    with DatasetWriter(tmp_path / "D", ("CT",), {"background": 0, "vessel": 1, "nodule": 2},
                       meta={"official_split": {"W_1": "train", "W_2": "test"}}) as ds:
        ds.add("A_1", [image], label, patient="PA")
        ds.add("A_2", [image], label, patient="PB")
        for name, patient in (("W_1", "PC"), ("W_2", "PD"), ("W_3", "PB")):
            ds.add(name, [nodule_case(seed=9)[0]], None, patient=patient, test=True, prompts=[line])
        ds.add("W_4", [nodule_case(seed=9)[0]], None, patient="PE", test=True)
    dataset = Dataset(tmp_path / "D")
    label_map = {1: [2]}  # lesion = nodule; the vessel is background
    samples, record = training_samples(dataset, dataset.select(["A_1"]), dataset.select(["A_2"]), label_map)
    assert sorted({s.lesion for s in samples}) == ["A_1#1", "A_1#2", "W_1"]
    assert record["held_out_patients"] == ["PB", "PD"]
    assert (record["labelled_cases"], record["prompt_cases"], record["prompt_cases_held_out"]) == (1, 1, 2)
    assert record["prompt_samples"] == 1 and record["train_patients"] == 2 and record["train_slices"] == len(samples)
    weak = next(s for s in samples if s.prompted)
    assert weak.key and weak.k == 2 and weak.input.shape == (2, 128, 128) and weak.grabcut[64, 64]
    first = [s for s in samples if s.lesion == "A_1#1"]
    assert sorted(s.k for s in first) == [1, 2, 3] and [s.k for s in first if s.key] == [2]
    assert all(0 < s.grabcut.mean() < 0.5 for s in samples)
    only = training_samples(dataset, dataset.select(["A_1"]), [], label_map, use_prompts=False)[1]
    assert (only["prompt_cases"], only["held_out_patients"]) == (0, [])
    with pytest.raises(InputError, match="has no label file"):
        labelled_samples(dataset.case("W_1"), label_map)


def test_lesion_prompts_are_the_axes_training_measures():
    image, truth = nodule_case(radius_mm=6.0)
    (line,) = lesion_prompts(truth)
    axes = recist_axes(truth)
    np.testing.assert_allclose([line.long_start, line.long_end], axes.long_endpoints_lps, atol=1e-9)
    np.testing.assert_allclose([line.short_start, line.short_end], axes.short_endpoints_lps, atol=1e-9)
    tiny = truth.array * 0
    tiny[2, 30, 30] = 1  # 0.7 mm: below MIN_LONG_MM, no prompt
    assert lesion_prompts(truth.with_array(tiny)) == []


def test_train_writes_the_card_and_resumes(tmp_path, monkeypatch):
    data = _labelled(tmp_path / "D")
    out = tmp_path / "M"
    args = ["train", "recist-coseg", "--data", data, "-o", out, "--minutes", "0.005", "--fcn-minutes", "0.005",
            "--batch-size", "2", "--val-fraction", "0.34", *TINY]
    assert run(*args) == 0
    card = load_model_folder(out, "recist-coseg").model_card
    assert card.networks["weights.pt"]["kwargs"]["attention"] == "csa"
    assert card.networks["weights.pt"]["kwargs"]["channels"] == [4, 8]
    training = card.training
    assert len(training["held_out_cases"]) == 1 and len(training["train_cases"]) == 2
    assert training["held_out_patients"] == [Dataset(data).case(training["held_out_cases"][0]).patient]
    assert set(training["stages"]) == {"fcn", "coseg"} and training["stages"]["coseg"]["steps"] >= 1
    assert training["settings"]["channels"] == [4, 8] and training["clusters"]["k"] == 2
    assert not (tmp_path / "M.checkpoints").exists()
    assert run("evaluate", "recist-coseg", "--data", data, "--model", out, "--json", tmp_path / "e.json") == 0
    scored = json.loads((tmp_path / "e.json").read_text())
    assert {r["case"] for r in scored["records"]} == set(training["held_out_cases"])
    assert list(scored["summary"]) == ["network", "network + DenseCRF"]

    from lesionseg.methods.recist import train as recist_train

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recist_train, "save_model_folder", interrupted)
    assert run(*args[:5], tmp_path / "R", *args[6:]) == 130  # Ctrl-C after both stages, before the model is saved
    assert sorted(p.name for p in (tmp_path / "R.checkpoints").iterdir()) == ["coseg.ckpt", "fcn.ckpt"]
    monkeypatch.undo()
    assert run(*args[:5], tmp_path / "R", *args[6:]) == 2  # a new training does not replace the checkpoints
    assert run(*args[:5], tmp_path / "R", *args[6:], "--resume") == 0
    resumed = load_model_folder(tmp_path / "R", "recist-coseg").model_card.training["stages"]
    assert resumed["fcn"]["resumed"] and resumed["coseg"]["resumed"] and not (tmp_path / "R.checkpoints").exists()

    assert run("train", "recist-coseg", "--data", data, "-o", tmp_path / "F", "--attention", "none",
               "--minutes", "0.005", *TINY) == 0
    fcn = load_model_folder(tmp_path / "F", "recist-coseg").model_card
    assert set(fcn.training["stages"]) == {"fcn"} and fcn.networks["weights.pt"]["kwargs"]["attention"] == "none"
    assert run("train", "recist-coseg", "--data", data, "-o", tmp_path / "X", "--channels", "4", "8",
               "--blocks", "1") == 2


def test_score_is_2d_on_the_recist_slice(tmp_path):
    from lesionseg.methods.recist.evaluate import RecistEvaluation
    from lesionseg.registry import get_spec

    data = _labelled(tmp_path / "D", n=1)
    dataset = Dataset(data)
    evaluation = RecistEvaluation(get_spec("recist-coseg"), dataset, {1: [1]})
    case = dataset.cases()[0]
    truth = evaluation.truth(case)
    (prompt,) = evaluation.prompts(case, truth)
    key = recist_axes(truth).k
    flat = truth.array.copy()
    flat[np.arange(5) != key] = 0
    full = evaluation.score(truth, truth, case)
    assert (full["dice"], full["recall"], full["precision"], full["assd_mm"], full["slices"]) == (1.0, 1.0, 1.0, 0.0, 1)
    assert evaluation.score(truth.with_array(flat), truth, case) == full  # other slices do not count
    empty = evaluation.score(truth.with_array(flat * 0), truth, case)
    assert (empty["dice"], empty["recall"], empty["precision"], empty["assd_mm"]) == (0.0, 0.0, None, None)
    assert empty["truth_voxels"] == int(truth.array[key].sum())


def test_evaluate_shipped_model_rows(tmp_path):
    if find_model_folder("recist-coseg") is None:
        pytest.skip("no recist-coseg weights shipped in this installation")
    from lesionseg.evaluation import evaluate
    from lesionseg.methods.recist.segmenter import RecistOptions

    data, model = _labelled(tmp_path / "D", n=2), find_model_folder("recist-coseg").path
    result = evaluate("recist-coseg", data, [model], all_cases=True, baselines=True, device="cpu")
    assert list(result["summary"]) == ["network", "network + DenseCRF", "GrabCut"]
    for row in result["summary"].values():
        assert row["cases"] == 2 and row["dice"]["mean"] > 0.8
    grown = evaluate("recist-coseg", data, [model], all_cases=True, device="cpu", options=RecistOptions(propagate=3))
    assert grown["summary"]["network"] == result["summary"]["network"]  # 2D: neighbouring slices do not count


def _deeplesion_3d(root: Path) -> Path:
    """Two MedSAM2-style sub-volumes (uint8 window): patient 2 (held out by the official split of the
    DeepLesion fixture) and patient 1 (trained on)."""
    root.mkdir()
    k, j, i = np.indices((5, 40, 40))
    for name, radius in (("CT_Lesion_000002_01_01_049-053", 8), ("CT_Lesion_000001_01_01_108-110", 6)):
        mask = ((i - 20) ** 2 + (j - 19) ** 2 <= radius ** 2) & (abs(k - 2) <= 1)
        pixels = np.where(mask, 200, 20) + np.random.default_rng(radius).integers(0, 10, mask.shape)
        write_image(Image(pixels.astype(np.uint8), (0.8, 0.8, 2.5)), root / f"{name}_img_uint8win.nii.gz")
        write_image(Image(mask.astype(np.uint8), (0.8, 0.8, 2.5)), root / f"{name}_lesion_mask.nii.gz")
    return root


def test_deeplesion_end_to_end(tmp_path, capsys):
    """``data import deeplesion`` (RECIST axes only) -> ``train`` on the prompt cases -> ``evaluate`` scores the
    held-out patient's lesions against their RECIST axes; on DeepLesion 3D masks it scores Dice of the same patient."""
    src = _deeplesion(tmp_path / "DeepLesion")
    assert run("data", "import", "deeplesion", src, "-o", tmp_path / "D") == 0
    assert run("train", "recist-coseg", "--data", tmp_path / "D", "--minutes", "0.1", "--fcn-minutes", "0.01",
               "-o", tmp_path / "M", *TINY) == 0
    training = load_model_folder(tmp_path / "M", "recist-coseg").model_card.training
    assert (training["prompt_cases"], training["prompt_samples"], training["held_out_patients"]) == (2, 2, ["DL000002"])
    capsys.readouterr()
    assert run("evaluate", "recist-coseg", "--data", tmp_path / "D", "--model", tmp_path / "M", "--baselines",
               "--json", tmp_path / "axes.json") == 0
    axes = json.loads((tmp_path / "axes.json").read_text())
    assert {r["patient"] for r in axes["records"]} == {"DL000002"} and list(axes["summary"]) == [
        "network", "network + DenseCRF", "GrabCut"]
    grabcut = axes["summary"]["GrabCut"]
    assert grabcut["found"]["mean"] == 1.0 and grabcut["long_axis_error_pct"]["mean"] < 40
    assert "long-axis error %" in capsys.readouterr().out
    (tmp_path / "D" / "prompts.json").write_text("{}")
    assert run("evaluate", "recist-coseg", "--data", tmp_path / "D", "--model", tmp_path / "M") == 2
    assert "no lesion mask (no labelsTr/labelsTs) and no RECIST axes" in capsys.readouterr().err
    assert run("data", "import", "deeplesion-3d", _deeplesion_3d(tmp_path / "dl3d"), "-o", tmp_path / "D3") == 0
    assert run("evaluate", "recist-coseg", "--data", tmp_path / "D3", "--model", tmp_path / "M", "--baselines",
               "--json", tmp_path / "e.json") == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["cases"] == 1 and {r["case"] for r in result["records"]} == {"CT_Lesion_000002_01_01_049-053"}
    assert list(result["summary"]) == ["network", "network + DenseCRF", "GrabCut"]
    assert result["summary"]["GrabCut"]["dice"]["mean"] > 0.8
    assert "| GrabCut | 1 |" in capsys.readouterr().out
