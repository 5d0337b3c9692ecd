"""small-lesion-il training: lesion-centred patches, volumes, and ``lesionseg train`` / ``evaluate`` end to end
on a tiny synthetic dataset. (The generalized Dice loss is :mod:`lesionseg.losses`', tested in test_losses.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lesionseg import Image
from lesionseg.methods.smalllesion.prior import IntensityPrior
from lesionseg.methods.smalllesion.segmenter import SmallLesionPreprocessing, SmallLesionSegmenter
from lesionseg.methods.smalllesion.train import SmallLesionTrainer, TrainVolume, load_volume, sample_patch
from lesionseg.training import TrainConfig


def _volume(with_il: bool = True) -> TrainVolume:
    """20x20x20 volume whose x holds the flat voxel index and one lesion voxel at (3, 17, 9)."""
    x = np.arange(20 ** 3, dtype=np.float32).reshape(1, 20, 20, 20)
    y = np.zeros((20, 20, 20), np.uint8)
    y[3, 17, 9] = 1
    return TrainVolume("v", x, y, x[0] / 8000.0 if with_il else None, np.argwhere(y))


def test_sample_patch_always_holds_a_lesion_and_rotates_about_z():
    rng = np.random.default_rng(0)
    volume = _volume()
    rotated = 0
    for _ in range(60):
        x, y, il = sample_patch(volume, (8, 6, 10), rng)
        assert x.shape == (1, 8, 6, 10) and y.shape == (8, 6, 10) and il.shape == (8, 6, 10) and y.sum() == 1
        assert np.array_equal(il, x[0] / 8000.0)
        turned = x[0, 0, 0, 0] > x[0, 0, -1, -1]      # indices decrease along rows and columns: rot90(k=2)
        rotated += turned
        first = x[0] if not turned else np.rot90(x[0], 2, axes=(-2, -1))
        k, j, i = np.unravel_index(int(first[0, 0, 0]), (20, 20, 20))
        assert np.array_equal(first, volume.x[0, k:k + 8, j:j + 6, i:i + 10])      # a plain sub-volume
    assert 15 < rotated < 45
    assert sample_patch(_volume(False), (4, 4, 4), rng)[2] is None


def _case() -> tuple[Image, Image]:
    ct = np.full((12, 14, 16), 40.0, np.float32)
    ct[:, :, :2] = -1000.0
    ct[4:8, 5:9, 6:10] = 150.0
    label = (ct == 150.0).astype(np.uint8)
    return Image(ct, (1.0, 1.0, 1.0), (5.0, 6.0, 7.0)), Image(label, (1.0, 1.0, 1.0), (5.0, 6.0, 7.0))


@pytest.mark.parametrize("variant", ["seg", "seg+il-in", "seg+il", "seg+il-shifted"])
def test_load_volume_channels_targets_and_padding(variant):
    ct, label = _case()
    prior = IntensityPrior.gaussian(150.0, 20.0)
    used = prior.shifted(100.0) if variant == "seg+il-shifted" else prior
    vol = load_volume("c", ct, label, variant, used, SmallLesionPreprocessing(), (16, 16, 16))
    assert vol.x.shape == (1 if variant != "seg+il-in" else 2, 16, 16, 16) and vol.y.shape == (16, 16, 16)
    assert np.array_equal(vol.y[:12, :14, :16], label.array) and not vol.y[12:].any() and len(vol.lesion) == 64
    assert vol.x[0, 0, 0, 0] == 0.0 and vol.x[0, 0, 0, 5] == pytest.approx(240 / 600)
    likelihood = used.likelihood(used.smooth(ct).array)
    if variant in ("seg+il", "seg+il-shifted"):
        assert np.array_equal(vol.il[:12, :14, :16], likelihood) and not vol.il[12:].any()
    else:
        assert vol.il is None
    if variant == "seg+il-in":
        assert np.array_equal(vol.x[1, :12, :14, :16], likelihood)
    if variant == "seg+il-shifted":       # the +100 HU shift moves the target off the lesions
        assert vol.il[5, 6, 7] < 0.01
    assert load_volume("e", ct, label.with_array(np.zeros_like(label.array)), variant, used,
                       SmallLesionPreprocessing(), (8, 8, 8)) is None


def test_batches_stack_batch_size_patches():
    volume = _volume()
    config = TrainConfig(epochs=1, steps_per_epoch=2)
    trainer = SmallLesionTrainer(torch.nn.Conv3d(1, 2, 1), config, [volume], (8, 8, 8), batch_size=3)
    x, y, il = next(iter(trainer.train_batches(0)))
    assert x.shape == (3, 1, 8, 8, 8) and y.shape == (3, 1, 8, 8, 8) and il.shape == (3, 1, 8, 8, 8)
    assert y.dtype == torch.uint8 and y.sum() == 3                 # one lesion voxel in each patch
    assert torch.isfinite(trainer.loss((x, y, il)))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three small-bowel phantoms of 24 x 48 x 48 voxels, written by ``lesionseg data synthetic`` (the default
    cohort's 80 x 160 x 160 would make the anisotropic diffusion alone take seconds)."""
    from lesionseg import cli

    folder = tmp_path_factory.mktemp("sl") / "cohort"
    assert cli.main(["--progress", "none", "data", "synthetic", "small-lesion-il", "-o", str(folder), "--cases", "3",
                     "--shape", "24", "48", "48", "--spacing", "1.2", "1.2", "1.6"]) == 0
    return folder


