"""small-lesion-il on real CT (issue #18): the shared negatives loader, negative volumes, the masked loss,
intensity augmentation and ``lesionseg train small-lesion-il --negatives``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lesionseg import Image
from lesionseg.data.negatives import IGNORE, iter_negatives, lesion_margin
from lesionseg.errors import InputError
from lesionseg.losses import generalized_dice_loss
from lesionseg.methods.smalllesion.prior import IntensityPrior
from lesionseg.methods.smalllesion.segmenter import SmallLesionPreprocessing
from lesionseg.methods.smalllesion.train import (SmallLesionTrainer, TrainVolume,
                                                 negative_volume)
from lesionseg.resample import resample_to_spacing
from lesionseg.training import TrainConfig

SHAPE = (12, 16, 16)
"""``(D, H, W)`` of every negatives case, 2 mm voxels: 40 HU inside, air in the outer two columns."""
LESION_VOXEL = (6, 8, 8)


def _hu(seed: int) -> np.ndarray:
    hu = np.random.default_rng(seed).normal(40.0, 20.0, SHAPE)
    hu[:, :, :2] = -1000.0
    return hu


@pytest.fixture(scope="module")
def negatives_dir(tmp_path_factory) -> Path:
    """``neg_a`` with a one-voxel sarcoma, ``neg_b`` (patient ``p1``) without; one CT channel."""
    from lesionseg.data import DatasetWriter

    root = tmp_path_factory.mktemp("neg") / "NEG"
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[LESION_VOXEL] = 1
    grid = lambda a: Image(a, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))  # noqa: E731
    with DatasetWriter(root, ("CT",), {"background": 0, "sarcoma": 1}, meta={"name": "tiny negatives"}) as ds:
        ds.add("neg_a", [grid(_hu(1).astype(np.float32))], grid(lesion))
        ds.add("neg_b", [grid(_hu(2).astype(np.float32))], grid(np.zeros(SHAPE, np.uint8)), patient="p1")
    return root


def test_generic_loader_gives_the_grid_of_the_caller_and_the_ignore_mask(negatives_dir):
    items = list(iter_negatives([negatives_dir], lambda ct: ct))
    assert [(i.name, i.channel) for i in items] == [("NEG/neg_a", 0), ("NEG/neg_b", 0)]
    np.testing.assert_allclose(items[0].image.array, _hu(1), atol=1e-3)
    assert items[0].ignore.shape == SHAPE and items[0].ignore.sum() == 81 and not items[1].ignore.any()
    coarse = list(iter_negatives([negatives_dir], lambda ct: resample_to_spacing(ct, 4.0, "linear", -1000.0),
                                 exclude=["p1"]))
    assert [i.name for i in coarse] == ["NEG/neg_a"] and coarse[0].image.shape == coarse[0].ignore.shape == (6, 8, 8)
    # the lesion voxel's centre is a 4 mm voxel's centre; 5 mm around it on the 4 mm grid: it and its 6 neighbours
    assert coarse[0].ignore.sum() == 7 and coarse[0].ignore[3, 4, 4]
    with pytest.raises(InputError, match="is the training dataset itself"):
        list(iter_negatives([negatives_dir], lambda ct: ct, training=negatives_dir))


def test_lesion_margin_takes_anisotropic_spacing():
    lesion = np.zeros((9, 9, 9), bool)
    lesion[4, 4, 4] = True
    k, j, i = np.mgrid[-4:5, -4:5, -4:5]
    expected = (4.0 * k) ** 2 + (2.0 * j) ** 2 + (2.0 * i) ** 2 <= 25.0
    assert np.array_equal(lesion_margin(lesion, (4.0, 2.0, 2.0), 5.0), expected)
    assert np.array_equal(lesion_margin(lesion, 2.0, 5.0), lesion_margin(lesion, (2.0, 2.0, 2.0), 5.0))


def test_masked_generalized_dice_leaves_the_masked_voxels_out():
    logits = torch.randn(2, 1, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(2, 1, 6, 6, 6, generator=torch.Generator().manual_seed(1)) > 0.8).to(torch.uint8)
    ones = torch.ones_like(logits)
    assert torch.allclose(generalized_dice_loss(logits, target, mask=ones), generalized_dice_loss(logits, target))
    weight = torch.zeros_like(logits)
    weight[..., :3, :, :] = 1
    target[..., 3:, :, :] = 1 - target[..., 3:, :, :]          # what the mask hides does not matter
    assert torch.allclose(generalized_dice_loss(logits, target, mask=weight),
                          generalized_dice_loss(logits[..., :3, :, :], target[..., :3, :, :]))
    free = logits.clone().requires_grad_(True)
    loss = generalized_dice_loss(free, target, mask=torch.zeros_like(logits))
    loss.backward()
    assert loss.item() == pytest.approx(0.0) and torch.isfinite(free.grad).all()


def _negative(negatives_dir, variant: str = "seg+il") -> TrainVolume:
    item = next(iter_negatives([negatives_dir], lambda ct: ct))
    return negative_volume(item, variant, IntensityPrior.gaussian(40.0, 20.0), SmallLesionPreprocessing(),
                           (16, 16, 16))


def test_negative_volumes_are_background_with_ignored_lesions_and_body_centres(negatives_dir):
    vol = _negative(negatives_dir)
    assert vol.x.shape == (1, 16, 16, 16) and vol.y.shape == vol.il.shape == (16, 16, 16)
    assert set(np.unique(vol.y)) == {0, IGNORE} and (vol.y == IGNORE).sum() == 81 and vol.y[LESION_VOXEL] == IGNORE
    assert not vol.y[12:].any() and not vol.il[12:].any()                 # padded to the patch
    assert len(vol.lesion) and (vol.lesion[:, 2] >= 2).all() and not (vol.lesion % 4).any()  # body, lattice 4
    prior = IntensityPrior.gaussian(40.0, 20.0)
    item = next(iter_negatives([negatives_dir], lambda ct: ct))
    np.testing.assert_array_equal(vol.il[:12], prior.likelihood(prior.smooth(item.image).array))
    assert _negative(negatives_dir, "seg").il is None


def _trainer(negatives_dir, share: float, augment: float = 0.0) -> SmallLesionTrainer:
    lesion = np.zeros((16, 16, 16), np.uint8)
    lesion[8, 8, 8] = 1
    positive = TrainVolume("p", np.full((1, 16, 16, 16), 0.5, np.float32), lesion,
                           np.zeros((16, 16, 16), np.float32), np.argwhere(lesion))
    return SmallLesionTrainer(torch.nn.Conv3d(1, 2, 1), TrainConfig(epochs=1, seed=0), [positive], (8, 8, 8),
                              batch_size=2, negatives=[_negative(negatives_dir)], negative_share=share,
                              augment=augment)


def test_trainer_draws_negatives_with_their_share_and_augments(negatives_dir):
    def draws(trainer, n: int = 20) -> list[bool]:
        batches = iter(trainer.train_batches(0))
        return [bool(y[b].sum() == 1) for _ in range(n) for y in [next(batches)[1]] for b in range(len(y))]

    assert all(draws(_trainer(negatives_dir, 0.0)))                       # every sub-volume has the lesion
    assert not any(draws(_trainer(negatives_dir, 1.0)))
    assert 5 < sum(draws(_trainer(negatives_dir, 0.5))) < 35
    x = next(iter(_trainer(negatives_dir, 0.0, augment=1.0).train_batches(0)))[0]
    assert x.dtype == torch.float32 and not torch.allclose(x, torch.full_like(x, 0.5))


def test_a_batch_of_ignored_voxels_has_a_zero_loss_and_no_nan(negatives_dir):
    trainer = _trainer(negatives_dir, 1.0)
    x = torch.zeros(2, 1, 8, 8, 8)
    y = torch.full((2, 1, 8, 8, 8), IGNORE, dtype=torch.uint8)
    loss = trainer.loss((x, y, torch.zeros(2, 1, 8, 8, 8)))
    loss.backward()
    assert loss.item() == pytest.approx(0.0) and all(torch.isfinite(p.grad).all() for p in trainer.model.parameters())
    y[0, 0, :4] = 0                                                        # some voxels count: finite, > 0
    assert 0 < trainer.loss((x, y, torch.full((2, 1, 8, 8, 8), 0.3))).item() < float("inf")



def test_intensity_augment_keeps_hu_sizes_on_another_window():
    from lesionseg.methods.s4c.augment import intensity_augment

    patch = np.full((8, 8, 8), 0.5, np.float32)
    assert np.array_equal(intensity_augment(patch, np.random.default_rng(3)),
                          intensity_augment(patch, np.random.default_rng(3), 400.0))
    # a patch at the window centre: contrast and blur leave it, so without gamma (the third draw) the shift and
    # noise in HU are the same on a 400 and a 600 HU window
    checked = 0
    for seed in range(12):
        draws = np.random.default_rng(seed)
        draws.uniform(), draws.uniform()
        if draws.random() < 0.3:
            continue
        hu = [(intensity_augment(patch, np.random.default_rng(seed), unit) - 0.5) * unit for unit in (400.0, 600.0)]
        np.testing.assert_allclose(hu[0], hu[1], atol=0.01)
        checked += 1
    assert checked >= 5
    with pytest.raises(InputError, match="hu_per_unit must be > 0"):
        intensity_augment(patch, np.random.default_rng(0), 0.0)


def test_training_with_negatives_records_them(negatives_dir, tmp_path, capsys):
    from lesionseg import cli
    from lesionseg.modelfolder import load_model_folder

    cohort = tmp_path / "cohort"
    assert cli.main(["--progress", "none", "data", "synthetic", "small-lesion-il", "-o", str(cohort), "--cases", "2",
                     "--shape", "20", "32", "32", "--spacing", "1.5", "1.5", "2.0"]) == 0
    base = ["--progress", "none", "train", "small-lesion-il", "--data", str(cohort), "--minutes", "0.01",
            "--patch", "16", "16", "16", "--infer-patch", "32", "32", "32", "--channels", "4", "8",
            "--steps-per-epoch", "2", "--device", "cpu", "--spacing", "2"]
    assert cli.main([*base, "-o", str(tmp_path / "m"), "--negatives", str(negatives_dir), "--exclude-negatives",
                     "p1", "--negative-share", "0.5", "--intensity-augment", "0.5"]) == 0
    training = load_model_folder(tmp_path / "m", "small-lesion-il").card["training"]
    assert training["negatives"]["folders"] == [str(negatives_dir)]
    assert training["negatives"]["datasets"] == ["tiny negatives"] and training["negatives"]["volumes"] == 1
    assert training["negatives"]["excluded"] == ["p1"] and training["negatives"]["share"] == 0.5
    assert training["intensity_augment"] == 0.5 and "intensity" in training["augmentation"]
    assert training["settings"]["negatives"] == [str(negatives_dir)] and training["steps"] >= 1
    capsys.readouterr()
    assert cli.main([*base, "-o", str(tmp_path / "bad"), "--negatives", str(cohort)]) == 2
    assert "is the training dataset itself" in capsys.readouterr().err and not (tmp_path / "bad").exists()
