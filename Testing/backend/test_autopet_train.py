"""autopet-l2snet end to end through the command line: a tiny FDG-PET-CT-Lesions release (``<patient>/<study>/
SUV.nii.gz, CTres.nii.gz, SEG.nii.gz``, written here from small whole-body phantoms) -> ``lesionseg data import
autopet`` -> ``lesionseg train autopet-l2snet --minutes 0.2`` -> ``lesionseg evaluate`` and ``predict``; then the
stage, fine-tuning (``--init``), ``--networks-from`` and budget rules."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lesionseg import Image, cli
from lesionseg.io import write_image
from lesionseg.modelfolder import load_model_folder
from lesionseg.phantoms.wholebody import wholebody_petct

TINY = dict(shape=(64, 32, 32), spacing=(12.5, 8.0, 16.0))
"""A whole-body phantom on a 64 x 32 x 32 grid (coarse voxels)."""
STUDIES = (("PETCT_a", "01-01-2001-NA-PET-CT", True), ("PETCT_a", "02-02-2002-NA-PET-CT", False),
           ("PETCT_b", "03-03-2003-NA-PET-CT", True), ("PETCT_c", "04-04-2004-NA-PET-CT", False),
           ("PETCT_d", "05-05-2005-NA-PET-CT", True))
"""``(patient, study, with lesions)``: patient a has two studies, which the split keeps together."""
NETS = ["--device", "cpu", "--spacing", "16", "--loc-size", "32", "32", "--seg-patch", "16", "16", "16",
        "--train-patch", "16", "16", "16", "--loc-encoder", "4", "8", "16", "--loc-decoder", "8", "4",
        "--seg-channels", "4", "8", "16", "--steps-per-epoch", "2", "--loc-batch-size", "2"]
"""Tiny networks and windows on a 16 mm working grid, so that training steps take milliseconds."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*argv) -> int:
    return cli.main(["--progress", "none", *map(str, argv)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The autoPET fixture, its dataset and a model trained on it with ``--minutes 0.2`` (the issue's command)."""
    root = tmp_path_factory.mktemp("autopet")
    source = root / "FDG-PET-CT-Lesions"
    for n, (patient, study, lesions) in enumerate(STUDIES):
        pet, ct, label, _ = wholebody_petct(seed=100 + n, with_lesions=lesions, **TINY)
        folder = source / patient / study
        folder.mkdir(parents=True)
        write_image(pet, folder / "SUV.nii.gz")
        write_image(label, folder / "SEG.nii.gz")
        if n == 4:  # a CTres off the SUV grid: the importer pairs it (linear, -1000 HU outside)
            ct = Image(ct.array, ct.spacing, np.asarray(ct.origin) + 3.0, ct.direction)
        write_image(ct, folder / "CTres.nii.gz")
    data, model = root / "Dataset001_autoPET", root / "model"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    assert run("data", "import", "autopet", source, "-o", data) == 0
    assert run("train", "autopet-l2snet", "--data", data, "--minutes", "0.2", "-o", model, *NETS) == 0
    torch.set_num_threads(threads)
    return source, data, model


def test_import_train_evaluate_end_to_end(trained, tmp_path, capsys):
    from lesionseg.data import Dataset, holdout_split
    from lesionseg.methods.autopet.train import TRAINING

    source, data, model = trained
    folder = load_model_folder(model, "autopet-l2snet")
    card, training = folder.card, folder.card["training"]
    assert set(card["files"]) == {"loc.pt", "seg.pt"} and not (model.parent / "model.checkpoints").exists()
    assert training["synthetic"] is False and training["label_map"] == "lesion=1" and training["stage"] == "both"
    split = holdout_split(Dataset(data), 0.2, 0, lambda case: TRAINING.stratify(case, {1: [1]}))
    assert training["held_out_cases"] == list(split.held_out) and training["train_cases"] == list(split.train)
    assert {name.split("_0")[0] for name in split.held_out} in ({"PETCT_a"}, {"PETCT_b"}, {"PETCT_d"})
    stages = training["stages"]
    assert stages["loc"]["config"]["max_minutes"] == pytest.approx(0.2 / 3)   # --minutes split 1 : 2
    assert stages["seg"]["config"]["max_minutes"] == pytest.approx(0.4 / 3)
    assert stages["seg"]["steps"] > 0 and 0.0 < stages["seg"]["initial_lesion_probability"] < 0.5
    assert card["preprocessing"]["ct_window"] == [100.0, 250.0]
    assert card["networks"]["seg.pt"]["kwargs"]["norm"] == "layer"
    capsys.readouterr()
    out = tmp_path / "out.json"
    assert run("evaluate", "autopet-l2snet", "--data", data, "--model", model, "--json", out,
               "--markdown", tmp_path / "out.md", "--device", "cpu") == 0
    result = json.loads(out.read_text())
    rows = ["2D only", "3D only (cue-weighted net)", "L2SNet", "L2SNet + adaptive threshold"]
    assert list(result["summary"]) == rows and result["cases"] == len(training["held_out_cases"])
    assert {r["case"] for r in result["records"]} == set(training["held_out_cases"])
    for entry in result["summary"].values():
        assert set(entry["autopet"]) == {"dice", "fpv_ml", "fnv_ml"} and entry["positive_cases"] >= 1
    assert "| L2SNet + adaptive threshold |" in (tmp_path / "out.md").read_text() in capsys.readouterr().out
    study = source / "PETCT_b" / STUDIES[2][1]
    assert run("predict", "autopet-l2snet", study / "SUV.nii.gz", study / "CTres.nii.gz", "--weights", model,
               "--device", "cpu", "--pet-units", "suv", "--mode", "3d", "--no-adaptive", "-o",
               tmp_path / "seg.nii.gz", "--table", tmp_path / "t.json", "--mip", tmp_path / "m.png") == 0
    assert all((tmp_path / f).is_file() for f in ("seg.nii.gz", "t.json", "m.png"))


def test_stages_fine_tuning_and_budgets(trained, tmp_path, capsys):
    _, data, model = trained
    fast = ["--data", data, "--minutes-loc", "0.005", "--minutes-seg", "0.005", *NETS]
    assert run("train", "autopet-l2snet", *fast, "-o", tmp_path / "s", "--stage", "seg") == 2
    assert "needs a localisation net" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert run("train", "autopet-l2snet", *fast, "-o", tmp_path / "s", "--minutes", "1") == 2
    assert "not both" in capsys.readouterr().err
    assert run("train", "autopet-l2snet", *fast, "-o", tmp_path / "s", "--initial-probability", "1.5") == 2
    assert "--initial-probability" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert run("train", "autopet-l2snet", *fast, "-o", tmp_path / "s", "--init", model, "--networks-from",
               tmp_path) == 2
    assert "--networks-from" in capsys.readouterr().err
    tuned = tmp_path / "tuned"   # fine-tune the cue-weighted net: the base's architecture and weights are kept
    assert run("train", "autopet-l2snet", *fast, "-o", tuned, "--stage", "seg", "--init", model,
               "--seg-channels", "2", "4", "8") == 0
    card = load_model_folder(tuned, "autopet-l2snet").card
    assert set(card["files"]) == {"loc.pt", "seg.pt"} and card["training"]["finetune"] is True
    assert card["networks"]["seg.pt"]["kwargs"]["channels"] == [4, 8, 16]
    assert card["training"]["stages"]["seg"]["initial_lesion_probability"] is None  # fine-tuned, not re-initialised
    assert card["files"]["loc.pt"] == load_model_folder(model).card["files"]["loc.pt"]  # copied as it was
    plain = tmp_path / "plain"   # add the "3D only" net beside the others; it starts fresh
    assert run("train", "autopet-l2snet", *fast, "-o", plain, "--stage", "plain", "--networks-from", model,
               "--seg-channels", "2", "4", "8") == 0
    card = load_model_folder(plain, "autopet-l2snet").card
    assert set(card["files"]) == {"loc.pt", "seg.pt", "seg_plain.pt"} and card["training"]["finetune"] is False
    assert card["networks"]["seg_plain.pt"]["kwargs"]["channels"] == [2, 4, 8]
    assert card["preprocessing"] == load_model_folder(model).card["preprocessing"]


def test_ct_dropout_and_keep_last_reach_the_card(trained, tmp_path):
    """``--ct-dropout`` is recorded in the card's preprocessing (what lets the segmenter run PET-only); a run that
    keeps a 3D net of its base trained without dropout records the lower value (and still trains its own net
    with the flag's dropout); ``--keep last`` skips validation."""
    _, data, model = trained
    fast = ["--data", data, "--minutes-loc", "0.005", "--minutes-seg", "0.005", *NETS]
    dropped = tmp_path / "dropped"
    assert run("train", "autopet-l2snet", *fast, "-o", dropped, "--stage", "seg", "--init", model,
               "--ct-dropout", "0.5", "--keep", "last", "--hot-negative-probability", "0.2") == 0
    card = load_model_folder(dropped, "autopet-l2snet").card
    assert card["preprocessing"]["ct_dropout"] == 0.5 and card["training"]["stages"]["seg"]["ct_dropout"] == 0.5
    assert card["training"]["stages"]["seg"]["hot_negative_probability"] == 0.2
    assert card["training"]["stages"]["seg"]["validation_dice"] is None
    assert card["training"]["stages"]["seg"]["config"]["keep"] == "last"
    both = tmp_path / "both"   # a plain net trained with dropout beside a seg net trained without: 0 is kept
    assert run("train", "autopet-l2snet", *fast, "-o", both, "--stage", "plain", "--networks-from", model,
               "--ct-dropout", "0.5") == 0
    card = load_model_folder(both, "autopet-l2snet").card
    assert card["preprocessing"]["ct_dropout"] == 0.0
    assert card["training"]["stages"]["plain"]["ct_dropout"] == 0.5  # the net it trained did see blank CTs
    assert run("train", "autopet-l2snet", *fast, "-o", tmp_path / "bad", "--ct-dropout", "1") == 2
    assert not (tmp_path / "bad").exists()


def test_ct_dropout_blanks_the_ct_channel_of_that_share_of_patches():
    from lesionseg.methods.autopet.data import Volume
    from lesionseg.methods.autopet.pipeline import NO_CT
    from lesionseg.methods.autopet.trainers import SegTrainer
    from lesionseg.training import TrainConfig

    rng = np.random.default_rng(0)
    label = np.zeros((12, 12, 12), np.uint8)
    label[4:8, 4:8, 4:8] = 1
    volume = Volume("v", rng.random((12, 12, 12), np.float32) + 0.1, rng.random((12, 12, 12), np.float32) + 0.1,
                    label)
    config = TrainConfig(epochs=1, steps_per_epoch=200, device="cpu", seed=0)
    for share, expected in ((0.0, 0.0), (0.5, 0.5), (0.9, 0.9)):
        trainer = SegTrainer(torch.nn.Conv3d(2, 1, 1), config, [volume], (8, 8, 8), 1, False, 1.0, [], ct_dropout=share)
        blank = [bool((x[0, 1] == NO_CT).all()) for x, _, _ in trainer.train_batches(0)]
        assert all(bool((x[0, 0] > 0).any()) for x, _, _ in trainer.train_batches(0))  # the PET is never blanked
        assert np.mean(blank) == pytest.approx(expected, abs=0.1)
