"""autopet-l2snet: networks, the adaptive threshold, the PET/CT protocol with pointwise fake networks, bad input,
training end to end on tiny phantoms, the CLI hooks (reading PET units, lesion table and MIP)."""
from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch
from torch import nn

from lesionseg import Image
from lesionseg.errors import InputError, OutputExistsError, WeightsError
from lesionseg.io import read_image, write_image
from lesionseg.methods.autopet.data import held_out, list_cases, load_volumes, sample_patch, sample_slice, write_cohort
from lesionseg.methods.autopet.network import L2SLocNet, loc_network, seg_network
from lesionseg.methods.autopet.segmenter import (L2SNetSegmenter, L2SPreprocessing, scale, threshold_maps,
                                                 working_grid)
from lesionseg.methods.autopet.train import soft_dice_loss, weighted_bce
from lesionseg.phantoms.wholebody import wholebody_petct

TINY = dict(shape=(64, 32, 32), spacing=(12.5, 8.0, 16.0))
"""A whole-body phantom on a 64 x 32 x 32 grid (coarse voxels), for fast tests."""


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread (and do not stall when other jobs load the CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Pointwise(nn.Module):
    """Fake network: logit ``20 * (x[channel] - centre)`` per voxel (2D or 3D), so every window agrees exactly."""

    def __init__(self, centre_suv: float, channel: int = 0) -> None:
        super().__init__()
        self.centre, self.channel = centre_suv / 15.0, channel
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x[:, self.channel:self.channel + 1] - self.centre)


def _pair(direction=None, pet_spacing=(4.0, 4.0, 4.0)):
    """PET (SUV 1 background, region A = 2 SUV, region B = 4 SUV) and a CT on a finer, shifted grid."""
    pet = np.ones((20, 24, 16), np.float32)
    pet[4:8, 5:10, 3:7] = 2.0
    pet[12:16, 14:20, 8:13] = 4.0
    origin = (-30.0, 40.0, -200.0)
    pet_image = Image(pet, pet_spacing, origin, direction if direction is not None else np.eye(3), {"units": "SUV"})
    ct = np.full((42, 50, 34), 40.0, np.float32)
    ct[:, :, :4] = -1000.0
    ct_image = Image(ct, (2.0, 2.0, 2.0), (-33.0, 37.0, -203.0), pet_image.direction)
    return pet_image, ct_image


def _segmenter(**kwargs) -> L2SNetSegmenter:
    """cue > 0.5 where PET > 1.5 SUV, P > 0.5 where PET > 3 SUV (P(2 SUV) = 0.21, P(1 SUV) = 0.065)."""
    nets = {"loc_net": Pointwise(1.5), "seg_net": Pointwise(3.0), **kwargs}
    return L2SNetSegmenter(None, "cpu", preprocessing=L2SPreprocessing(loc_size=(16, 16), seg_patch=(8, 8, 8)), **nets)


# --- networks and the threshold rule ------------------------------------------------------------------------

def test_networks_keep_size_and_match_the_paper_configuration():
    loc = loc_network([4, 8, 16], [8, 4])
    assert loc(torch.zeros(2, 1, 37, 21)).shape == (2, 1, 37, 21) and loc.divisor == 4
    seg = seg_network([4, 8, 16, 32])
    assert seg.config["in_channels"] == 2 and seg.config["out_channels"] == 1 and seg.config["norm"] == "layer"
    assert seg(torch.zeros(1, 2, 9, 10, 11)).shape == (1, 1, 9, 10, 11)
    assert all(m.num_groups == 1 for m in seg.modules() if isinstance(m, nn.GroupNorm))
    with pytest.raises(ValueError, match="decoder"):
        L2SLocNet(encoder=[4, 8], decoder=[4, 4])


