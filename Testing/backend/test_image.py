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


def test_messages_show_plain_numbers_not_numpy_reprs():
    from lesionseg.image import as_vector3, fmt_num, fmt_vec

    assert fmt_vec((np.float64(0.0), np.float64(12.5), np.int64(3))) == "(0, 12.5, 3)"
    assert fmt_vec(np.array([[1.0, 0.0], [-0.0, 2.123456]])) == "(1, 0; 0, 2.1235)"
    assert fmt_num(np.float32(np.nan)) == "nan" and fmt_num(1e9) == "1000000000" and fmt_num("x") == "'x'"
    with pytest.raises(InputError) as bad_spacing:
        Image(np.zeros((2, 2, 2)), spacing=np.array([1.0, 0.0, 2.5]))
    assert str(bad_spacing.value) == "spacing must be positive, got (1, 0, 2.5) mm"
    with pytest.raises(InputError) as bad_crop:
        Image(np.zeros((6, 12, 16))).crop(np.array([0, 0, 0]), np.array([16, 1, 1]))
    assert str(bad_crop.value) == "crop (0, 0, 0)..(16, 1, 1) (i, j, k) is not inside the image of (16, 12, 6) voxels"
    with pytest.raises(InputError) as bad_vector:
        as_vector3(np.array([np.nan, 1.0, 2.0]), "origin")
    assert str(bad_vector.value) == "origin must be three finite numbers, got (nan, 1, 2)"
    with pytest.raises(InputError, match="three finite numbers"):
        as_vector3("abc", "origin")


@pytest.mark.parametrize("value, got", [
    (np.zeros((4, 4, 4)), "numpy.ndarray of shape (4, 4, 4)"),
    ("ct.nii.gz", "str 'ct.nii.gz'"),
    (None, "NoneType"),
])
def test_require_image_says_what_is_expected(value, got):
    from pathlib import Path

    from lesionseg.image import require_image

    with pytest.raises(InputError) as caught:
        require_image(value, "write_image")
    assert str(caught.value) == ("write_image expects a lesionseg.Image (read one with lesionseg.read_image(path), "
                                 "or wrap an array: lesionseg.Image(array, spacing, origin, direction)); got " + got)
    with pytest.raises(InputError, match=r"got pathlib\.\w*Path 'ct\.nii\.gz'"):
        require_image(Path("ct.nii.gz"), "write_image")
    image = Image(np.zeros((1, 2, 2)))
    assert require_image(image, "write_image") is image


def test_grid_mismatch_lists_only_the_differences(oblique_image):
    from lesionseg.image import check_same_grid, describe_grid, grid_mismatch

    moved = Image(np.zeros((6, 12, 17)), (0.7, 0.9, 2.5), (-120.5, 33.25, 411.0))
    reference = Image(np.zeros((6, 12, 16)), (0.7, 0.9, 2.5), (-120.5, 33.25, 410.0))
    assert grid_mismatch(moved, reference) == ("shape (K, J, I) (6, 12, 17) vs (6, 12, 16); "
                                               "origin (-120.5, 33.25, 411) vs (-120.5, 33.25, 410) mm")
    assert grid_mismatch(reference, reference) == ""
    assert describe_grid(reference) == ("shape (K, J, I) (6, 12, 16), spacing (0.7, 0.9, 2.5) mm, "
                                         "origin (-120.5, 33.25, 410) mm")
    assert "direction (" in describe_grid(oblique_image) and "direction (" in grid_mismatch(oblique_image, reference)
    with pytest.raises(InputError) as caught:
        check_same_grid(moved, reference, "the mask m.nii.gz", "the image ct.nii.gz")
    assert str(caught.value).startswith("the mask m.nii.gz is on another grid than the image ct.nii.gz (shape")
    check_same_grid(reference, reference, "a", "b")
