"""autopet-l2snet: networks, the adaptive threshold, the PET/CT protocol with pointwise fake networks, bad input,
options, the reader (PET units) and the extra outputs (lesion table and MIP), data sampling, the ablation
evaluation. Training end to end through the CLI is in test_autopet_train.py."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from lesionseg import Image
from lesionseg.errors import InputError, OutputExistsError, WeightsError
from lesionseg.io import write_image
from lesionseg.methods.autopet import lesion_table, mip
from lesionseg.methods.autopet.network import L2SLocNet, loc_network, seg_network
from lesionseg.methods.autopet.inputs import read_inputs
from lesionseg.methods.autopet.pipeline import L2SPreprocessing, scale, threshold_maps, working_grid
from lesionseg.methods.autopet.segmenter import L2SNetSegmenter, L2SOptions
from lesionseg.phantoms.wholebody import wholebody_petct

TINY = dict(shape=(64, 32, 32), spacing=(12.5, 8.0, 16.0))
"""A whole-body phantom on a 64 x 32 x 32 grid (coarse voxels), for fast tests."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    only_loc = L2SNetSegmenter(None, "cpu", L2SOptions(), loc_net=Pointwise(1.5), preprocessing=seg.prep)
    assert only_loc.mode == "2d" and _segmenter().mode == "l2snet" and _segmenter().adaptive  # --stage loc model
    with pytest.raises(WeightsError, match="seg.pt"):
        only_loc.set_mode("l2snet")
    assert only_loc.mode == "2d" and only_loc.options.mode is None  # a refused change leaves the settings as they were
    with pytest.raises(WeightsError, match="seg.pt"):
        L2SNetSegmenter(None, "cpu", L2SOptions(mode="3d"), loc_net=Pointwise(1.5), preprocessing=seg.prep)
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
    with pytest.raises(WeightsError, match="not trained for PET-only"):  # PET alone: test_autopet_pet_only.py
        seg.set_image(pet)
    with pytest.raises(InputError, match="set_image"):
        _segmenter().predict()


def test_options_are_the_predict_flags_and_switch_rows():
    import argparse

    parser = argparse.ArgumentParser()
    L2SOptions.add_arguments(parser)
    opts = L2SOptions.from_namespace(parser.parse_args(["--pet-units", "bqml", "--weight-kg", "70", "--dose-bq",
                                                        "3e8", "--decay-s", "0", "--half-life-s", "6586.2",
                                                        "--pet-series", "1.2.3", "--mode", "3d", "--no-adaptive"]))
    assert opts == L2SOptions(pet_units="bqml", weight_kg=70.0, dose_bq=3e8, decay_s=0.0, half_life_s=6586.2,
                              pet_series="1.2.3", mode="3d", adaptive=False)
    assert L2SOptions.from_namespace(parser.parse_args([])) == L2SOptions()
    assert {"--decayed-dose-bq", "--mode"} <= {row["flag"] for row in L2SOptions.describe()}
    with pytest.raises(InputError, match="--pet-units"):
        L2SOptions(pet_units="kBq")
    with pytest.raises(InputError, match="mode"):
        L2SOptions(mode="nnunet")
    pet, ct = _pair()
    seg = _segmenter()
    seg.set_image(pet, ct)
    seg.set_options(L2SOptions(mode="2d"))   # the maps of the new row are computed from the cached image
    assert seg.mode == "2d" and seg.predict().array.sum() == 4 * 5 * 4 + 4 * 6 * 5
    seg.set_options(L2SOptions(adaptive=False))
    assert (seg.mode, seg.adaptive) == ("l2snet", False) and seg.predict().array.sum() == 120
    assert _segmenter(mode="3d", adaptive=False).options == L2SOptions(mode="3d", adaptive=False)


def test_reader_honours_pet_units(tmp_path):
    pet, ct = _pair()
    write_image(pet, tmp_path / "pet.nii.gz")
    write_image(pet.with_array(pet.array * 4000.0), tmp_path / "pet_bqml.nii.gz")  # factor 2.5e-4 g/Bq
    write_image(ct, tmp_path / "ct.nii.gz")
    paths = [tmp_path / "pet.nii.gz", tmp_path / "ct.nii.gz"]
    suv, ct_in = read_inputs(paths, L2SOptions(pet_units="suv"))
    assert suv.meta["units"] == "SUVbw" and np.allclose(suv.array, pet.array) and ct_in.same_grid(ct)
    converted, _ = read_inputs([tmp_path / "pet_bqml.nii.gz", paths[1]],
                               L2SOptions(pet_units="bqml", weight_kg=70.0, decayed_dose_bq=2.8e8))
    np.testing.assert_allclose(converted.array, pet.array, rtol=1e-6)
    with pytest.raises(InputError, match="units"):
        read_inputs(paths, L2SOptions())
    assert len(read_inputs(paths[:1], L2SOptions(pet_units="suv"))) == 1  # PET-only mode
    with pytest.raises(InputError, match="one or two images"):
        read_inputs(paths * 2, L2SOptions(pet_units="suv"))