def test_adaptive_threshold_is_exact():
    prep = L2SPreprocessing()
    prob = np.array([0.05, 0.2, 0.2, 0.6, 0.6, 0.45, 0.5, 0.3], np.float32)  # last: cue exactly 0.5 does not count
    cue = np.array([0.9, 0.9, 0.3, 0.3, 0.9, 0.6, 0.9, 0.5], np.float32)
    assert threshold_maps(prob, cue, "l2snet", True, prep).tolist() == [0, 1, 0, 1, 1, 1, 1, 0]
    assert threshold_maps(prob, cue, "l2snet", False, prep).tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert threshold_maps(prob, None, "3d", True, prep).tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert threshold_maps(None, cue, "2d", False, prep).tolist() == [1, 1, 0, 0, 1, 1, 1, 0]
    with pytest.raises(InputError, match="mode"):
        threshold_maps(prob, cue, "3D", True, prep)
    with pytest.raises(InputError, match="window"):
        L2SPreprocessing(ct_window=(250.0, 100.0))


def test_scale_and_working_grid():
    assert scale(np.array([-5.0, 0.0, 7.5, 15.0, 40.0]), (0.0, 15.0)).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert scale(np.array([-1000.0, 175.0, 900.0]), (100.0, 250.0)).tolist() == [0.0, 0.5, 1.0]
    pet, _ = _pair()
    assert working_grid(pet, 4.0).same_grid(pet)  # an LPS-aligned 4 mm PET is its own working grid
    coarse = working_grid(pet, 8.0)
    assert coarse.shape == (10, 12, 8) and np.allclose(coarse.origin, np.asarray(pet.origin) + 2.0)
    tilt = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # i runs posterior, j to the right
    turned = working_grid(Image(pet.array, (4.0, 4.0, 4.0), pet.origin, tilt), 4.0)
    assert np.array_equal(turned.direction, np.eye(3)) and turned.shape == (20, 16, 24)


# --- the protocol ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flipped", [False, True])
def test_label_is_on_the_pet_grid_and_follows_each_mode(flipped):
    pet, ct = _pair()
    if flipped:  # the same physical image stored head-first along k (k runs inferior): an exact round trip
        down = np.diag([1.0, 1.0, -1.0])
        top = np.asarray(pet.origin) + [0.0, 0.0, 4.0 * (pet.shape[0] - 1)]
        pet = Image(pet.array[::-1].copy(), pet.spacing, top, down, pet.meta)
    seg = _segmenter()
    seg.set_image(pet, ct)
    a = np.zeros(pet.shape, bool)
    a[4:8, 5:10, 3:7] = True
    b = np.zeros(pet.shape, bool)
    b[12:16, 14:20, 8:13] = True
    a, b = (a[::-1], b[::-1]) if flipped else (a, b)
    expected = {("2d", True): a | b, ("3d", True): b, ("l2snet", False): b, ("l2snet", True): a | b}
    for (mode, adaptive), truth in expected.items():
        label = seg.label(mode, adaptive)
        assert label.array.dtype == np.uint8 and label.same_grid(pet, tol=0)
        np.testing.assert_array_equal(label.array > 0, truth)
    assert np.array_equal(seg.predict().array, seg.label("l2snet", True).array)
    cue, prob = seg.location_cue(), seg.probability()
    assert cue.same_grid(pet) and prob.same_grid(pet) and cue.array.dtype == np.float32
    centre = (19 - 14, 16, 10) if flipped else (14, 16, 10)
    assert prob.array[centre] == pytest.approx(1 / (1 + np.exp(-20 * (4 / 15 - 0.2))), abs=1e-5)


def test_oblique_pet_keeps_its_grid():
    tilt = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1.0]])
    pet, ct = _pair()
    pet = Image(pet.array, pet.spacing, pet.origin, tilt, pet.meta)
    seg = _segmenter()
    seg.set_image(pet, Image(ct.array, ct.spacing, ct.origin, tilt))
    label = seg.label("l2snet", False)
    assert label.same_grid(pet, tol=0) and label.array.dtype == np.uint8
    b = pet.array > 3.0
    assert 2 * (label.array.astype(bool) & b).sum() / (label.array.sum() + b.sum()) > 0.8  # two resamplings


