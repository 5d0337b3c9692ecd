"""S4C on real CT (issue #18): negatives datasets, intensity augmentation, their training flags and ``--init``
from a model of another dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lesionseg import Image
from lesionseg.errors import InputError
from lesionseg.methods.s4c.augment import intensity_augment
from lesionseg.methods.s4c.data import IGNORE
from lesionseg.methods.s4c.negatives import load_negative_volumes
from lesionseg.methods.s4c.segmenter import S4CPreprocessing, normalise

SHAPE = (12, 20, 20)
"""``(D, H, W)`` of every tiny case, 2 mm voxels."""
LESION_VOXEL = (6, 10, 10)


def _write(root: Path, name: str, channels: tuple[str, ...], labels: dict, arrays: dict,
           patients: dict | None = None, spacing: float = 2.0) -> Path:
    """A dataset at ``root`` of ``arrays`` ``{case: (images, label)}`` (numpy, ``(D, H, W)`` HU and uint8)."""
    from lesionseg.data import DatasetWriter

    with DatasetWriter(root, channels, labels, meta={"name": name}) as ds:
        for case, (images, label) in arrays.items():
            grid = lambda a: Image(a, (spacing,) * 3, (0.0, 0.0, 0.0))  # noqa: E731
            ds.add(case, [grid(a.astype(np.float32)) for a in images], grid(label.astype(np.uint8)),
                   patient=(patients or {}).get(case))
    return root


def _hu(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-200.0, 300.0, shape)


@pytest.fixture(scope="module")
def negatives_dir(tmp_path_factory) -> Path:
    """Two-channel negatives: ``neg_a`` with a one-voxel lesion (label 2), ``neg_b`` (patient ``p1``) and
    ``neg_c`` (patient ``p1``) without."""
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[LESION_VOXEL] = 2
    empty = np.zeros(SHAPE, np.uint8)
    arrays = {"neg_a": ([_hu(1), _hu(2)], lesion), "neg_b": ([_hu(3), _hu(4)], empty),
              "neg_c": ([_hu(5), _hu(6)], empty)}
    return _write(tmp_path_factory.mktemp("neg") / "NEG", "tiny negatives", ("CT", "CT2"),
                  {"background": 0, "nodule": 1, "sarcoma": 2}, arrays, patients={"neg_b": "p1", "neg_c": "p1"})


def test_negatives_are_background_with_their_lesions_ignored(negatives_dir):
    prep = S4CPreprocessing(spacing_mm=2.0, patch=16, stride=16)
    vols = load_negative_volumes([negatives_dir], prep)
    assert [(v.case, v.phase) for v in vols] == [(f"NEG/{c}", p) for c in ("neg_a", "neg_b", "neg_c")
                                                for p in ("ct", "ct2")]
    np.testing.assert_allclose(vols[0].image, normalise(_hu(1), prep.window), atol=1e-5)
    np.testing.assert_allclose(vols[1].image, normalise(_hu(2), prep.window), atol=1e-5)
    for v in vols:
        assert v.image.shape == v.label.shape == SHAPE and v.image.dtype == np.float32 and v.label.dtype == np.uint8
    # a one-voxel lesion dilated by 5 mm on a 2 mm grid: the 81 offsets with i^2 + j^2 + k^2 <= 6.25
    for v in vols[:2]:
        assert set(np.unique(v.label)) == {0, IGNORE} and (v.label == IGNORE).sum() == 81
        assert v.label[LESION_VOXEL] == IGNORE and v.label[6, 10, 12] == IGNORE and v.label[6, 10, 13] == 0
        assert v.label[6, 12, 12] == 0                                    # 5.66 mm away
    assert all(not v.label.any() for v in vols[2:])


def test_negatives_smaller_than_the_patch_are_sampled_padded(negatives_dir):
    from lesionseg.methods.s4c.data import sample_patch

    vol = load_negative_volumes([negatives_dir], S4CPreprocessing(spacing_mm=2.0, patch=16, stride=16))[2]
    img, lab = sample_patch(vol, 32, np.random.default_rng(0))
    assert img.shape == (1, 32, 32, 32) and lab.shape == (32, 32, 32) and set(np.unique(lab)) == {0}


def test_exclude_takes_case_names_and_patients(negatives_dir):
    prep = S4CPreprocessing(spacing_mm=2.0, patch=16, stride=16)
    assert {v.case for v in load_negative_volumes([negatives_dir], prep, exclude=["neg_a"])} == {"NEG/neg_b",
                                                                                                 "NEG/neg_c"}
    assert {v.case for v in load_negative_volumes([negatives_dir], prep, exclude=["p1"])} == {"NEG/neg_a"}
    with pytest.raises(InputError, match="no case is left in .*after --exclude-negatives"):
        load_negative_volumes([negatives_dir], prep, exclude=["neg_a", "p1"])
    with pytest.raises(InputError, match="no such dataset folder"):
        load_negative_volumes([negatives_dir.parent / "missing"], prep)
    with pytest.raises(InputError, match="not a dataset folder"):
        load_negative_volumes([negatives_dir.parent], prep)


def test_intensity_augment_keeps_shape_dtype_range_and_is_seeded():
    patch = np.random.default_rng(0).random((1, 16, 16, 16)).astype(np.float32)
    outs = [intensity_augment(patch, np.random.default_rng(seed)) for seed in (7, 7, 8)]
    for out in outs:
        assert out.shape == patch.shape and out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    assert not np.array_equal(outs[0], patch)
    changed = [intensity_augment(patch[0], np.random.default_rng(s)) for s in range(40)]
    assert all(c.shape == (16, 16, 16) for c in changed)
    # on average the perturbation is small: a shift of at most 0.06, contrast within 15 %, noise sd <= 0.05
    assert all(abs(float(c.mean()) - float(patch.mean())) < 0.15 for c in changed)



# --- training ------------------------------------------------------------------------------------------

def _pancreas_case(seed: int, tumour: bool) -> tuple[list[np.ndarray], np.ndarray]:
    label = np.zeros(SHAPE, np.uint8)
    label[3:9, 5:15, 5:15] = 1
    if tumour:
        label[5:7, 8:11, 8:11] = 2
    hu = np.random.default_rng(seed).normal(0.0, 10.0, SHAPE) + np.where(label == 1, 100.0, 0.0) + \
        np.where(label == 2, 180.0, 0.0)
    return [hu], label


def _train_dir(root: Path, name: str) -> Path:
    arrays = {f"{name}_{i}": _pancreas_case(i, tumour=i % 2 == 0) for i in range(4)}
    return _write(root, f"tiny {name}", ("CT",), {"background": 0, "pancreas": 1, "tumour": 2}, arrays)


TINY = ["--progress", "none", "train", "s4c", "--minutes", "0.01", "--train-patch", "16", "--patch", "16",
        "--channels", "4", "8", "8", "8", "--steps-per-epoch", "1", "--batch-size", "2", "--spacing", "3",
        "--device", "cpu", "--folds", "2"]
"""A network and a budget small enough for a test."""


def test_training_with_negatives_and_init_across_datasets(negatives_dir, tmp_path, capsys):
    from lesionseg import cli
    from lesionseg.modelfolder import load_model_folder

    data_a, data_b = _train_dir(tmp_path / "A", "a"), _train_dir(tmp_path / "B", "b")
    assert cli.main([*TINY, "--data", str(data_a), "--fold", "1", "-o", str(tmp_path / "m"),
                     "--negatives", str(negatives_dir), "--exclude-negatives", "neg_b",
                     "--negative-share", "0.5", "--intensity-augment", "0.5"]) == 0
    training = load_model_folder(tmp_path / "m", "s4c").card["training"]
    assert training["negatives"]["folders"] == [str(negatives_dir)]
    assert training["negatives"]["datasets"] == ["tiny negatives"]
    assert training["negatives"]["volumes"] == 4 and training["negatives"]["cases"] == 2
    assert training["negatives"]["excluded"] == ["neg_b"] and training["negatives"]["share"] == 0.5
    assert training["intensity_augment"] == 0.5 and training["steps"] >= 1
    assert training["settings"]["negatives"] == [str(negatives_dir)]

    # another dataset: fine-tuning is allowed whatever it held out, and the record says so
    assert cli.main([*TINY, "--data", str(data_b), "--fold", "0", "-o", str(tmp_path / "b"),
                     "--init", str(tmp_path / "m")]) == 0
    record = load_model_folder(tmp_path / "b", "s4c").card["training"]
    assert record["initialised_from"]["same_dataset"] is False
    assert record["initialised_from"]["dataset"] == "tiny a" and record["negatives"] is None
    # the same dataset with other held-out cases would leak them
    capsys.readouterr()
    assert cli.main([*TINY, "--data", str(data_a), "--fold", "0", "-o", str(tmp_path / "leak"),
                     "--init", str(tmp_path / "m")]) == 2
    assert "holding out other cases" in capsys.readouterr().err and not (tmp_path / "leak").exists()
    assert cli.main([*TINY, "--data", str(data_a), "--fold", "1", "-o", str(tmp_path / "same"),
                     "--init", str(tmp_path / "m")]) == 0
    assert load_model_folder(tmp_path / "same", "s4c").card["training"]["initialised_from"]["same_dataset"] is True


def test_training_refuses_bad_negatives(negatives_dir, tmp_path, capsys):
    from lesionseg import cli

    data = _train_dir(tmp_path / "A", "a")
    base = [*TINY, "--data", str(data), "--fold", "1", "-o", str(tmp_path / "m")]
    assert cli.main([*base, "--negatives", str(tmp_path / "missing")]) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    assert cli.main([*base, "--negatives", str(data)]) == 2
    assert "is the training dataset itself" in capsys.readouterr().err
    assert cli.main([*base, "--negatives", str(negatives_dir), "--exclude-negatives", "neg_a", "p1"]) == 2
    assert "no case is left" in capsys.readouterr().err
    assert cli.main([*base, "--negative-share", "2"]) == 2 and "--negative-share" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def _trainer(share: float, augment: float = 0.0):
    from lesionseg.methods.s4c.data import Volume
    from lesionseg.methods.s4c.network import S4CNet
    from lesionseg.methods.s4c.train import S4CTrainer
    from lesionseg.training import TrainConfig

    organ = Volume("t", "ct", np.full((16, 16, 16), 0.5, np.float32), np.ones((16, 16, 16), np.uint8))
    negative = Volume("n", "ct", np.full((16, 16, 16), 0.2, np.float32), np.zeros((16, 16, 16), np.uint8))
    negative.label[:8] = IGNORE
    net = S4CNet(in_channels=1, out_channels=4, channels=[2, 2, 2, 2])
    return S4CTrainer(net, TrainConfig(epochs=1, device="cpu", seed=0), [organ], 16, 2, 20,
                      negatives=[negative], negative_share=share, augment=augment)


def test_trainer_draws_patches_from_the_negatives_with_their_share():
    import torch

    def labels(trainer) -> list[set]:
        return [set(np.unique(y[i].numpy())) for _, y in trainer.train_batches(0) for i in range(len(y))]

    assert all(s == {1} for s in labels(_trainer(0.0)))                 # 40 patches, none a negative
    assert all(s <= {0, IGNORE} for s in labels(_trainer(1.0)))          # every patch a negative
    mixed = labels(_trainer(0.5))
    assert 5 < sum(s == {1} for s in mixed) < 35
    images = [x for x, _ in _trainer(0.0, augment=1.0).train_batches(0)]
    assert all(not np.allclose(x.numpy(), 0.5) for x in images) and all(x.dtype == torch.float32 for x in images)


def test_a_batch_of_ignored_voxels_has_a_zero_loss_and_no_nan():
    import torch

    trainer = _trainer(1.0)
    logits = torch.randn(2, 4, 8, 8, 8, requires_grad=True)
    loss = trainer._one(logits, torch.full((2, 8, 8, 8), IGNORE, dtype=torch.int64))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()
