from __future__ import annotations

import warnings

import numpy as np
import pytest

from lesionseg import Box, Image, InputError, LesionSegWarning, RecistLine
from lesionseg.geometry import (box_to_index, index_box_to_world, index_to_world, recist_to_index,
                                world_to_index)


def test_world_index_round_trip_oblique(oblique_image):
    rng = np.random.default_rng(1)
    ijk = rng.uniform(-5, 20, size=(50, 3))
    world = index_to_world(oblique_image, ijk)
    np.testing.assert_allclose(world_to_index(oblique_image, world), ijk, atol=1e-9)


def test_known_voxel_position():
    img = Image(np.zeros((3, 4, 5)), (0.5, 2.0, 3.0), (10.0, 20.0, 30.0), np.diag([-1.0, 1.0, 1.0]))
    np.testing.assert_allclose(index_to_world(img, [[2, 1, 1]]), [[9.0, 22.0, 33.0]])


def test_index_box_round_trip(oblique_image):
    box = index_box_to_world(oblique_image, [2, 3, 1], [9, 7, 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LesionSegWarning)
        ib = box_to_index(oblique_image, box)
    # on an oblique grid the axis-aligned LPS box covers at least the requested voxels
    assert np.all(ib.lo <= [2, 3, 1]) and np.all(ib.hi >= [9, 7, 4])
    axis = Image(np.zeros((6, 12, 16)), (0.7, 0.9, 2.5), (-120.5, 33.25, 410.0))
    ib = box_to_index(axis, index_box_to_world(axis, [2, 3, 1], [9, 7, 4]))
    assert ib.lo.tolist() == [2, 3, 1] and ib.hi.tolist() == [9, 7, 4]
    assert ib.slices == (slice(1, 5), slice(3, 8), slice(2, 10))


def test_one_voxel_index_box_is_a_valid_box():
    """``--box-ijk 5 5 5 5 5 5``: indices are inclusive, so one voxel is a box of one voxel's size."""
    img = Image(np.zeros((8, 10, 12)), (0.7, 0.9, 2.5), (-120.5, 33.25, 410.0))
    box = index_box_to_world(img, [5, 5, 5], [5, 5, 5])
    np.testing.assert_allclose(box.hi - box.lo, img.spacing)
    np.testing.assert_allclose((box.lo + box.hi) / 2, index_to_world(img, [[5, 5, 5]])[0])
    ib = box_to_index(img, box)
    assert ib.lo.tolist() == ib.hi.tolist() == [5, 5, 5]


def test_index_box_round_trip_is_exact_on_axis_aligned_grids():
    rng = np.random.default_rng(2)
    flips = np.diag([-1.0, 1.0, -1.0])  # axis-aligned but flipped axes (e.g. RAS-stored volumes)
    for direction in (np.eye(3), flips):
        img = Image(np.zeros((7, 13, 11)), (0.7, 0.9, 2.5), (-120.5, 33.25, 410.0), direction)
        for _ in range(50):
            a, b = rng.integers(0, img.size_ijk), rng.integers(0, img.size_ijk)
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # never "partly outside", even for the edge voxels
                ib = box_to_index(img, index_box_to_world(img, lo, hi))
            assert ib.lo.tolist() == lo.tolist() and ib.hi.tolist() == hi.tolist()


def test_index_box_refuses_reversed_corners_and_zero_size_message_is_plain():
    img = Image(np.zeros((5, 10, 10)))
    with pytest.raises(InputError, match=r"voxel box \(4, 2, 2\)\.\.\(3, 5, 5\) \(i, j, k\) ends before it starts"):
        index_box_to_world(img, [4, 2, 2], [3, 5, 5])
    with pytest.raises(InputError) as caught:
        box_to_index(img, Box(np.array([2.0, 2.0, 2.0]), np.array([2.0, 2.0, 4.0])))
    assert str(caught.value) == "the box has zero size (extent (0, 0, 2) mm along x, y, z)"


def test_box_partly_outside_clips_and_warns():
    img = Image(np.zeros((5, 10, 10)))
    with pytest.warns(LesionSegWarning, match="partly outside"):
        ib = box_to_index(img, Box((-3, 2, 1), (4, 12, 3)))
    assert ib.lo.tolist() == [0, 2, 1] and ib.hi.tolist() == [4, 9, 3]


def test_box_outside_and_zero_size_raise():
    img = Image(np.zeros((5, 10, 10)))
    with pytest.raises(InputError, match="entirely outside"):
        box_to_index(img, Box((20, 20, 1), (30, 30, 3)))
    with pytest.raises(InputError, match="zero size"):
        box_to_index(img, Box((2, 2, 2), (2, 2, 4)))


def test_flat_box_selects_one_slice():
    img = Image(np.zeros((5, 10, 10)), (1, 1, 2.0))
    ib = box_to_index(img, Box((1, 1, 4.2), (5, 6, 4.2)))
    assert ib.lo[2] == ib.hi[2] == 2


def test_recist_to_index_and_errors():
    img = Image(np.zeros((5, 20, 20)), (1, 1, 2.0))
    r = recist_to_index(img, RecistLine((2, 10, 4), (12, 10, 4), (7, 6, 4), (7, 14, 4)))
    assert r.k == 2
    np.testing.assert_allclose(r.long, [[2, 10], [12, 10]])
    with pytest.raises(InputError, match="zero length"):
        RecistLine((1, 1, 1), (1, 1, 1))
    with pytest.raises(InputError, match="outside"):
        recist_to_index(img, RecistLine((2, 10, 4), (40, 10, 4)))
    with pytest.raises(InputError, match="different slices"):
        recist_to_index(img, RecistLine((2, 10, 4), (12, 10, 4), (7, 6, 8), (7, 14, 8)))
    with pytest.warns(LesionSegWarning, match="does not cross"):
        recist_to_index(img, RecistLine((2, 10, 4), (12, 10, 4), (15, 6, 4), (15, 14, 4)))
    with pytest.warns(LesionSegWarning, match="not on an axial slice"):
        recist_to_index(img, RecistLine((2, 10, 2), (12, 10, 6)))