def test_mode_switches_and_networks():
    pet, ct = _pair()
    seg = _segmenter()
    seg.set_image(pet, ct)
    seg.set_mode("2d")
    assert seg.predict().array.sum() == 4 * 5 * 4 + 4 * 6 * 5
    with pytest.raises(InputError, match="mode"):
        seg.set_mode("nnunet")
    with pytest.raises(InputError, match="no prompt"):
        seg.predict(prompt=[1, 2])
    with pytest.raises(WeightsError, match="seg_plain"):
        seg.probability("plain")
    only_loc = L2SNetSegmenter(None, "cpu", loc_net=Pointwise(1.5), preprocessing=seg.prep)  # --stage loc model
    only_loc.apply_predict_args(argparse.Namespace(mode=None, no_adaptive=False))
    assert only_loc.mode == "2d" and _segmenter().mode == "l2snet" and _segmenter().adaptive
    with pytest.raises(WeightsError, match="seg.pt"):
        only_loc.set_mode("l2snet")
    plain = _segmenter(plain_net=Pointwise(1.5))  # "3D only" uses the net trained without the cue when there is one
    plain.set_image(pet, ct)
    assert plain.label("3d").array.sum() == 4 * 5 * 4 + 4 * 6 * 5 and plain.label("l2snet", False).array.sum() == 120
    with pytest.raises(WeightsError):
        L2SNetSegmenter(None, "cpu")


def test_localise_needs_pet_only():
    pet, _ = _pair()
    cue = _segmenter().localise(pet)
    assert cue.same_grid(pet) and ((cue.array > 0.5) == (pet.array > 1.5)).all()
    with pytest.raises(InputError, match="SUV"):
        _segmenter().localise(pet.with_array(np.full(pet.shape, 3.0, np.float32)))


def test_bad_input_is_one_clear_error():
    pet, ct = _pair()
    seg = _segmenter()
    with pytest.raises(InputError, match="swapped"):
        seg.set_image(ct, pet)
    far = Image(ct.array, ct.spacing, (5000.0, 0.0, 0.0), ct.direction)
    with pytest.raises(InputError, match="overlap"):
        seg.set_image(pet, far)
    with pytest.raises(InputError, match="constant"):
        seg.set_image(pet.with_array(np.zeros(pet.shape, np.float32)), ct)
    with pytest.raises(InputError, match="2 image"):
        seg.set_image(pet)
    with pytest.raises(InputError, match="set_image"):
        _segmenter().predict()


# --- data, losses, training ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wb") / "cohort"
    write_cohort(folder, 4, seed=5, **TINY)
    return folder


def test_sampling_shapes_fraction_and_weight(cohort):
    prep = L2SPreprocessing(spacing_mm=16.0, loc_size=(32, 32), seg_patch=(16, 16, 16))
    volumes = load_volumes(list_cases(cohort), prep)
    assert sum(v.label.any() for v in volumes) == 2
    rng = np.random.default_rng(0)
    slices = [sample_slice(volumes, (32, 24), rng, max_angle=0.0) for _ in range(300)]
    assert all(x.shape == (1, 32, 24) and y.shape == (32, 24) for x, y in slices)
    share = np.mean([y.any() for _, y in slices])
    assert 0.12 < share < 0.28
    volumes[0].cue = np.full(volumes[0].pet.shape, 0.25, np.float32)
    image, label, weight = sample_patch(volumes[0], (16, 16, 16), rng)
    assert image.shape == (2, 16, 16, 16) and label.shape == weight.shape == (16, 16, 16)
    assert set(np.unique(weight)) <= {1.0, 1.25} and (weight == 1.25).any()
    with pytest.raises(InputError, match="cue"):
        sample_patch(volumes[1], (16, 16, 16), rng)