def test_output_writers_write_table_and_mip(tmp_path):
    pet, ct = _pair()
    seg = _segmenter(mode="3d")
    seg.set_image(pet, ct)
    label = seg.predict()
    assert lesion_table.write_output(seg, label, tmp_path / "lesions.csv") == tmp_path / "lesions.csv"
    assert mip.write_output(seg, label, tmp_path / "mip.png") == tmp_path / "mip.png"
    rows = list(csv.DictReader(open(tmp_path / "lesions.csv")))
    assert len(rows) == 1 and float(rows[0]["suv_max"]) == 4.0 and float(rows[0]["volume_ml"]) == pytest.approx(7.68)
    assert (tmp_path / "mip.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(OutputExistsError):
        lesion_table.write_output(seg, label, tmp_path / "lesions.csv")


def test_spec_names_options_entries_and_outputs():
    from lesionseg.methods.autopet.data import SYNTHETIC
    from lesionseg.methods.autopet.evaluate import L2SEvaluation
    from lesionseg.methods.autopet.train import TRAINING

    spec = L2SNetSegmenter.spec
    assert [(o.flag, o.suffixes) for o in spec.outputs] == [("--table", (".csv", ".json")), ("--mip", (".png",))]
    assert spec.verbs == ("lesionseg.cli_suv",) and spec.inputs == ("PET", "CT") and spec.options is L2SOptions
    assert spec.optional_inputs == 1  # the CT (PET-only mode)
    assert spec.classes == ("background", "lesion") and spec.demo_case == "wholebody_petct"
    assert (spec.load("training"), spec.load("evaluation"), spec.load("synthetic")) == (TRAINING, L2SEvaluation,
                                                                                       SYNTHETIC)
    assert spec.load("reader") is read_inputs
    for hook in ("add_predict_arguments", "apply_predict_args", "read_inputs", "write_extras", "add_train_arguments",
                 "train"):
        assert not hasattr(L2SNetSegmenter, hook), hook


# --- data, sampling, split -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from lesionseg.methods.autopet.data import SyntheticSettings, write_synthetic

    folder = tmp_path_factory.mktemp("wb") / "cohort"
    return write_synthetic(folder, SyntheticSettings(cases=4, seed=5, shape=TINY["shape"], spacing=TINY["spacing"]))


def test_synthetic_dataset_holds_the_cohorts_phantoms(cohort):
    """The same phantoms, seeds and case names as the cohort writer before the dataset convention (which wrote
    ``wholebody_petct(seed=spec seed, with_lesions=spec)`` per case); the CT is on the PET grid already."""
    from lesionseg.data import Dataset
    from lesionseg.phantoms.wholebody import wholebody_cohort

    ds = Dataset(cohort)
    ds.check()
    assert ds.synthetic and ds.channel_names == ("PET", "CT") and ds.labels == {"background": 0, "lesion": 1}
    specs = wholebody_cohort(4, 5)
    assert [c.name for c in ds.cases()] == [s["case"] for s in specs] == ["wb_000", "wb_001", "wb_002", "wb_003"]
    assert [p["seed"] for p in ds.meta["phantoms"]] == [s["seed"] for s in specs]
    for case, spec in list(zip(ds.cases(), specs))[:2]:
        pet, ct, label, _ = wholebody_petct(seed=spec["seed"], with_lesions=spec["with_lesions"], **TINY)
        got_pet, got_ct = case.read_images()
        for got, want in ((got_pet, pet), (got_ct, ct), (case.read_label(), label)):
            np.testing.assert_array_equal(got.array, want.array)
            assert got.array.dtype == want.array.dtype and got.same_grid(want)


def test_sampling_shapes_fraction_and_weight(cohort):
    from lesionseg.data import Dataset
    from lesionseg.methods.autopet.data import load_volumes, sample_patch, sample_slice

    prep = L2SPreprocessing(spacing_mm=16.0, loc_size=(32, 32), seg_patch=(16, 16, 16))
    volumes = load_volumes(Dataset(cohort).cases(), prep, {1: [1]})
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
    assert not any(v.label.any() for v in load_volumes(Dataset(cohort).cases(), prep, {1: [7]}))  # label map applies


def test_split_deals_positives_and_negatives_apart(cohort):
    """The stratified split is the one the method made itself before the dataset convention: per group
    (positives first, names sorted) a seeded permutation, then round-robin folds or a share of each group."""
    from lesionseg.data import Dataset, fold_split, holdout_split
    from lesionseg.methods.autopet.data import is_positive
    from lesionseg.methods.autopet.train import TRAINING

    ds = Dataset(cohort)
    group = lambda case: TRAINING.stratify(case, {1: [1]})  # noqa: E731
    positive = sorted(c.name for c in ds.cases() if is_positive(c, {1: [1]}))
    negative = sorted(c.name for c in ds.cases() if c.name not in positive)
    assert len(positive) == len(negative) == 2
    rng = np.random.default_rng(0)
    order = [g[i] for g in (positive, negative) for i in rng.permutation(len(g))]
    folds = [fold_split(ds, 2, f, 0, group).held_out for f in range(2)]
    assert [list(f) for f in folds] == [sorted(order[f::2]) for f in range(2)]
    assert all(len(set(f) & set(positive)) == 1 for f in folds)
    held = holdout_split(ds, 0.5, 0, group).held_out
    assert len(set(held) & set(positive)) == 1 and len(set(held) & set(negative)) == 1


# --- evaluation ------------------------------------------------------------------------------------------------

def _score_rows(seg, cases):
    """Records as :func:`lesionseg.evaluation.evaluate` makes them, for ``(name, pet, ct, truth)`` cases."""
    from lesionseg.methods.autopet.evaluate import L2SEvaluation

    evaluation = L2SEvaluation(L2SNetSegmenter.spec, None, {1: [1]})
    records = []
    for name, pet, ct, truth in cases:
        seg.set_image(pet, ct)
        for row, options in evaluation.rows(seg).items():
            seg.set_options(options)
            records.append({"case": name, "row": row, "scores": evaluation.score(seg.predict(), truth, None)})
    return evaluation, records


def test_evaluation_follows_autopet_conventions():
    from lesionseg.methods.autopet.evaluate import PLAIN_MISSING, ROWS, L2SEvaluation, available_rows

    pet, ct = _pair()
    truth = pet.with_array((pet.array > 3.0).astype(np.uint8))  # region B (120 voxels of 0.064 mL)
    empty = pet.with_array(np.zeros(pet.shape, np.uint8))
    seg = _segmenter(plain_net=Pointwise(3.0))
    assert list(available_rows(seg)) == list(ROWS)
    evaluation, records = _score_rows(seg, [("pos", pet, ct, truth), ("neg", pet, ct, empty)])
    by = {(r["case"], r["row"]): r["scores"] for r in records}
    assert by["pos", "L2SNet"]["dice"] == 1.0 and by["neg", "L2SNet"]["dice"] == 0.0
    assert by["pos", "2D only"]["fpv_ml"] == pytest.approx(80 * 0.064)  # region A touches no lesion
    summary = evaluation.summary(records)
    assert summary["L2SNet"]["autopet"]["dice"] == 1.0 and summary["L2SNet"]["positive_cases"] == 1
    assert summary["2D only"]["autopet"]["fpv_ml"] == pytest.approx((80 + 200) * 0.064 / 2)  # FPV over all cases
    assert summary["2D only"]["autopet"]["fnv_ml"] == 0.0 and summary["2D only"]["cases"] == 2
    text = L2SEvaluation.markdown({"method": "autopet-l2snet", "dataset": "toy", "synthetic": True,
                                   "models": ["m"], "cases": 2, "summary": summary})
    assert "| 2D only | 0.750 | 8.960 | 0.000 |" in text  # Dice 2 * 120 / (200 + 120) on the positive case
    assert "lowest first: 2D only = L2SNet + adaptive threshold < 3D only = L2SNet." in text
    assert "| 2D only | 2 | 0.375 (0.375, 0) |" in text  # the base table below: every case
    loc_only = L2SNetSegmenter(None, "cpu", loc_net=Pointwise(1.5), preprocessing=seg.prep, mode="2d")
    assert list(available_rows(loc_only)) == ["2D only"]
    assert list(available_rows(_segmenter())) == ["2D only", PLAIN_MISSING, "L2SNet", "L2SNet + adaptive threshold"]


def test_sts_crops_are_scored_as_an_imported_dataset(shared_data, tmp_path):
    from lesionseg.data import Dataset
    from lesionseg.data.importers import import_dataset

    names = [f"STS_00{n}" for n in range(1, 6)]
    ds = Dataset(import_dataset("ibsi-sts", shared_data / "ibsi-sts-petct", tmp_path / "sts", names=names))
    assert [c.name for c in ds.cases()] == names and not ds.synthetic
    seg = L2SNetSegmenter(None, "cpu", loc_net=Pointwise(1.5), seg_net=Pointwise(3.0),
                          preprocessing=L2SPreprocessing(loc_size=(64, 64), seg_patch=(32, 32, 32)))
    cases = ((c.name, *c.read_images(), c.read_label()) for c in ds.cases())
    evaluation, records = _score_rows(seg, cases)
    summary = evaluation.summary(records)
    assert summary["3D only (cue-weighted net)"]["positive_cases"] == 5
    assert summary["3D only (cue-weighted net)"]["autopet"]["dice"] > 0.2  # SUV > 3 overlaps the expert masks


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
