"""TS-FCN on the dataset convention: lesions and samples, boxes, per-lesion Dice, the evaluation and training.

The data is a tiny LIDC-VOI layout (``image/`` + ``nodule_mask/``, as ``../shared/data/lidc-nodule-vois``)
written here and imported with ``lesionseg data import lidc-vois``; the network is a tiny TS-FCN (the ``slim``
configuration shrunk for the test), so training and evaluation run in seconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lesionseg
from lesionseg import Image, InputError
from lesionseg.cli import main
from lesionseg.data import Dataset, DatasetWriter
from lesionseg.geometry import box_to_index, index_to_world
from lesionseg.io import write_image
from lesionseg.methods.tsfcn import data, evaluate, network, train
from lesionseg.methods.tsfcn.preprocess import Preprocessing
from lesionseg.modelfolder import load_model_folder
from lesionseg.registry import get_spec

TINY = {"fc_channels": 8, "widths": (4, 4, 8)}
SPACING = (0.7, 0.7, 2.5)
VOIS = ("LIDC-IDRI-0001_R_1", "LIDC-IDRI-0001_R_2", "LIDC-IDRI-0002_R_1", "LIDC-IDRI-0003_R_1",
        "LIDC-IDRI-0004_R_1")


def _nodule(n: int, shape=(6, 40, 48)) -> tuple[Image, Image]:
    """CT (-850 HU lung, noise) with a 20 HU ball of radius 6 px at (20 + n, 18, 3), and its mask."""
    rng = np.random.default_rng(n)
    k, j, i = np.ogrid[:shape[0], :shape[1], :shape[2]]
    ball = (i - 20 - n) ** 2 + (j - 18) ** 2 + ((k - 3) * SPACING[2] / SPACING[0]) ** 2 <= 6 ** 2
    arr = -850.0 + 20.0 * rng.standard_normal(shape)
    arr[ball] = rng.normal(20.0, 15.0, int(ball.sum()))
    image = Image(arr.astype(np.int16), SPACING, (-10.0, 5.0, -100.0))
    return image, image.with_array(ball.astype(np.uint8))


def _lidc_source(root: Path) -> Path:
    """The LIDC nodule-VOI layout: ``image/<voi>.nii.gz`` + ``nodule_mask/<voi>.nii.gz``, 5 VOIs of 4 patients."""
    for folder in ("image", "nodule_mask"):
        (root / folder).mkdir(parents=True)
    for n, voi in enumerate(VOIS):
        image, mask = _nodule(n)
        write_image(image, root / "image" / f"{voi}.nii.gz")
        write_image(mask, root / "nodule_mask" / f"{voi}.nii.gz")
    return root


@pytest.fixture(scope="module")
def lidc(tmp_path_factory) -> Path:
    """``lesionseg data import lidc-vois SRC -o D`` of the tiny layout."""
    root = tmp_path_factory.mktemp("lidc")
    assert _cli("data", "import", "lidc-vois", _lidc_source(root / "src"), "-o", root / "D") == 0
    return root / "D"


def _cli(*argv) -> int:
    return main(["--progress", "none", *map(str, argv)])


# --- lesions and samples -------------------------------------------------------------------------------

def test_components_closer_than_the_gap_are_one_lesion():
    arr = np.zeros((4, 30, 60), np.uint8)
    arr[1:3, 5:10, 5:10] = 1          # lesion A
    arr[2, 12, 7] = 1                 # a speck 2 voxels (1.4 mm) below A: part of A
    arr[1:3, 5:10, 40:45] = 1         # lesion B, 30 voxels (21 mm) away
    label = Image(arr, SPACING)
    masks = data.lesion_masks(label)
    assert len(masks) == 2
    assert masks[0].sum() == 2 * 25 + 1 and masks[0][2, 12, 7] and masks[1].sum() == 50
    assert not (masks[0] & masks[1]).any() and np.array_equal(masks[0] | masks[1], arr > 0)
    assert len(data.lesion_masks(label, gap_mm=0.0)) == 3
    assert len(data.lesion_masks(label, gap_mm=30.0)) == 1
    assert data.lesion_masks(label.with_array(np.zeros_like(arr))) == []


SPECKLED = ("LIDC-IDRI-0097_R_1", "LIDC-IDRI-0171_R_1", "LIDC-IDRI-0375_R_2", "LIDC-IDRI-0587_R_5",
            "LIDC-IDRI-0608_R_6", "LIDC-IDRI-0811_R_1", "LIDC-IDRI-0875_R_2", "LIDC-IDRI-0942_R_1")
"""The LIDC VOIs whose max-vote mask has 2-4 26-connected components (specks beside the nodule)."""


def test_every_speckled_lidc_mask_is_one_lesion(shared_data):
    from scipy import ndimage

    from lesionseg.io import read_image

    folder = shared_data / "lidc-nodule-vois" / "nodule_mask"
    if not folder.is_dir():
        pytest.skip("lidc-nodule-vois is absent")
    for voi in SPECKLED:
        mask = read_image(folder / f"{voi}.nii.gz")
        assert ndimage.label(mask.array > 0, np.ones((3, 3, 3)))[1] > 1
        lesions = data.lesion_masks(mask)
        assert len(lesions) == 1 and np.array_equal(lesions[0], mask.array > 0), voi


def test_samples_are_crops_with_the_geometry_of_the_case(lidc):
    ds = Dataset(lidc)
    items = data.read_samples(ds.cases(), {1: [1]}, jitter=0.25, min_side=8)
    assert [s.case for s in items] == list(VOIS)
    assert [s.patient for s in items] == [v[:14] for v in VOIS]
    image, mask = _nodule(0)
    s = items[0]
    assert s.mask.sum() == mask.array.sum() and s.image.shape != image.shape  # cropped: min side 8 px
    lo, hi = data.tight(s.mask)
    lo0, hi0 = data.tight(mask.array > 0)
    np.testing.assert_allclose(index_to_world(s.image, [lo, hi]), index_to_world(image, [lo0, hi0]), atol=1e-6)
    whole = data.read_samples(ds.cases()[:1], {1: [1]}, jitter=0.25, min_side=100)[0]
    assert whole.image.shape == image.shape                                     # 100 px squares need it all
    assert data.read_samples(ds.cases()[:1], {1: [2]}) == []                    # the label map decides


def test_several_lesions_per_case_give_several_samples(tmp_path):
    image, mask = _nodule(0, shape=(6, 40, 120))
    second = np.roll(mask.array, 60, axis=2)
    with DatasetWriter(tmp_path / "D", ("CT",), {"background": 0, "tumour": 2, "vessel": 5}) as writer:
        label = mask.array * 2 + (second * 2) + np.pad(np.ones((1, 2, 2), np.uint8), ((0, 5), (0, 38), (0, 118))) * 5
        writer.add("two", [image], image.with_array(label.astype(np.uint8)), patient="p")
    items = data.read_samples(Dataset(tmp_path / "D").cases(), {1: [2]})
    assert [s.case for s in items] == ["two", "two"]
    assert [int(s.mask.sum()) for s in items] == [int(mask.array.sum())] * 2


def test_unjittered_box_gives_the_lesion_voxels_and_case_boxes_are_seeded_per_case():
    image, mask = _nodule(1)
    m = mask.array > 0
    box = data.jittered_box(image, m, np.random.default_rng(0), scale=0.0, shift=0.0)
    index_box = box_to_index(image, box)
    lo, hi = data.tight(m)
    np.testing.assert_array_equal(index_box.lo, lo)
    np.testing.assert_array_equal(index_box.hi, hi)
    a = data.case_boxes(image, [m, m], "LIDC-IDRI-0001_R_1", seed=0)
    b = data.case_boxes(image, [m, m], "LIDC-IDRI-0001_R_1", seed=0)
    c = data.case_boxes(image, [m], "LIDC-IDRI-0002_R_1", seed=0)
    d = data.case_boxes(image, [m], "LIDC-IDRI-0001_R_1", seed=1)
    assert all(np.array_equal(x.lo, y.lo) and np.array_equal(x.hi, y.hi) for x, y in zip(a, b))
    assert not np.array_equal(a[0].lo, a[1].lo) and not np.array_equal(a[0].lo, c[0].lo)
    assert not np.array_equal(a[0].lo, d[0].lo)
    extent = (index_box.hi - index_box.lo + 1).astype(float)
    jittered = box_to_index(image, a[0])
    assert np.all(np.abs((jittered.lo + jittered.hi) / 2 - (lo + hi) / 2) <= 0.15 * 1.15 * extent + 1)


def test_lesion_dice_is_the_3d_dice_and_splits_a_union_between_lesions():
    truth = np.zeros((2, 4, 20), bool)
    truth[:, :2, :4] = True           # lesion A: 16 voxels
    other = np.zeros_like(truth)
    other[:, :2, 14:18] = True        # lesion B: 16 voxels
    pred = np.zeros_like(truth)
    pred[:, :2, :2] = True            # half of A: Dice 2*8 / (8 + 16)
    assert data.lesion_dice(pred, [truth]) == [pytest.approx(2 / 3)]
    pred[:, :2, 14:20] = True         # all of B and 8 more voxels beyond it: 2*16 / (24 + 16)
    assert data.lesion_dice(pred, [truth, other], np.array(SPACING)) == [pytest.approx(2 / 3), pytest.approx(0.8)]
    assert data.lesion_dice(np.zeros_like(truth), [truth]) == [0.0]


def test_mean_dice_of_probabilities_is_per_lesion(lidc):
    items = data.read_samples(Dataset(lidc).cases()[:2], {1: [1]})
    half = items[1].mask.astype(np.float32)
    half[: half.shape[0] // 2 + 1] = 0
    kept, total = half.sum(), items[1].mask.sum()
    probs = [items[0].mask.astype(np.float32), half]
    assert train.mean_dice(items, probs, 0.5) == pytest.approx((1.0 + 2 * kept / (kept + total)) / 2)
    assert train.mean_dice(items, [np.zeros_like(p) for p in probs], 0.5) == 0.0


def test_dihedral_gives_eight_distinct_variants():
    x = np.arange(12.0).reshape(3, 4)[None].repeat(2, 0)[..., :3]
    assert len({data.dihedral(x, t).tobytes() for t in range(8)}) == 8


def test_epoch_samples_and_statistics(lidc):
    items = data.read_samples(Dataset(lidc).cases(), {1: [1]}, min_side=32)
    prep = Preprocessing(min_side=32)
    x, y = data.epoch_samples(items, prep, np.random.default_rng(0))
    again = data.epoch_samples(items, prep, np.random.default_rng(0))
    assert x.shape[1:] == (3, 100, 100) and y.shape == (len(x), 100, 100) and x.dtype == np.float32
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1]) and 0 < y.mean() < 0.5
    mean, std, fraction = data.intensity_statistics(items, prep)
    assert 0 < mean < 255 and std > 0 and 0 < fraction < 1


# --- evaluation summary ----------------------------------------------------------------------------------

def test_paired_test_and_summary_of_lesion_dice():
    assert evaluate.paired([0.9, 0.8], [0.9, 0.8]) == {"lesions": 2, "mean_difference": 0.0, "first_better": 0,
                                                        "p": None}
    test = evaluate.paired([0.9, 0.8, 0.7, 0.9, 0.95, 0.85], [0.8, 0.8, 0.6, 0.7, 0.9, 0.7])
    assert test["lesions"] == 6 and test["first_better"] == 5 and test["mean_difference"] == pytest.approx(-0.1)
    assert 0 < test["p"] < 0.1

    def record(case, row, dice):
        return {"case": case, "row": row, "scores": {"dice": dice[0], "lesion_dice": dice}}

    records = [record("a", "tsfcn", [0.9, 0.7]), record("a", "HU threshold", [0.8, 0.7]),
               record("b", "tsfcn", [0.5]), record("b", "HU threshold", [0.6])]
    ev = evaluate.TSFCNEvaluation(get_spec("tsfcn"), None, {1: [1]})
    summary = ev.summary(records)
    assert summary["tsfcn"]["lesion_dice"] == {"mean": 0.7, "median": 0.7, "worst": 0.5, "lesions": 3}
    assert summary["HU threshold"]["vs tsfcn"]["first_better"] == 1
    assert summary["HU threshold"]["vs tsfcn"]["mean_difference"] == 0.0
    text = evaluate.TSFCNEvaluation.markdown({"method": "tsfcn", "dataset": "D", "models": ["M"], "cases": 2,
                                              "summary": summary})
    assert "| tsfcn | 3 | 0.7000 (0.7000, 0.5000) |" in text and "| HU threshold | 3 |" in text


# --- train and evaluate through the command line ---------------------------------------------------------

def test_import_train_evaluate_end_to_end(lidc, tmp_path, monkeypatch, capsys):
    """``data import lidc-vois`` -> ``train tsfcn --minutes`` -> ``evaluate tsfcn``: the card's held-out Dice is
    the evaluation's, ``--init`` continues a model, and the checkpoints are removed once the model is saved."""
    monkeypatch.setitem(network.CONFIGS, "slim", TINY)
    model = tmp_path / "M"
    assert _cli("train", "tsfcn", "--data", lidc, "-o", model, "--minutes", 0.2, "--epochs", 2, "--min-side", 32,
                "--validate-every", 1) == 0
    assert not (tmp_path / "M.checkpoints").exists()
    card = load_model_folder(model, "tsfcn").model_card
    assert card.networks["weights.pt"]["kwargs"] == {"fc_channels": 8, "widths": [4, 4, 8]}
    assert card.held_out_cases == ["LIDC-IDRI-0003_R_1"] and card.training["lesions"] == {"train": 4, "held_out": 1}
    assert card.training["label_map"] == "lesion=1" and card.training["settings"]["min_side"] == 32
    assert card.preprocessing["min_side"] == 32 and 0.3 <= card.preprocessing["threshold"] <= 0.99
    assert len(card.training["history"]) == 2 and "score" in card.training["history"][-1]
    out = tmp_path / "e.json"
    assert _cli("evaluate", "tsfcn", "--data", lidc, "--model", model, "--baselines", "--json", out) == 0
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert list(summary) == ["tsfcn", "HU threshold", "GrabCut", "GrabCut + DenseCRF"]
    assert summary["tsfcn"]["lesion_dice"]["lesions"] == 1
    assert summary["tsfcn"]["lesion_dice"]["mean"] == pytest.approx(card.metrics["validation_mean_dice_3d"], abs=1e-4)
    assert summary["HU threshold"]["chosen"][0]["training_lesions"] == 4
    assert summary["GrabCut + DenseCRF"]["lesion_dice"]["mean"] > 0.7
    assert "| tsfcn | 1 |" in capsys.readouterr().out
    again = tmp_path / "M2"
    assert _cli("train", "tsfcn", "--data", lidc, "-o", again, "--epochs", 1, "--min-side", 32, "--init", model,
                "--no-tune-threshold", "--fp32") == 0
    card2 = load_model_folder(again, "tsfcn").model_card
    assert card2.training["initialised_from"]["held_out_cases"] == card.held_out_cases
    assert card2.preprocessing["threshold"] == 0.5
    seg = lesionseg.build("tsfcn", weights=again, device="cpu")
    image, mask = _nodule(2)
    seg.set_image(image)
    assert seg.predict(data.case_boxes(image, [mask.array > 0], "x", 0)[0]).same_grid(image, tol=0)


def test_train_settings_are_checked_before_training(lidc, tmp_path, capsys):
    assert _cli("train", "tsfcn", "--data", lidc, "-o", tmp_path / "M", "--jitter", 1.5) == 2
    assert "--jitter" in capsys.readouterr().err
    assert _cli("train", "tsfcn", "--data", lidc, "-o", tmp_path / "M", "--labels", "lesion=3") == 2
    assert "not a label of the dataset" in capsys.readouterr().err
    assert not (tmp_path / "M").exists()
    with pytest.raises(InputError, match="--batch-size"):
        train.TSFCNTrainSettings(batch_size=0)