def test_losses_and_held_out_split(cohort):
    target = torch.zeros(2, 4, 4)
    target[0, 1:3, 1:3] = 1.0
    assert soft_dice_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(torch.zeros_like(target), target).item() == pytest.approx(1.0, abs=1e-4)
    prob = torch.full((2, 4, 4), 0.3, requires_grad=True)
    empty = soft_dice_loss(prob, torch.zeros_like(target))  # no lesion in the batch: no Dice push towards P = 0
    empty.backward()
    assert empty.item() == 0.0 and torch.count_nonzero(prob.grad) == 0
    logits, weight = torch.randn(2, 4, 4), 1.0 + torch.rand(2, 4, 4)
    manual = (weight * nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")).sum() / weight.sum()
    assert weighted_bce(logits, target, weight).item() == pytest.approx(manual.item())
    cases = list_cases(cohort)
    folds = [held_out(cases, 0, folds=2, fold=f) for f in range(2)]
    assert sorted(folds[0] + folds[1]) == [c.name for c in cases] and not set(folds[0]) & set(folds[1])
    assert len(held_out(cases, 0, val_fraction=0.25)) >= 1 and held_out(cases, 0) == []


def test_train_command_writes_a_loadable_model(cohort, tmp_path, capsys):
    from lesionseg import cli
    from lesionseg.modelfolder import load_model_folder
    from lesionseg.registry import build

    common = ["--progress", "none", "train", "autopet-l2snet", "--data", str(cohort), "--device", "cpu",
              "--minutes-loc", "0.005", "--minutes-seg", "0.005", "--spacing", "16", "--loc-size", "32", "32",
              "--seg-patch", "16", "16", "16", "--train-patch", "16", "16", "16", "--loc-encoder", "4", "8", "16",
              "--loc-decoder", "8", "4", "--seg-channels", "4", "8", "16", "--steps-per-epoch", "1", "--loc-batch", "2",
              "--folds", "2", "--fold", "1"]
    assert cli.main([*common, "-o", str(tmp_path / "seg_only"), "--stage", "seg"]) == 2
    assert "needs a localisation net" in capsys.readouterr().err
    assert cli.main([*common, "-o", str(tmp_path / "m"), "--stage", "all"]) == 0
    card = load_model_folder(tmp_path / "m", "autopet-l2snet").card
    assert set(card["files"]) == {"loc.pt", "seg.pt", "seg_plain.pt"} and card["training"]["synthetic"] is True
    assert card["training"]["held_out_cases"] == held_out(list_cases(cohort), 0, folds=2, fold=1)
    assert card["preprocessing"]["ct_window"] == [100.0, 250.0] and card["networks"]["seg.pt"]["kwargs"]["norm"] == "layer"
    start = card["training"]["stages"]["seg"]["initial_lesion_probability"]  # 'auto': the patches' lesion fraction
    assert 0.0 < start < 0.5
    assert cli.main([*common, "-o", str(tmp_path / "bad"), "--stage", "all", "--initial-probability", "1.5"]) == 2
    assert "--initial-probability" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    seg = build("autopet-l2snet", weights=tmp_path / "m", device="cpu")
    pet, ct, _, _ = wholebody_petct(seed=9, **TINY)
    seg.set_image(pet, ct)
    label = seg.predict()
    assert label.same_grid(pet) and label.array.dtype == np.uint8 and set(np.unique(label.array)) <= {0, 1}
    write_image(pet, tmp_path / "pet.nii.gz")
    write_image(ct, tmp_path / "ct.nii.gz")
    predict = ["--progress", "none", "predict", "autopet-l2snet", str(tmp_path / "pet.nii.gz"), str(tmp_path / "ct.nii.gz"),
               "--weights", str(tmp_path / "m"), "--device", "cpu"]
    assert cli.main([*predict, "-o", str(tmp_path / "seg.nii.gz")]) == 2            # PET units not stated
    assert "--pet-units" in capsys.readouterr().err and not (tmp_path / "seg.nii.gz").exists()
    assert cli.main([*predict, "-o", str(tmp_path / "seg.nii.gz"), "--pet-units", "suv", "--table",
                     str(tmp_path / "t.csv"), "--mip", str(tmp_path / "m.png")]) == 0
    assert all((tmp_path / f).is_file() for f in ("seg.nii.gz", "t.csv", "m.png"))
    tuned = [*common, "-o", str(tmp_path / "m2"), "--stage", "seg", "--finetune", "--seg-channels", "2", "4", "8"]
    assert cli.main(tuned) == 2 and "--finetune needs --base" in capsys.readouterr().err
    assert cli.main([*tuned, "--base", str(tmp_path / "m")]) == 0
    card2 = load_model_folder(tmp_path / "m2", "autopet-l2snet").card
    assert set(card2["files"]) == {"loc.pt", "seg.pt", "seg_plain.pt"} and card2["training"]["finetune"] is True
    assert card2["networks"]["seg.pt"]["kwargs"]["channels"] == [4, 8, 16]  # the base's architecture is kept
    assert card2["training"]["stages"]["seg"]["initial_lesion_probability"] is None  # fine-tuned, not re-initialised


# --- CLI hooks -------------------------------------------------------------------------------------------------

def _predict_args(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--overwrite", action="store_true")
    L2SNetSegmenter.add_predict_arguments(parser)
    return parser.parse_args(argv)


def test_read_inputs_honours_pet_units(tmp_path):
    pet, ct = _pair()
    write_image(pet, tmp_path / "pet.nii.gz")
    write_image(pet.with_array(pet.array * 4000.0), tmp_path / "pet_bqml.nii.gz")  # factor 2.5e-4 g/Bq
    write_image(ct, tmp_path / "ct.nii.gz")
    paths = [tmp_path / "pet.nii.gz", tmp_path / "ct.nii.gz"]
    suv, ct_in = L2SNetSegmenter.read_inputs(paths, _predict_args(["--pet-units", "suv"]))
    assert suv.meta["units"] == "SUVbw" and np.allclose(suv.array, pet.array) and ct_in.same_grid(ct)
    args = _predict_args(["--pet-units", "bqml", "--weight-kg", "70", "--decayed-dose-bq", "2.8e8"])
    converted, _ = L2SNetSegmenter.read_inputs([tmp_path / "pet_bqml.nii.gz", paths[1]], args)
    np.testing.assert_allclose(converted.array, pet.array, rtol=1e-6)
    with pytest.raises(InputError, match="units"):
        L2SNetSegmenter.read_inputs(paths, _predict_args([]))
    with pytest.raises(InputError, match="two images"):
        L2SNetSegmenter.read_inputs(paths[:1], _predict_args(["--pet-units", "suv"]))


def test_write_extras_writes_table_and_mip(tmp_path):
    pet, ct = _pair()
    seg = _segmenter()
    args = _predict_args(["--table", str(tmp_path / "lesions.csv"), "--mip", str(tmp_path / "mip.png"),
                          "--mode", "3d"])
    seg.apply_predict_args(args)
    assert seg.mode == "3d"
    seg.set_image(pet, ct)
    label = seg.predict()
    written = seg.write_extras(args, label)
    assert written == [tmp_path / "lesions.csv", tmp_path / "mip.png"]
    rows = list(csv.DictReader(open(tmp_path / "lesions.csv")))
    assert len(rows) == 1 and float(rows[0]["suv_max"]) == 4.0 and float(rows[0]["volume_ml"]) == pytest.approx(7.68)
    assert (tmp_path / "mip.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(OutputExistsError):
        seg.apply_predict_args(args)
    with pytest.raises(InputError, match=".csv or .json"):
        seg.apply_predict_args(_predict_args(["--table", str(tmp_path / "t.txt")]))


# --- evaluation ------------------------------------------------------------------------------------------------

def test_evaluation_follows_autopet_conventions():
    from lesionseg.methods.autopet.evaluate import ROWS, available_rows, markdown, score_cases, summarise

    pet, ct = _pair()
    truth = pet.with_array((pet.array > 3.0).astype(np.uint8))  # region B (120 voxels of 0.064 mL)
    empty = pet.with_array(np.zeros(pet.shape, np.uint8))
    seg = _segmenter()
    assert list(available_rows(seg)) == list(ROWS)
    records = score_cases(seg, iter([("pos", pet, ct, truth), ("neg", pet, ct, empty)]), "toy")
    assert records[0]["rows"]["L2SNet"]["dice"] == 1.0 and records[1]["rows"]["L2SNet"]["dice"] == 0.0
    assert records[0]["rows"]["2D only"]["fpv_ml"] == pytest.approx(80 * 0.064)  # region A touches no lesion
    summary = summarise(records)["toy"]
    assert summary["rows"]["L2SNet"]["dice"] == 1.0  # Dice and FNV over cases with lesions only
    assert summary["rows"]["2D only"]["fpv_ml"] == pytest.approx((80 + 200) * 0.064 / 2)  # FPV over all cases
    assert summary["rows"]["2D only"]["fnv_ml"] == 0.0
    text = markdown(summarise(records), None)
    assert "| 2D only | 0.750 | 8.960 | 0.000 |" in text  # Dice 2 * 120 / (200 + 120) on the positive case
    assert "lowest first: 2D only = L2SNet + adaptive threshold < 3D only = L2SNet." in text
    loc_only = L2SNetSegmenter(None, "cpu", loc_net=Pointwise(1.5), preprocessing=seg.prep, mode="2d")
    assert list(available_rows(loc_only)) == ["2D only"]


def test_sts_crops_copy_into_the_training_layout(shared_data, tmp_path):
    from lesionseg.methods.autopet.data import copy_sts_cases
    from lesionseg.methods.autopet.train import _synthetic

    copy_sts_cases(shared_data / "ibsi-sts-petct", tmp_path / "real", ["STS_002"])
    cases = list_cases(tmp_path / "real")
    assert [c.name for c in cases] == ["STS_002"] and cases[0].positive and not _synthetic(tmp_path / "real")
    with pytest.raises(OutputExistsError):
        copy_sts_cases(shared_data / "ibsi-sts-petct", tmp_path / "real", ["STS_002"])


def test_sts_crops_are_scored_on_the_pet_grid(shared_data):
    from lesionseg.methods.autopet.evaluate import score_cases, sts_cases

    seg = L2SNetSegmenter(None, "cpu", loc_net=Pointwise(1.5), seg_net=Pointwise(3.0),
                          preprocessing=L2SPreprocessing(loc_size=(64, 64), seg_patch=(32, 32, 32)))
    names = [f"STS_00{n}" for n in range(1, 6)]
    records = score_cases(seg, sts_cases(shared_data / "ibsi-sts-petct", names), "sts")
    assert [r["case"] for r in records] == names and all(r["positive"] for r in records)
    assert np.mean([r["rows"]["3D only"]["dice"] for r in records]) > 0.2  # SUV > 3 overlaps the expert masks


def test_sts_crops_can_be_limited_to_named_cases(shared_data):
    from lesionseg.methods.autopet.evaluate import sts_cases

    assert [c[0] for c in sts_cases(shared_data / "ibsi-sts-petct", ["STS_005", "STS_004"])] == ["STS_004", "STS_005"]
    with pytest.raises(InputError, match="STS_999"):
        sts_cases(shared_data / "ibsi-sts-petct", ["STS_004", "STS_999"])  # at once, before any case is read


@pytest.mark.parametrize("source, flags, message", [
    ("dicom", ["--weight-kg", "70", "--dose-bq", "3e8"],
     "--weight-kg (weight_kg), --dose-bq (dose_bq) cannot be given for a DICOM folder: its tags are used"),
    ("file", ["--dose-bq", "3e8", "--decay-s", "0"],
     "the patient weight (kg) is needed to convert Bq/mL to SUVbw: give --weight-kg (weight_kg)"),
    ("file", ["--weight-kg", "70"], "the injected dose (Bq) is needed to convert Bq/mL to SUVbw: give --dose-bq "
                                   "(dose_bq) with --decay-s and --half-life-s, or --decayed-dose-bq (decayed_dose_bq)"),
    ("file", ["--weight-kg", "70", "--dose-bq", "3e8", "--decay-s", "60"],
     "the radionuclide half-life (s; 18F: 6586.2 s) is needed to convert Bq/mL to SUVbw: give --half-life-s "
     "(half_life_s)"),
])
def test_suv_cli_names_the_pet_flags_as_typed(tmp_path, capsys, source, flags, message):
    """The PET unit options of ``lesionseg suv`` (and ``predict autopet-l2snet``) are named as typed."""
    from lesionseg import cli

    (tmp_path / "dicom").mkdir()                       # the folder is refused before any file is read
    write_image(Image(np.full((4, 8, 8), 5000.0, np.float32) + np.arange(8, dtype=np.float32), (2.0, 2.0, 3.0)),
                tmp_path / "file.nii.gz")
    pet, units = (tmp_path / "file.nii.gz", ["--pet-units", "bqml"]) if source == "file" else (tmp_path / "dicom", [])
    code = cli.main(["--progress", "none", "suv", str(pet), *units, *flags, "-o", str(tmp_path / "suv.nii.gz")])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stderr == f"error: {message}\n" and not (tmp_path / "suv.nii.gz").exists()
