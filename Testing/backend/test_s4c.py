"""S4C: rules, majority-vote sliding window, resampling, the segmenter and its options, the synthetic dataset
and training with a small network."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionseg import Image
from lesionseg.errors import InputError
from lesionseg.methods.s4c.network import S4CNet
from lesionseg.methods.s4c.rules import ScreeningRule, fuse, phase_findings, postprocess
from lesionseg.intensity import looks_like_ct
from lesionseg.methods.s4c.segmenter import S4COptions, S4CPreprocessing, S4CSegmenter
from lesionseg.methods.s4c.voting import count_windows, majority_vote, window_starts
from lesionseg.resample import check_overlap, resample_to_grid, resample_to_spacing


def _label(shape=(20, 40, 40), spacing=(1.0, 1.0, 1.0)) -> Image:
    return Image(np.zeros(shape, np.uint8), spacing, (10.0, -20.0, 30.0))


BARE_RULE = ScreeningRule(pancreas_min_mm3=0.0, pancreas_adult_min_mm3=0.0)
"""The paper's rule without the verdict's lower pancreas bounds (tested on their own below): the labels of the
rule tests hold a few mL of pancreas or none, not an adult gland."""


# --- rules ---------------------------------------------------------------------------------------------

def test_postprocess_keeps_large_and_near_components_only():
    lab = _label(shape=(20, 40, 80))
    arr = lab.array.copy()
    arr[2:12, 2:12, 2:12] = 1          # C_max: 1000 voxels
    arr[2:5, 2:5, 30:33] = 1           # 27 voxels, 18 mm away: near -> kept
    arr[15:20, 30:40, 30:40] = 2       # 500 voxels > 20 % of C_max -> kept although far
    arr[15:17, 0:2, 70:72] = 3         # 8 voxels, 59 mm away and small -> removed
    out = postprocess(lab.with_array(arr), ScreeningRule()).array
    assert out[2:12, 2:12, 2:12].all() and out[2:5, 2:5, 30:33].all()
    assert (out[15:20, 30:40, 30:40] == 2).all()
    assert not out[15:17, 0:2, 70:72].any()
    # the same small part counts as near when the rule's distance is larger
    far = postprocess(lab.with_array(arr), ScreeningRule(keep_distance_mm=70.0)).array
    assert far[15:17, 0:2, 70:72].all()


@pytest.mark.parametrize("seed", range(4))
def test_distances_searched_near_c_max_equal_the_full_distance_transform(seed):
    from scipy import ndimage

    from lesionseg.methods.s4c.rules import CONNECTIVITY, _distances_to

    rng = np.random.default_rng(seed)
    arr = np.zeros((30, 50, 60), bool)
    for k, j, i in zip(rng.integers(0, 28, 25), rng.integers(0, 48, 25), rng.integers(0, 58, 25)):
        arr[k:k + 2, j:j + 2, i:i + 2] = True  # 25 small blobs, some merged
    arr[5:15, 10:30, 10:35] = True  # the largest component
    comps, n = ndimage.label(arr, CONNECTIVITY)
    largest = int(np.argmax(np.bincount(comps.ravel())[1:])) + 1
    spacing = np.array([2.5, 0.8, 1.3])
    full = ndimage.minimum(ndimage.distance_transform_edt(comps != largest, sampling=spacing), comps,
                           index=np.arange(1, n + 1))
    fast = _distances_to(comps, largest, n, spacing, 27.0)
    near = np.asarray(full) < 27.0
    assert n > 5 and near.sum() > 2 and (~near).sum() > 0
    np.testing.assert_allclose(fast[near], np.asarray(full)[near])
    assert (fast[~near] >= 27.0).all()


def test_phase_findings_thresholds_are_physical():
    lab = _label(spacing=(0.5, 0.5, 1.0))            # 0.25 mm^3 voxels
    arr = lab.array.copy()
    arr[5:10, 5:30, 5:30] = 1
    arr[6:8, 10:20, 10:18] = 2                       # 160 voxels = 40 mm^3: exactly the threshold
    found = phase_findings(lab.with_array(arr), BARE_RULE, "venous")
    assert found.positive is True and found.tumour_voxels == 160 and found.tumour_mm3 == pytest.approx(40.0)
    assert found.findings[0].kind == "tumour" and found.findings[0].box_ijk == [[10, 10, 6], [17, 19, 7]]
    assert "venous: tumour 40 mm3" in found.reasons[0]
    arr[6, 10, 10] = 1                               # one voxel fewer -> below 40 mm^3
    assert phase_findings(lab.with_array(arr), BARE_RULE, "venous").positive is False


def test_phase_findings_centroid_is_lps():
    lab = _label()
    arr = lab.array.copy()
    arr[4:7, 10:13, 20:23] = 2                       # centre voxel (i, j, k) = (21, 11, 5)
    found = phase_findings(lab.with_array(arr), ScreeningRule(tumour_min_mm3=1.0, pancreas_min_mm3=0.0,
                                                              pancreas_adult_min_mm3=0.0))
    assert found.findings[0].centroid_lps == [31.0, -9.0, 35.0]


def test_duct_rule_and_fusion():
    lab = _label()
    arr = lab.array.copy()
    arr[0:10, 10:20, 0:5] = 3                        # 500 mm^3 duct
    duct = phase_findings(lab.with_array(arr), BARE_RULE, "arterial")
    clean = phase_findings(lab, BARE_RULE, "venous")
    assert duct.positive is True and clean.positive is False and "dilated duct 500 mm3" in duct.reasons[0]
    positive, reasons = fuse([clean, duct])
    assert positive is True and reasons == duct.reasons
    negative, reasons = fuse([clean])
    assert negative is False and reasons == clean.reasons
    with pytest.raises(InputError, match="at least one phase"):
        fuse([])


def test_rule_of_an_older_card_gets_the_pancreas_bounds():
    old = {"tumour_min_mm3": 40.0, "duct_min_mm3": 500.0, "keep_fraction": 0.2, "keep_distance_mm": 27.0}
    rule = ScreeningRule.from_dict(old)
    assert (rule.pancreas_min_mm3, rule.pancreas_adult_min_mm3, rule.pancreas_adult_max_mm3) == (5000.0, 15000.0,
                                                                                                 250000.0)
    with pytest.raises(InputError, match="pancreas_min_mm3"):
        ScreeningRule(pancreas_min_mm3=float("nan"))
    with pytest.raises(InputError, match="pancreas bounds must grow"):
        ScreeningRule(pancreas_adult_min_mm3=300000.0)


def test_rule_validation_and_round_trip():
    rule = ScreeningRule(tumour_min_mm3=12.5)
    assert ScreeningRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(InputError):
        ScreeningRule(duct_min_mm3=-1.0)
    with pytest.raises(InputError, match="unknown"):
        ScreeningRule.from_dict({"tumor_min": 3})
    with pytest.raises(InputError, match="0..3"):
        phase_findings(_label().with_array(np.full((20, 40, 40), 7, np.uint8)))


# --- majority vote ----------------------------------------------------------------------------------------

def test_window_starts_cover_the_axis():
    assert window_starts(100, 64, 20) == [0, 20, 36]
    assert window_starts(64, 64, 20) == [0]
    assert window_starts(30, 64, 20) == [0]
    assert count_windows((100, 84, 30), 64, 20) == 3 * 2 * 1


def test_majority_vote_of_agreeing_windows_is_exact():
    rng = np.random.default_rng(0)
    volume = rng.random((1, 70, 50, 90)).astype(np.float32)
    truth = np.digitize(volume[0], [0.3, 0.6, 0.9])
    out = majority_vote(lambda b: np.digitize(b[:, 0], [0.3, 0.6, 0.9]), volume, 4, patch=32, stride=10)
    assert out.dtype == np.uint8 and np.array_equal(out, truth)


def test_majority_vote_decides_by_count_and_pads_small_volumes():
    calls = []

    def by_position(batch):  # a window votes 1 where it sees its own input >= 0.5
        calls.append(len(batch))
        return (batch[:, 0] >= 0.5).astype(np.int64)

    volume = np.zeros((1, 10, 12, 8), np.float32)
    volume[0, 5:] = 1.0
    out = majority_vote(by_position, volume, 2, patch=16, stride=8)
    assert out.shape == (10, 12, 8) and (out[5:] == 1).all() and (out[:5] == 0).all()
    assert sum(calls) == 1


def test_majority_vote_skips_empty_windows_and_validates():
    volume = np.zeros((1, 40, 40, 40), np.float32)
    volume[0, :10, :10, :10] = 1.0
    seen = []

    def predictor(batch):
        seen.append(len(batch))
        return np.ones(batch.shape[:1] + batch.shape[2:], np.int64)

    out = majority_vote(predictor, volume, 2, patch=20, stride=20, skip_below=0.5)
    assert sum(seen) == 1                              # only the window holding the body ran
    assert out[:10, :10, :10].all() and not out[20:, 20:, 20:].any()
    with pytest.raises(InputError, match="stride"):
        majority_vote(predictor, volume, 2, patch=20, stride=21)
    with pytest.raises(InputError, match="outside"):
        majority_vote(lambda b: np.full(b.shape[:1] + b.shape[2:], 5), volume, 2, patch=20, stride=20)


# --- resampling -------------------------------------------------------------------------------------------

def test_resample_to_spacing_keeps_geometry_and_values():
    img = Image(np.arange(4 * 6 * 8, dtype=np.int16).reshape(4, 6, 8), (1.0, 1.0, 2.0), (5.0, 6.0, 7.0))
    iso = resample_to_spacing(img, 1.0, "nearest")
    assert iso.shape == (8, 6, 8) and np.allclose(iso.origin, img.origin) and iso.array.dtype == np.int16
    assert np.array_equal(iso.array[::2], img.array)
    back = resample_to_grid(iso, img, "nearest")
    assert back.same_grid(img) and np.array_equal(back.array, img.array)


def test_check_overlap():
    a = Image(np.zeros((10, 10, 10)), (1, 1, 1), (0, 0, 0))
    b = Image(np.zeros((10, 10, 10)), (1, 1, 1), (5, 0, 0))
    assert check_overlap(a, b) == pytest.approx(0.5)
    c = Image(np.zeros((10, 10, 10)), (1, 1, 1), (500, 0, 0))
    with pytest.raises(InputError, match="do not overlap"):
        check_overlap(a, c, ("venous phase", "arterial phase"))


# --- network and segmenter ------------------------------------------------------------------------------

def test_network_outputs_and_deep_supervision():
    net = S4CNet(channels=(4, 8, 16))
    x = torch.randn(2, 1, 20, 18, 17)
    net.train()
    outs = net(x)
    assert len(outs) == 3 and all(o.shape == (2, 4, 20, 18, 17) for o in outs)
    net.eval()
    assert net(x).shape == (2, 4, 20, 18, 17)
    with pytest.raises(ValueError):
        S4CNet(channels=(4, 8))


def _ct(shape=(24, 40, 48)) -> Image:
    arr = np.full(shape, -1000, np.int16)
    arr[4:20, 5:35, 6:42] = 40
    return Image(arr, (1.2, 1.2, 2.0), (-20.0, 10.0, -300.0))


def test_segmenter_returns_labels_on_the_input_grid():
    torch.manual_seed(0)
    seg = S4CSegmenter(net=S4CNet(channels=(4, 8, 16)), preprocessing=S4CPreprocessing(patch=16, stride=8))
    ct = _ct()
    seg.set_image(ct)
    out = seg.predict()
    assert out.same_grid(ct) and out.array.dtype == np.uint8 and out.array.max() <= 3
    assert not out.array[0].any()                      # air: skipped windows vote background
    found = seg.findings("arterial")
    assert found.phase == "arterial" and found.tumour_voxels == int((out.array == 2).sum())
    with pytest.raises(InputError, match="no prompt"):
        seg.predict("box")
    with pytest.raises(InputError, match="stride"):
        seg.set_stride(0)


def test_segmenter_rejects_non_ct():
    seg = S4CSegmenter(net=S4CNet(channels=(4, 8, 16)), preprocessing=S4CPreprocessing(patch=16, stride=8))
    pet = Image(np.random.default_rng(0).random((10, 20, 20)).astype(np.float32) * 12, (2, 2, 2))
    with pytest.raises(InputError, match="does not look like CT|do not look like CT"):
        seg.set_image(pet)
    assert looks_like_ct(_ct().array)


# --- options -------------------------------------------------------------------------------------------

def test_stride_is_an_option_of_the_segmenter_and_of_set_stride():
    seg = S4CSegmenter(net=S4CNet(channels=(4, 8, 16)), preprocessing=S4CPreprocessing(patch=16, stride=8))
    assert seg.options == S4COptions() and seg.prep.stride == 8 and seg.model_prep.stride == 8
    seg.set_stride(4)
    assert seg.options == S4COptions(stride=4) and seg.prep.stride == 4 and seg.model_prep.stride == 8
    seg.set_options(S4COptions())
    assert seg.prep.stride == 8
    with pytest.raises(InputError, match="stride must be between 1 and 16 voxels"):
        seg.set_options(S4COptions(stride=17))
    assert seg.options == S4COptions() and seg.prep.stride == 8          # a refused option changes nothing
    with pytest.raises(InputError, match="stride must be between 1 and 16 voxels"):
        S4CSegmenter(options=S4COptions(stride=0), net=S4CNet(channels=(4, 8, 16)),
                     preprocessing=S4CPreprocessing(patch=16, stride=8))
    with pytest.raises(InputError, match="--stride must be a whole number"):
        S4COptions(stride=2.5)
    assert S4COptions.describe()[0]["flag"] == "--stride" and S4COptions.from_dict({"stride": "12"}).stride == 12


def test_spec_names_the_classes_options_and_entries():
    from lesionseg.registry import get_spec

    spec = get_spec("s4c")
    assert spec.classes == ("background", "pancreas", "tumour", "duct") and spec.options is S4COptions
    assert spec.demo_case == "pancreas_ct" and spec.verbs == ("lesionseg.methods.s4c.cli_screen",)
    for what in ("training", "evaluation", "synthetic"):
        assert spec.load(what) is not None
    for hook in ("add_predict_arguments", "apply_predict_args", "read_inputs", "write_extras", "add_train_arguments",
                 "train"):
        assert not hasattr(S4CSegmenter, hook), hook


# --- data -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    """``lesionseg data synthetic s4c --cases 4 --seed 3`` (2 positive, 2 normal), written once."""
    from lesionseg import cli

    out = tmp_path_factory.mktemp("s4c") / "cohort"
    assert cli.main(["--progress", "none", "data", "synthetic", "s4c", "-o", str(out), "--cases", "4",
                     "--seed", "3"]) == 0
    return out


def test_synthetic_dataset_holds_the_phantoms_of_the_old_cohort(cohort_dir):
    """The same cases, seeds and arrays as the cohort folder written before #16 (``cohort`` + ``pancreas_ct``,
    which the old writer called): both phases of one anatomy on one grid, the label on it."""
    from lesionseg.data import Dataset
    from lesionseg.phantoms.pancreas import cohort, pancreas_ct

    ds = Dataset(cohort_dir)
    assert ds.synthetic and ds.channel_names == ("venous", "arterial")
    assert ds.labels == {"background": 0, "pancreas": 1, "tumour": 2, "duct": 3}
    specs = cohort(4, 3)
    assert [c.name for c in ds.cases()] == [s["case"] for s in specs] == ["s4c_000", "s4c_001", "s4c_002", "s4c_003"]
    assert [p["seed"] for p in ds.meta["phantoms"]] == [s["seed"] for s in specs]
    ds.check()
    for spec, case in list(zip(specs, ds.cases()))[:2]:
        arterial, venous, label, _ = pancreas_ct(seed=spec["seed"], kind=spec["kind"])
        got_venous, got_arterial = case.read_images()
        got_label = case.read_label()
        for got, want in ((got_venous, venous), (got_arterial, arterial), (got_label, label)):
            assert got.same_grid(want, tol=1e-6) and np.array_equal(got.array, want.array)


def test_volumes_are_every_phase_with_mapped_labels(cohort_dir):
    from lesionseg.data import Dataset
    from lesionseg.methods.s4c.data import IGNORE, load_volumes, positive

    case = Dataset(cohort_dir).cases()[0]
    prep = S4CPreprocessing(spacing_mm=3.0, patch=16, stride=16)
    identity = {1: [1], 2: [2], 3: [3]}
    vols = load_volumes([case], identity, prep, hide_invisible=False)
    assert [v.phase for v in vols] == ["venous", "arterial"] and vols[0].image.shape == vols[1].label.shape
    organ_only = load_volumes([case], {1: [1, 2, 3]}, prep, hide_invisible=False)[0].label   # all as pancreas
    assert set(np.unique(organ_only)) <= {0, 1} and (organ_only == 1).sum() == (vols[0].label > 0).sum()
    assert set(np.unique(load_volumes([case], identity, prep)[1].label)) <= {0, 1, 2, 3, IGNORE}
    truth = bool(np.isin(case.read_label().array, (2, 3)).any())
    assert positive(case, identity) is truth and positive(case, {1: [1]}) is False


# --- training -------------------------------------------------------------------------------------------

def test_hide_invisible_tumours_uses_the_phase_contrast():
    from lesionseg.losses import multiclass_soft_dice_loss
    from lesionseg.methods.s4c.data import IGNORE, hide_invisible_tumours

    label = np.zeros((20, 30, 30), np.uint8)
    label[2:18, 5:25, 5:25] = 1
    label[5:9, 8:12, 8:12] = 2                       # bright tumour
    label[12:16, 15:19, 15:19] = 2                   # iso-dense tumour
    hu = np.where(label > 0, 110.0, -100.0)
    hu[5:9, 8:12, 8:12] = 170.0
    hu[12:16, 15:19, 15:19] = 120.0
    out, hidden = hide_invisible_tumours(hu, label, 1.5)
    assert hidden == 1 and (out[5:9, 8:12, 8:12] == 2).all() and (out[12:16, 15:19, 15:19] == IGNORE).all()
    assert (out[label == 1] == 1).all()
    # ignored voxels count for nothing in the training loss's Dice term
    target = torch.from_numpy(out[None].astype(np.int64))
    logits = torch.nn.functional.one_hot(torch.from_numpy(np.where(out == IGNORE, 1, out)[None].astype(np.int64)),
                                         4).permute(0, 4, 1, 2, 3).float() * 50.0
    assert multiclass_soft_dice_loss(logits, target, eps=1.0, ignore_index=IGNORE).item() < 0.01


TINY = ["--minutes", "0.02", "--train-patch", "16", "--patch", "16", "--channels", "4", "8", "16", "16",
        "--steps-per-epoch", "1", "--batch-size", "2", "--spacing", "3", "--device", "cpu"]
"""A network and a budget small enough for a test."""


def test_train_command_writes_a_usable_model(cohort_dir, tmp_path):
    from lesionseg import cli
    from lesionseg.data import Dataset, fold_split
    from lesionseg.methods.s4c.data import positive
    from lesionseg.modelfolder import load_model_folder
    from lesionseg.registry import build

    identity = {1: [1], 2: [2], 3: [3]}
    split = fold_split(Dataset(cohort_dir), 2, 1, 0, lambda case: positive(case, identity))
    assert cli.main(["--progress", "none", "train", "s4c", "--data", str(cohort_dir), "-o", str(tmp_path / "m"),
                     "--folds", "2", "--fold", "1", *TINY]) == 0
    card = load_model_folder(tmp_path / "m", "s4c").card
    assert card["training"]["held_out_cases"] == list(split.held_out) and card["training"]["synthetic"] is True
    assert card["training"]["label_map"] == "pancreas=1,tumour=2,duct=3" and card["training"]["steps"] >= 1
    assert card["training"]["config"]["epochs"] is None and card["training"]["settings"]["batch_size"] == 2
    assert card["preprocessing"]["patch"] == 16 and card["networks"]["weights.pt"]["kwargs"]["channels"] == [4, 8, 16, 16]
    assert card["preprocessing"]["stride"] == 16          # the paper's 20 does not fit a 16-voxel window
    assert card["labels"] == {"background": 0, "pancreas": 1, "tumour": 2, "duct": 3}
    assert not (tmp_path / "m.checkpoints").exists()
    seg = build("s4c", weights=tmp_path / "m", device="cpu")
    assert seg.prep.patch == 16 and seg.rule.tumour_min_mm3 == 40.0
    more = ["--progress", "none", "train", "s4c", "--data", str(cohort_dir), "--folds", "2", *TINY,
            "--init", str(tmp_path / "m")]
    assert cli.main([*more, "--fold", "0", "-o", str(tmp_path / "leak")]) == 2        # other held-out cases
    assert not (tmp_path / "leak").exists()
    assert cli.main([*more, "--fold", "1", "-o", str(tmp_path / "m2")]) == 0
    assert load_model_folder(tmp_path / "m2", "s4c").card["training"]["initialised_from"]["folder"] == str(tmp_path / "m")


def test_train_flags_are_checked_before_training(cohort_dir, tmp_path, capsys):
    from lesionseg import cli

    base = ["--progress", "none", "train", "s4c", "--data", str(cohort_dir), "-o", str(tmp_path / "m")]
    assert cli.main([*base, "--batch-size", "0"]) == 2 and "--batch-size must be >= 1" in capsys.readouterr().err
    assert cli.main([*base, "--train-patch", "8"]) == 2 and "--train-patch must be >= 16" in capsys.readouterr().err
    assert cli.main([*base, "--labels", "liver=1"]) == 2 and "liver" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_preprocessing_refuses_a_stride_larger_than_the_window():
    with pytest.raises(InputError, match="stride must be between 1 and 16 voxels .the window edge."):
        S4CPreprocessing(patch=16)
    assert S4CPreprocessing(patch=16, stride=16).stride == 16
    with pytest.raises(InputError):
        S4CPreprocessing.from_dict({"patch": 64, "stride": 0})
