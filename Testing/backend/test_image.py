from __future__ import annotations

import numpy as np
import pytest

from lesionseg import Image, InputError


def test_2d_array_is_one_slice():
    img = Image(np.zeros((4, 5)), (0.5, 0.5, 1.0))
    assert img.shape == (1, 4, 5)
    assert img.size_ijk.tolist() == [5, 4, 1]


@pytest.mark.parametrize("array", [np.zeros((2, 3, 4, 5)), np.zeros((0, 3, 4)), np.zeros(7)])
def test_bad_arrays_raise(array):
    with pytest.raises(InputError):
        Image(array)


@pytest.mark.parametrize("kwargs", [{"spacing": (1, 0, 1)}, {"spacing": (1, 1)}, {"origin": (0, np.nan, 0)},
                                    {"direction": np.zeros((3, 3))}])
def test_bad_geometry_raises(kwargs):
    with pytest.raises(InputError):
        Image(np.zeros((2, 2, 2)), **kwargs)


def test_index_to_world_matrix(oblique_image):
    ijk = np.array([3.0, 5.0, 2.0, 1.0])
    expected = oblique_image.origin + oblique_image.direction @ (oblique_image.spacing * ijk[:3])
    np.testing.assert_allclose(oblique_image.index_to_world @ ijk, [*expected, 1.0])


def test_crop_keeps_world_position(oblique_image):
    sub = oblique_image.crop((2, 3, 1), (9, 10, 4))
    assert sub.shape == (4, 8, 8)
    np.testing.assert_array_equal(sub.array, oblique_image.array[1:5, 3:11, 2:10])
    world_of_sub_origin = oblique_image.index_to_world @ np.array([2, 3, 1, 1.0])
    np.testing.assert_allclose(sub.origin, world_of_sub_origin[:3])
    with pytest.raises(InputError):
        oblique_image.crop((0, 0, 0), (16, 1, 1))


def test_with_array_and_same_grid(oblique_image):
    lab = oblique_image.with_array(np.ones(oblique_image.shape, np.uint8))
    assert lab.same_grid(oblique_image)
    with pytest.raises(InputError):
        oblique_image.with_array(np.ones((1, 2, 3)))
    moved = Image(oblique_image.array, oblique_image.spacing, oblique_image.origin + 1, oblique_image.direction)
    assert not moved.same_grid(oblique_image)


def test_check_finite():
    arr = np.zeros((2, 2, 2), np.float32)
    arr[1, 1, 1] = np.inf
    with pytest.raises(InputError, match="1 NaN or infinite"):
        Image(arr).check_finite()
    Image(np.zeros((2, 2, 2), np.int16)).check_finite()
