"""Hot-negative training patches of autopet-l2snet (``--hot-negative-probability``): patches centred on FDG-avid
voxels outside the lesions, so the 3D nets see physiological uptake labelled background."""
from __future__ import annotations

import numpy as np
import pytest

from lesionseg.errors import InputError
from lesionseg.methods.autopet.data import HOT_SUV, Volume, sample_patch
from lesionseg.methods.autopet.pipeline import scale
from lesionseg.methods.autopet.train import L2STrainSettings

LEVEL = float(scale(np.array([HOT_SUV]), (0.0, 15.0))[0])


def _volume() -> Volume:
    """40^3 body at SUV 1 with a lesion (SUV 8) in one corner and a hot organ (SUV 6, label 0) in the other."""
    pet = np.full((40, 40, 40), 1.0, np.float32)
    label = np.zeros(pet.shape, np.uint8)
    pet[2:6, 2:6, 2:6], label[2:6, 2:6, 2:6] = 8.0, 1
    pet[32:38, 32:38, 32:38] = 6.0
    return Volume("c", scale(pet, (0.0, 15.0)), np.zeros_like(pet), label)


def test_hot_voxels_are_the_hot_background_only():
    volume = _volume()
    hot = np.unravel_index(volume.hot_voxels(LEVEL), volume.pet.shape)
    assert len(hot[0]) == 6 ** 3 and min(a.min() for a in hot) == 32  # the organ, not the lesion
    assert volume.hot_voxels(LEVEL) is volume.hot_voxels(LEVEL)  # cached


def test_hot_negative_patches_hold_the_organ_and_no_lesion():
    volume, rng = _volume(), np.random.default_rng(0)
    for _ in range(20):
        image, label, _ = sample_patch(volume, (12, 12, 12), rng, 0.0, use_cue=False, hot_probability=1.0,
                                       hot_level=LEVEL)
        assert image[0].max() == pytest.approx(6.0 / 15.0) and not label.any()
    shares = [sample_patch(volume, (12, 12, 12), rng, 0.5, use_cue=False, hot_probability=0.5, hot_level=LEVEL)
              for _ in range(200)]
    lesion = np.mean([s[1].any() for s in shares])
    organ = np.mean([np.isclose(s[0][0].max(), 6.0 / 15.0) for s in shares])
    assert 0.38 < lesion < 0.62 and 0.38 < organ < 0.62  # every draw is a lesion or an organ patch


def test_without_hot_voxels_a_random_body_patch_is_drawn():
    volume = _volume()
    volume.pet[volume.pet > LEVEL] = 0.1
    volume.label[:] = 0
    image, label, _ = sample_patch(volume, (12, 12, 12), np.random.default_rng(1), 0.0, use_cue=False,
                                   hot_probability=1.0, hot_level=LEVEL)
    assert image.shape == (2, 12, 12, 12) and not label.any()


@pytest.mark.parametrize("lesion, hot", [(0.7, 0.4), (0.5, -0.1), (0.5, 1.5)])
def test_shares_beyond_one_are_one_error(lesion, hot):
    with pytest.raises(InputError, match="hot-negative-probability"):
        L2STrainSettings(lesion_probability=lesion, hot_negative_probability=hot)
