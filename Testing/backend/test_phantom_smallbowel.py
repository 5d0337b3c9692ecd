"""The small-bowel CT phantom (lesionseg.phantoms.smallbowel) used by small-lesion-il."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import InputError
from lesionseg.geometry import world_to_index
from lesionseg.intensity import looks_like_ct
from lesionseg.phantoms.smallbowel import smallbowel_ct

SMALL = {"shape": (24, 64, 64), "spacing": (2.0, 2.0, 5.0)}  # the default field of view, coarse voxels


def components(label) -> tuple[np.ndarray, int]:
    return ndimage.label(label.array, ndimage.generate_binary_structure(3, 3))


def test_same_seed_same_phantom_other_seed_another():
    first, again = smallbowel_ct(seed=11, **SMALL), smallbowel_ct(seed=11, **SMALL)
    assert np.array_equal(first[0].array, again[0].array) and np.array_equal(first[1].array, again[1].array)
    assert first[2] == again[2]
    other = smallbowel_ct(seed=12, **SMALL)
    assert not np.array_equal(other[0].array, first[0].array)


@pytest.mark.parametrize("seed", range(8))
def test_lesion_count_sizes_and_label_match_the_info(seed):
    ct, label, info = smallbowel_ct(seed=seed, **SMALL)
    lesions = info["lesions"]
    assert 1 <= len(lesions) <= 4
    assert ct.array.dtype == np.int16 and label.array.dtype == np.uint8 and set(np.unique(label.array)) == {0, 1}
    parts, n = components(label)
    assert n == len(lesions)
    voxel_mm3 = float(np.prod(label.spacing))
    seen = set()
    for record in lesions:
        assert 2.0 <= record["diameter_mm"] <= 16.0
        i, j, k = np.rint(world_to_index(label, [record["centre_lps"]])[0]).astype(int)
        number = parts[k, j, i]
        assert number > 0 and number not in seen
        seen.add(number)
        inside = parts == number
        assert record["volume_mm3"] == round(float(inside.sum()) * voxel_mm3, 3)
        assert record["mean_hu"] == round(float(ct.array[inside].mean()), 1)
        lo, hi = np.array(record["box_ijk"])
        where = np.argwhere(inside)[:, ::-1]
        assert np.array_equal(where.min(axis=0), lo) and np.array_equal(where.max(axis=0), hi)


def test_default_grid_geometry_and_requested_lesion_count():
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    ct, label, info = smallbowel_ct(seed=2, n_lesions=4, origin=(5.0, -7.0, 100.0), direction=direction)
    assert ct.shape == (80, 160, 160) and len(info["lesions"]) == 4
    for image in (ct, label):
        assert np.allclose(image.spacing, (0.8, 0.8, 1.5)) and np.allclose(image.origin, (5.0, -7.0, 100.0))
        assert np.array_equal(image.direction, direction)
    assert looks_like_ct(ct.array) and ct.meta["units"] == "HU"


def test_lesion_hu_overlaps_the_rest_so_a_threshold_cannot_separate_them():
    ct, label, info = smallbowel_ct(seed=0)
    lesion = label.array > 0
    band = (ct.array >= 100) & (ct.array <= 160)
    assert np.count_nonzero(band & ~lesion) > 20 * np.count_nonzero(band & lesion)
    assert {loop["lumen"] for loop in info["loops"]} and 6 <= len(info["loops"]) <= 10


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": 1.5}, {"n_lesions": 0}, {"n_lesions": 5},
                                    {"diameter_mm": (8.0, 4.0)}, {"noise_hu": -1.0}, {"blur_sigma_mm": float("nan")},
                                    {"shape": (4, 64, 64)}, {"shape": (24, 16, 64)}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(InputError):
        smallbowel_ct(**{**SMALL, **kwargs})
