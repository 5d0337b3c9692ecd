"""box-unet (the lesion-agnostic box model) and recist-3d: input pipeline, segmenters, merge, training, evaluation.

Two tiny datasets are written here (lung-like: a soft-tissue ball in -850 HU lung; soft-tissue-like: a
hyperdense ellipsoid with a necrotic core in 40 HU muscle) and merged with ``lesionseg data merge``; networks are
tiny U-Nets so that training and evaluation run in seconds.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lesionseg import Image, InputError
from lesionseg.cli import main
from lesionseg.data import Dataset, DatasetWriter
from lesionseg.geometry import IndexBox, index_to_world
from lesionseg.methods.boxunet import evaluate as bu_evaluate
from lesionseg.methods.boxunet import preprocess, recist3d, train
from lesionseg.methods.boxunet.segmenter import NETWORK, BoxUNet
from lesionseg.methods.tsfcn import data
from lesionseg.methods.tsfcn.train import THRESHOLDS
from lesionseg.modelfolder import WEIGHTS_OF, load_model_folder, save_model_folder
from lesionseg.nets.unet import UNet
from lesionseg.prompts import Box, RecistLine
from lesionseg.registry import build, find_model_folder, get_spec

REPO = Path(__file__).resolve().parents[2]


def _cli(*args) -> int:
    return main([str(a) for a in args])


def _lung(n: int) -> tuple[Image, Image]:
    rng = np.random.default_rng(n)
    shape = (8, 40, 44)
    k, j, i = np.ogrid[:shape[0], :shape[1], :shape[2]]
    ball = (i - 20 - n) ** 2 + (j - 18) ** 2 + ((k - 4) * 3.0) ** 2 <= 7 ** 2
    arr = -850.0 + 20.0 * rng.standard_normal(shape)
    arr[ball] = rng.normal(20.0, 15.0, int(ball.sum()))
    image = Image(arr.astype(np.int16), (0.8, 0.8, 2.5), (-10.0, 5.0, -100.0))
    return image, image.with_array(ball.astype(np.uint8))


def _soft(n: int) -> tuple[Image, Image]:
    rng = np.random.default_rng(100 + n)
    shape = (14, 48, 48)
    k, j, i = np.ogrid[:shape[0], :shape[1], :shape[2]]
    r = ((i - 24 - n) / 12.0) ** 2 + ((j - 22) / 9.0) ** 2 + ((k - 7) / 5.0) ** 2
    arr = 40.0 + 12.0 * rng.standard_normal(shape)
    arr[r <= 1] = 75.0 + 12.0 * rng.standard_normal(int((r <= 1).sum()))
    arr[r <= 0.3] = 15.0                                   # necrotic core: still tumour
    arr[:, :, :4] = -100.0                                 # subcutaneous fat at one edge
    image = Image(arr.astype(np.int16), (1.5, 1.5, 3.0), (0.0, 0.0, 0.0))
    return image, image.with_array((r <= 1).astype(np.uint8))


def _write(root: Path, name: str, make, count: int, label: str = "lesion", value: int = 1) -> Path:
    with DatasetWriter(root / name, ("CT",), {"background": 0, label: value},
                       meta={"name": name, "licence": "test", "reference": f"ref {name}"}) as writer:
        for n in range(count):
            image, mask = make(n)
            writer.add(f"{name}_{n}", [image], mask.with_array(mask.array * value), patient=f"{name}_p{n // 2}")
    return root / name


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("boxunet")
    lung = _write(root, "LUNG", _lung, 6, "nodule")
    soft = _write(root, "SOFT", _soft, 6, "tumour", 2)
    assert _cli("data", "merge", f"{lung}=lung", f"{soft}=soft-tissue", "-o", root / "MIX", "--folds", "3") == 0
    return root / "MIX"


def _tiny_net(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(**dict(NETWORK, channels=[4, 8, 8, 8]))


# ---- merge ---------------------------------------------------------------------------------------------------

def test_merge_keeps_cases_records_groups_sources_and_deals_folds_per_group(mixed):
    ds = Dataset(mixed)
    meta = json.loads((mixed / "dataset.json").read_text(encoding="utf-8"))
    assert ds.labels == {"background": 0, "lesion": 1} and len(ds.cases()) == 12
    assert meta["groups"]["LUNG_0"] == "lung" and meta["groups"]["SOFT_5"] == "soft-tissue"
    assert [s["group"] for s in meta["sources"]] == ["lung", "soft-tissue"] and meta["sources"][1]["reference"] == "ref SOFT"
    assert ds.case("SOFT_3").patient == "SOFT_p1"
    # the SOFT source labelled its tumour 2: merged as lesion = 1, same voxels
    label = ds.case("SOFT_0").read_label()
    assert set(np.unique(label.array)) == {0, 1} and int(label.array.sum()) == int(_soft(0)[1].array.sum())
    splits = ds.splits()
    assert len(splits) == 3
    for fold in splits:
        kinds = {meta["groups"][c] for c in fold["val"]}
        assert kinds == {"lung", "soft-tissue"}                          # every fold holds every kind
        patients = {ds.case(c).patient for c in fold["val"]}
        assert not patients & {ds.case(c).patient for c in fold["train"]}  # never a patient on both sides
    assert sorted(c for f in splits for c in f["val"]) == sorted(c.name for c in ds.cases())


def test_merge_refuses_clashes_and_mismatches(tmp_path, mixed):
    lung = mixed.parent / "LUNG"
    with pytest.raises(InputError, match="case LUNG_0 is in both"):
        from lesionseg.data.merge import merge_datasets
        merge_datasets([(lung, "a"), (lung, "b")], tmp_path / "X")
    with DatasetWriter(tmp_path / "PET", ("PET",), {"background": 0, "lesion": 1}) as writer:
        image, mask = _lung(0)
        writer.add("P0", [image], mask)
    assert _cli("data", "merge", str(lung), str(tmp_path / "PET"), "-o", tmp_path / "Y") == 2
    with DatasetWriter(tmp_path / "TWO", ("CT",), {"background": 0, "a": 1, "b": 2}) as writer:
        image, mask = _lung(9)
        writer.add("T0", [image], mask)
    with pytest.raises(InputError, match="2 foreground labels"):
        merge_datasets([(lung, "a"), (tmp_path / "TWO", "b")], tmp_path / "Z")
    assert not (tmp_path / "X").exists() and not (tmp_path / "Y").exists() and not (tmp_path / "Z").exists()


# ---- input pipeline -------------------------------------------------------------------------------------------

def test_network_input_channels_box_and_neighbours():
    arr = np.stack([np.full((30, 40), float(v)) for v in (-1000, -500, 0, 500)]).astype(np.float32)  # 4 slices
    prep = preprocess.BoxUNetPreprocessing(size=32, min_side=8)
    box = IndexBox(np.array([10, 5, 0]), np.array([25, 14, 3]))
    x, sq = preprocess.network_input(arr, box, prep)
    assert x.shape == (4, 5, 32, 32) and sq.side == 24                   # 1.5 x 16, centred on the box
    wide = lambda hu: (hu + 1000) / 1000 - 1  # noqa: E731
    assert torch.allclose(x[:, 1, 0, 0], torch.tensor([wide(v) for v in (-1000, -500, 0, 500)]))
    assert torch.allclose(x[0, 0], x[0, 1]) and torch.allclose(x[3, 2], x[3, 1])   # ends repeat the edge slice
    assert torch.allclose(x[1, 0], x[0, 1]) and torch.allclose(x[1, 2], x[2, 1])   # previous / next slice
    assert float(x[2, 3].max()) == pytest.approx(-1 + 160 / 200) and float(x[3, 3].max()) == 1.0  # soft window
    rect = x[0, 4]
    assert torch.equal(rect, x[3, 4]) and set(rect.unique().tolist()) == {0.0, 1.0}
    # the box is 16 x 10 of the 24 x 24 square: its share of the 32 x 32 input
    assert float(rect.mean()) == pytest.approx(16 * 10 / 24 ** 2, abs=0.03)
    with pytest.raises(InputError):
        preprocess.BoxUNetPreprocessing(wide=(5, 5))


def test_box_unet_segmenter_contract(mixed):
    seg = BoxUNet(net=_tiny_net(), preprocessing=preprocess.BoxUNetPreprocessing(threshold=0.5))
    image, mask = _soft(0)
    seg.set_image(image)
    box = data.jittered_box(image, mask.array > 0, np.random.default_rng(0), 0.0, 0.0)
    label, prob = seg.predict(box), seg.predict_probability(box)
    assert label.same_grid(image) and label.array.dtype == np.uint8
    k = np.flatnonzero(mask.array.any(axis=(1, 2)))
    outside = np.ones(image.shape, bool)
    outside[k[0]:k[-1] + 1] = False
    assert not prob.array[outside].any() and not label.array[outside].any()   # nothing past the box's slices
    with pytest.raises(InputError, match="needs a Box prompt"):
        seg.predict(RecistLine([0, 0, 0], [5, 5, 0]))


# ---- recist-3d --------------------------------------------------------------------------------------------------

class _Bright(torch.nn.Module):
    """A stand-in network: lesion where the soft-tissue channel is above 55 HU, inside the box channel's
    square (the box channel's dilation), so propagation must follow the lesion from slice to slice."""

    def forward(self, x):
        hu = (x[:, 3:4] + 1) * 200 - 160
        return torch.where(hu > 55, 10.0, -10.0)


def test_recist_3d_propagates_the_key_slice_through_the_lesion():
    image = Image(np.full((20, 60, 60), 40, np.int16), (1.0, 1.0, 2.0))
    k, j, i = np.ogrid[:20, :60, :60]
    ball = ((i - 30) / 14.0) ** 2 + ((j - 28) / 10.0) ** 2 + ((k - 9) / 6.0) ** 2 <= 1
    other = ((i - 30) / 5.0) ** 2 + ((j - 50) / 3.0) ** 2 + ((k - 9) / 8.0) ** 2 <= 1   # a second lesion nearby
    arr = image.array.copy()
    arr[ball | other] = 90
    arr[:, :, :3] = -1000                                        # air at one edge: a CT in HU
    image = image.with_array(arr)
    seg = recist3d.Recist3D(net=_Bright(), preprocessing=preprocess.BoxUNetPreprocessing(largest_component=False))
    seg.set_image(image)
    ends = index_to_world(image, np.array([[16.5, 28, 9], [43.5, 28, 9], [30, 18.5, 9], [30, 37.5, 9]]))
    out = seg.predict(RecistLine(*ends)).array > 0
    assert not (out & other).any()                               # the other lesion is never reached
    dice = 2 * (out & ball).sum() / (out.sum() + ball.sum())
    key = 2 * (out[9] & ball[9]).sum() / (out[9].sum() + ball[9].sum())
    assert dice > 0.9 and key > 0.95
    assert set(np.flatnonzero(out.any(axis=(1, 2)))) == set(np.flatnonzero(ball.any(axis=(1, 2))))
    with pytest.raises(InputError, match="RecistLine"):
        seg.predict(Box([0, 0, 0], [10, 10, 10]))


class _Filler(torch.nn.Module):
    """A stand-in network that fills any box it is given (what box-unet does past a sarcoma's end in muscle)."""

    def forward(self, x):
        return torch.where(x[:, 4:5] > 0, 10.0, -10.0)


def _ellipsoid(n: int) -> tuple[Image, Image]:
    """A 28 x 20 mm lesion, 13 slices of 2 mm deep (about 0.45 long axes on each side of its middle), in 40 HU
    muscle that runs on past its ends: 30 slices."""
    k, j, i = np.ogrid[:30, :50, :50]
    lesion = ((i - 25 - n) / 14.0) ** 2 + ((j - 25) / 10.0) ** 2 + ((k - 15) / 6.5) ** 2 <= 1
    arr = np.where(lesion, 90, 40).astype(np.int16)
    arr[:, :, :2] = -1000
    image = Image(arr, (1.0, 1.0, 2.0))
    return image, image.with_array(lesion.astype(np.uint8))


def test_recist_3d_learns_where_to_stop_a_network_that_never_stops(tmp_path):
    ds = Dataset(_write(tmp_path, "ELL", _ellipsoid, 2))
    seg = recist3d.Recist3D(net=_Filler(), preprocessing=preprocess.BoxUNetPreprocessing(largest_component=False))
    margin, reach, scores = train.choose_geometry(seg, ds.cases(), {1: [1]})
    # a box filled on every slice: a tight key box (one pixel of margin either way), a limit near the half-depth
    assert margin <= 0.05 and 0.3 <= reach <= 0.6 and scores[f"{margin:g}/{reach:g}"] > scores[f"{margin:g}/2"] + 0.2
    image, truth = _ellipsoid(0)
    ends = index_to_world(image, np.array([[11, 25, 15], [39, 25, 15], [25, 15, 15], [25, 35, 15]], float))
    for r in (reach, 2.0):
        seg.prep = preprocess.BoxUNetPreprocessing(largest_component=False, recist_reach=r, recist_key_margin=margin)
        seg.set_image(image)
        slices = np.flatnonzero((seg.predict(RecistLine(*ends)).array > 0).any(axis=(1, 2)))
        n = recist3d.reach_slices(image, RecistLine(*ends), r)
        assert slices.min() == max(15 - n, 0) and slices.max() == min(15 + n, 29)   # the card's limit holds
    with pytest.raises(InputError, match="recist_reach"):
        preprocess.BoxUNetPreprocessing(recist_reach=0.0)


def test_recist_3d_runs_on_box_unet_weights(tmp_path, monkeypatch):
    assert WEIGHTS_OF["recist-3d"] == "box-unet" and get_spec("recist-3d").prompt == "recist"
    net = _tiny_net()
    card = {"method": "box-unet", "networks": {"weights.pt": {"class": "UNet", "kwargs": net.config}},
            "preprocessing": preprocess.BoxUNetPreprocessing().to_dict()}
    save_model_folder(tmp_path / "box-unet", card, {"weights.pt": net.state_dict()})
    monkeypatch.setenv("LESIONSEG_WEIGHTS", str(tmp_path))
    assert find_model_folder("recist-3d").path == tmp_path / "box-unet"
    assert load_model_folder(tmp_path / "box-unet", "recist-3d").method == "box-unet"
    seg = build("recist-3d", weights=tmp_path / "box-unet", device="cpu")
    assert isinstance(seg, recist3d.Recist3D)


def test_training_slices_past_the_lesion_ends_are_empty_and_the_others_hold_lesion():
    image, mask = _soft(0)
    pad = ((10, 10), (0, 0), (0, 0))                           # room past both ends of the lesion
    image = Image(np.pad(image.array, pad, mode="edge"), image.spacing, image.origin)
    sample = data.Sample(image, np.pad(mask.array > 0, pad), "SOFT_0", "p")
    prep = preprocess.BoxUNetPreprocessing()
    rng = np.random.default_rng(0)
    x, y = train.training_slices([sample] * 8, prep, rng, 0.25, 0.0, 1.0)
    empty = y.reshape(len(y), -1).sum(axis=1) == 0
    assert x.shape == (len(y), 5, 64, 64) and empty.mean() > 0.9
    x, y = train.training_slices([sample] * 8, prep, rng, 0.25, 0.0, 0.0)
    assert (y.reshape(len(y), -1).sum(axis=1) > 0).mean() > 0.8
    with pytest.raises(InputError, match="at most 1"):
        train.BoxUNetTrainSettings(propagation=0.6, beyond=0.5)


# ---- training and evaluation ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(mixed, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bu_model") / "m"
    torch.set_num_threads(2)
    assert _cli("train", "box-unet", "--data", mixed, "--folds", "3", "--fold", "0", "-o", out, "--epochs", "10",
                "--width", "8", "--batch-size", "16", "--validate-every", "5") == 0
    return out


def test_training_writes_a_card_with_groups_sources_and_a_model_that_learnt(trained):
    folder = load_model_folder(trained, "box-unet")
    card = folder.card
    assert card["training"]["lesions"]["train"] == {"lung": 4, "soft-tissue": 4}
    assert {s["group"] for s in card["training"]["sources"]} == {"lung", "soft-tissue"}
    assert card["training"]["fold"] == 0 and card["training"]["folds"] == 3
    history = [h["score"] for h in card["training"]["history"] if "score" in h]
    assert len(history) == 2 and folder.card["preprocessing"]["threshold"] in THRESHOLDS
    prep = card["preprocessing"]
    assert prep["recist_reach"] in train.REACH_CANDIDATES
    assert prep["recist_key_margin"] in train.KEY_MARGIN_CANDIDATES
    geometry = card["metrics"]["recist3d_geometry_train_dice_3d"]
    assert len(geometry) == len(train.REACH_CANDIDATES) * len(train.KEY_MARGIN_CANDIDATES)
    assert geometry[f"{prep['recist_key_margin']:g}/{prep['recist_reach']:g}"] == max(geometry.values())
    assert card["metrics"]["validation_mean_dice_3d"] > 0.6                 # easy synthetic lesions, 4 held out


def test_geometry_script_gives_an_older_model_folder_the_learnt_geometry(trained, mixed, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("recist3d_geometry", REPO / "scripts" / "recist3d_geometry.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    older = tmp_path / "older"
    shutil.copytree(trained, older)
    card = json.loads((older / "model.json").read_text(encoding="utf-8"))
    for key in ("recist_reach", "recist_key_margin"):
        card["preprocessing"].pop(key)                                    # a card written before the choice
    card["metrics"].pop("recist3d_geometry_train_dice_3d")
    (older / "model.json").write_text(json.dumps(card), encoding="utf-8")
    older_prep = load_model_folder(older).settings(preprocess.BoxUNetPreprocessing, "preprocessing", "", ())
    assert older_prep.recist_reach == 2.0 and older_prep.recist_key_margin == 0.1       # the old fixed geometry
    assert script.main([str(older), "--data", str(mixed), "-o", str(tmp_path / "new")]) == 0
    new = json.loads((tmp_path / "new" / "model.json").read_text(encoding="utf-8"))
    ref = json.loads((trained / "model.json").read_text(encoding="utf-8"))
    assert new["preprocessing"] == ref["preprocessing"]                   # what training chose, from the same cases
    assert new["metrics"]["recist3d_geometry_train_dice_3d"] == ref["metrics"]["recist3d_geometry_train_dice_3d"]
    assert (tmp_path / "new" / "weights.pt").read_bytes() == (older / "weights.pt").read_bytes()
    assert script.main([str(older), "--data", str(mixed), "-o", str(tmp_path / "new")]) == 2   # never overwrites
    assert "exists" in capsys.readouterr().err and not (tmp_path / "new.partial").exists()


def test_evaluation_reports_each_lesion_kind(trained, mixed, tmp_path):
    report = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _cli("evaluate", "box-unet", "--data", mixed, "--model", trained, "--baselines", "--json", report,
                    "--markdown", tmp_path / "r.md") == 0
    result = json.loads(report.read_text(encoding="utf-8"))
    rows = result["summary"]
    assert list(rows)[0] == "box-unet" and "HU threshold" in rows and "GrabCut" in rows
    by = rows["box-unet"]["lesion_dice_by_group"]
    assert set(by) == {"lung", "soft-tissue"} and by["lung"]["lesions"] + by["soft-tissue"]["lesions"] == 4
    assert "| row | lung | soft-tissue |" in (tmp_path / "r.md").read_text(encoding="utf-8")
    chosen = {c["group"]: c["hu"] for c in rows["HU threshold"]["chosen"]}     # one threshold per lesion kind
    assert set(chosen) == {"lung", "soft-tissue"} and chosen["lung"] < chosen["soft-tissue"]
    pooled = tmp_path / "p.json"
    assert _cli("evaluate", "box-unet", "--pool", report, "--json", pooled) == 0
    assert json.loads(pooled.read_text(encoding="utf-8"))["summary"]["box-unet"]["lesion_dice_by_group"] == by


def test_recist_3d_evaluation_scores_2d_and_3d_per_kind(trained, mixed, tmp_path):
    report = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _cli("evaluate", "recist-3d", "--data", mixed, "--model", trained, "--json", report,
                    "--markdown", tmp_path / "r.md") == 0
    rows = json.loads(report.read_text(encoding="utf-8"))["summary"]
    entry = rows["recist-3d"]
    assert entry["cases"] == 4 and 0.0 <= entry["dice_3d"]["mean"] <= 1.0
    assert set(entry["by_group"]) == {"lung", "soft-tissue"}
    assert "3D Dice over the whole lesion" in (tmp_path / "r.md").read_text(encoding="utf-8")