def _train(cohort, output, *extra):
    from lesionseg import cli

    return cli.main(["--progress", "none", "train", "small-lesion-il", "--data", str(cohort), "-o", str(output),
                     "--minutes", "0.02", "--patch", "16", "16", "16", "--infer-patch", "64", "64", "64",
                     "--channels", "4", "8", "--steps-per-epoch", "2", "--device", "cpu", *extra])


def test_tiny_training_run_writes_a_usable_model(cohort, tmp_path):
    from lesionseg.data import Dataset, fold_split
    from lesionseg.modelfolder import load_model_folder

    dataset = Dataset(cohort)
    assert _train(cohort, tmp_path / "m", "--variant", "seg+il-shifted", "--folds", "3", "--fold", "2",
                  "--batch-size", "2") == 0
    assert not (tmp_path / "m.checkpoints").exists()
    folder = load_model_folder(tmp_path / "m", "small-lesion-il")
    card, held = folder.card, list(fold_split(dataset, 3, 2).held_out)
    assert card["variant"] == "seg+il-shifted" and card["prior_shift_hu"] == 100.0
    assert card["training"]["held_out_cases"] == held and card["training"]["synthetic"] is True
    assert card["training"]["folds"] == 3 and card["training"]["fold"] == 2 and card["training"]["batch_size"] == 2
    assert card["training"]["settings"]["channels"] == [4, 8] and card["training"]["config"]["epochs"] is None
    assert sorted(card["training"]["train_cases"]) == sorted(c.name for c in dataset.cases() if c.name not in held)
    assert card["training"]["steps"] >= 1 and len(card["training"]["loss_first_last"]) == 2
    assert card["training"]["initial_lesion_probability"] == 0.01
    kwargs = folder.model_card.networks["weights.pt"]["kwargs"]
    assert kwargs["in_channels"] == 1 and kwargs["out_channels"] == 2
    assert card["preprocessing"]["patch"] == [64, 64, 64] and card["prior"]["sha256"]
    state = torch.load(folder.path / "weights.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    # the stored prior is the UNshifted KDE of the training cases only
    train = [c for c in dataset.cases() if c.name not in held]
    refit = IntensityPrior.fit([c.read_images()[0] for c in train], [c.read_label() for c in train], seed=0,
                               names=[c.name for c in train])
    stored = IntensityPrior.load(folder.path / "prior.json")
    assert stored.source == "kde" and np.array_equal(stored.hu, refit.hu)
    assert np.array_equal(stored.values, refit.values)
    seg = SmallLesionSegmenter(folder)
    case = dataset.case(held[0])
    seg.set_image(case.read_images()[0])
    assert seg.predict().same_grid(case.read_label())


def test_training_bad_input_is_one_clear_error(cohort, tmp_path):
    assert _train(cohort, tmp_path / "a", "--folds", "4") == 2                  # 4 folds of 3 cases
    assert _train(cohort, tmp_path / "b", "--patch", "4", "16", "16") == 2
    assert _train(cohort, tmp_path / "c", "--channels", "4") == 2
    assert _train(cohort, tmp_path / "d", "--minutes", "0") == 2
    assert _train(cohort, tmp_path / "g", "--batch-size", "0") == 2
    assert not any((tmp_path / n).exists() for n in "abcdg")
    assert _train(cohort, tmp_path / "m", "--variant", "seg", "--minutes", "0.01", "--folds", "3") == 0
    assert _train(cohort, tmp_path / "m", "--variant", "seg") == 2              # the model exists
    assert _train(cohort, tmp_path / "e", "--variant", "seg", "--folds", "3", "--fold", "1",
                  "--init", str(tmp_path / "m")) == 2                            # other held-out cases: a leak
    assert _train(cohort, tmp_path / "f", "--variant", "seg+il", "--folds", "3", "--init", str(tmp_path / "m")) == 2
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()
    assert _train(cohort, tmp_path / "i", "--variant", "seg", "--folds", "3", "--init", str(tmp_path / "m")) == 0
    card = json.loads((tmp_path / "i" / "model.json").read_text())
    assert card["training"]["initialised_from"]["folder"] == str(tmp_path / "m")
    assert card["training"]["initial_lesion_probability"] is None


def test_end_to_end_data_train_evaluate(tmp_path):
    """The issue's done-means: a small-lesion dataset -> ``train --minutes 0.2`` -> ``evaluate`` -> JSON."""
    from lesionseg import cli

    data, model, out = tmp_path / "D", tmp_path / "M", tmp_path / "out.json"
    assert cli.main(["--progress", "none", "data", "synthetic", "small-lesion-il", "-o", str(data), "--cases", "4",
                     "--shape", "24", "48", "48", "--spacing", "1.2", "1.2", "1.6"]) == 0
    assert cli.main(["--progress", "none", "train", "small-lesion-il", "--data", str(data), "--minutes", "0.2",
                     "-o", str(model), "--patch", "16", "16", "16", "--infer-patch", "32", "32", "32",
                     "--channels", "4", "8", "--device", "cpu"]) == 0
    assert cli.main(["--progress", "none", "evaluate", "small-lesion-il", "--data", str(data), "--model", str(model),
                     "--json", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    held = json.loads((model / "model.json").read_text())["training"]["held_out_cases"]
    assert len(held) == 1 and [r["case"] for r in result["records"]] == held and result["synthetic"] is True
    row = result["summary"]["seg+il"]
    assert row["cases"] == 1 and {"global_dice", "per_case", "per_tumour", "per_tumour_large"} <= set(row)
