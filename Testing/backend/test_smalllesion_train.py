"""small-lesion-il training: the generalized Dice loss, lesion-centred patches, volumes, a tiny CLI run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lesionseg import Image
from lesionseg.methods.smalllesion.prior import IntensityPrior
from lesionseg.methods.smalllesion.segmenter import SmallLesionPreprocessing, SmallLesionSegmenter
from lesionseg.methods.smalllesion.train import TrainVolume, generalized_dice_loss, load_volume, sample_patch


def test_generalized_dice_loss_exact_values():
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 1, 1, 4)
    half = torch.zeros_like(target)                   # p = 0.5 everywhere
    # lesion: w = 1/4, sum p*r = 1, sum p+r = 4; background the same -> 1 - (2*0.5 + s) / (2 + s)
    assert generalized_dice_loss(half, target).item() == pytest.approx(1 - (1 + 1e-5) / (2 + 1e-5), abs=1e-7)
    perfect = (target * 2 - 1) * 100.0
    assert generalized_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # no lesion in the target: its weight becomes the background's (1/16) instead of infinity
    empty = torch.zeros_like(target)
    assert generalized_dice_loss(half, empty).item() == pytest.approx(1 - (0.25 + 1e-5) / (0.5 + 1e-5), abs=1e-6)
    # a batch is the mean of its samples
    both = generalized_dice_loss(torch.cat([half, perfect]), torch.cat([target, target])).item()
    assert both == pytest.approx(0.5 * (1 - (1 + 1e-5) / (2 + 1e-5)), abs=1e-6)


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


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three small-bowel phantoms of 24 x 48 x 48 voxels in the data layout (the default cohort's 80 x 160 x 160
    would make the test's anisotropic diffusion alone take seconds)."""
    from lesionseg.io import write_image
    from lesionseg.phantoms.smallbowel import smallbowel_ct

    folder = tmp_path_factory.mktemp("sl") / "cohort"
    folder.mkdir()
    for seed in range(3):
        ct, label, _ = smallbowel_ct(seed=seed, shape=(24, 48, 48), spacing=(1.2, 1.2, 1.6))
        write_image(ct, folder / f"sb{seed}_ct.nii.gz")
        write_image(label, folder / f"sb{seed}_label.nii.gz")
    (folder / "cohort.json").write_text(json.dumps({"synthetic": True, "generator": "test"}))
    return folder


def _train(cohort, output, *extra):
    from lesionseg import cli

    return cli.main(["--progress", "none", "train", "small-lesion-il", "--data", str(cohort), "-o", str(output),
                     "--minutes", "0.02", "--patch", "16", "16", "16", "--infer-patch", "64", "64", "64",
                     "--channels", "4", "8", "--steps-per-epoch", "2", "--device", "cpu", *extra])


def test_tiny_training_run_writes_a_usable_model(cohort, tmp_path):
    from lesionseg.io import read_image
    from lesionseg.methods.smalllesion.data import folds, list_cases
    from lesionseg.modelfolder import load_model_folder

    cases = list_cases(cohort)
    assert _train(cohort, tmp_path / "m", "--variant", "seg+il-shifted", "--folds", "3", "--fold", "2") == 0
    folder = load_model_folder(tmp_path / "m", "small-lesion-il")
    card, held = folder.card, folds(cases, 3, 0)[2]
    assert card["variant"] == "seg+il-shifted" and card["prior_shift_hu"] == 100.0
    assert card["training"]["held_out_cases"] == held and card["training"]["synthetic"] is True
    assert card["training"]["generator"] == "test"
    assert sorted(card["training"]["train_cases"]) == sorted(c.name for c in cases if c.name not in held)
    assert card["training"]["steps"] >= 1 and len(card["training"]["loss_first_last"]) == 2
    assert card["training"]["initial_lesion_probability"] == 0.01
    assert card["network"]["kwargs"]["in_channels"] == 1 and card["network"]["kwargs"]["out_channels"] == 2
    assert card["preprocessing"]["patch"] == [64, 64, 64] and card["prior"]["sha256"]
    state = torch.load(folder.path / "weights.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    # the stored prior is the UNshifted KDE of the training cases only
    train = [c for c in cases if c.name not in held]
    refit = IntensityPrior.fit([read_image(c.ct) for c in train], [read_image(c.label) for c in train], seed=0,
                               names=[c.name for c in train])
    stored = IntensityPrior.load(folder.path / "prior.json")
    assert stored.source == "kde" and np.array_equal(stored.hu, refit.hu)
    assert np.array_equal(stored.values, refit.values)
    seg = SmallLesionSegmenter(folder)
    case = next(c for c in cases if c.name == held[0])
    seg.set_image(read_image(case.ct))
    assert seg.predict().same_grid(read_image(case.label))


def test_training_bad_input_is_one_clear_error(cohort, tmp_path):
    assert _train(cohort, tmp_path / "a", "--folds", "4") == 2                  # 4 folds of 3 cases
    assert _train(cohort, tmp_path / "b", "--patch", "4", "16", "16") == 2
    assert _train(cohort, tmp_path / "c", "--channels", "4") == 2
    assert _train(cohort, tmp_path / "d", "--minutes", "0") == 2
    assert not any((tmp_path / n).exists() for n in "abcd")
    assert _train(cohort, tmp_path / "m", "--variant", "seg", "--minutes", "0.01", "--folds", "3") == 0
    assert _train(cohort, tmp_path / "m", "--variant", "seg") == 2              # the model exists
    assert _train(cohort, tmp_path / "e", "--variant", "seg", "--folds", "3", "--fold", "1",
                  "--init", str(tmp_path / "m")) == 2                            # other held-out cases: a leak
    assert _train(cohort, tmp_path / "f", "--variant", "seg+il", "--folds", "3", "--init", str(tmp_path / "m")) == 2
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()
