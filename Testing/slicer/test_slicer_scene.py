"""LesionSegLib.scene: RAS <-> LPS geometry with known matrices, ROI -> box, round trips through the backend."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from LesionSegLib import scene

from lesionseg import Box, Image, InputError, LesionSegWarning
from lesionseg.geometry import box_to_index, world_to_index


def rotation(axis: int, deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    a, b = [i for i in range(3) if i != axis]
    rot = np.eye(3)
    rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
    return rot


OBLIQUE = rotation(2, 30.0) @ rotation(0, 12.0)
SPACING = np.array([0.7, 0.9, 2.5])
ORIGIN_RAS = np.array([-120.5, 33.25, 410.0])


def oblique_ijk_to_ras() -> np.ndarray:
    mat = np.eye(4)
    mat[:3, :3] = OBLIQUE * SPACING
    mat[:3, 3] = ORIGIN_RAS
    return mat


def test_ras_to_lps_flips_x_and_y_only():
    np.testing.assert_array_equal(scene.ras_to_lps([1.5, -2.0, 3.0]), [-1.5, 2.0, 3.0])
    pts = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]])
    np.testing.assert_array_equal(scene.ras_to_lps(pts), [[-1.0, -2.0, 3.0], [4.0, -5.0, -6.0]])
    np.testing.assert_array_equal(scene.lps_to_ras(scene.ras_to_lps(pts)), pts)
    np.testing.assert_array_equal(pts, [[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]])  # input untouched
    with pytest.raises(InputError):
        scene.ras_to_lps([1.0, 2.0])


def test_geometry_of_oblique_anisotropic_matrix():
    spacing, origin, direction = scene.geometry_from_ijk_to_ras(oblique_ijk_to_ras())
    np.testing.assert_allclose(spacing, SPACING, atol=1e-12)
    np.testing.assert_allclose(origin, [120.5, -33.25, 410.0], atol=1e-12)
    np.testing.assert_allclose(direction, np.diag([-1.0, -1.0, 1.0]) @ OBLIQUE, atol=1e-12)


def test_axis_aligned_dicom_like_volume_has_identity_lps_direction():
    ijk_to_ras = np.diag([-0.8, -0.8, 2.0, 1.0])
    ijk_to_ras[:3, 3] = (100.0, 120.0, -50.0)
    spacing, origin, direction = scene.geometry_from_ijk_to_ras(ijk_to_ras)
    np.testing.assert_array_equal(spacing, [0.8, 0.8, 2.0])
    np.testing.assert_array_equal(origin, [-100.0, -120.0, -50.0])
    np.testing.assert_array_equal(direction, np.eye(3))


def test_voxel_positions_round_trip_through_backend_geometry():
    ijk_to_ras = oblique_ijk_to_ras()
    image = scene.image_from_volume_array(np.zeros((6, 12, 16), np.int16), ijk_to_ras)
    np.testing.assert_allclose(scene.ijk_to_ras_from_image(image), ijk_to_ras, atol=1e-12)
    ijk = np.array([[0, 0, 0], [15, 11, 5], [3.5, 7.25, 2.0], [-1.0, 20.0, 9.0]])
    ras = (ijk_to_ras @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
    np.testing.assert_allclose(world_to_index(image, scene.ras_to_lps(ras)), ijk, atol=1e-9)


def test_linear_parent_transform_is_composed():
    to_world = np.eye(4)
    to_world[:3, :3] = rotation(1, 20.0)
    to_world[:3, 3] = (5.0, -7.0, 11.0)
    image = scene.image_from_volume_array(np.zeros((2, 3, 4)), oblique_ijk_to_ras(), to_world)
    np.testing.assert_allclose(scene.ijk_to_ras_from_image(image), to_world @ oblique_ijk_to_ras(), atol=1e-12)


@pytest.mark.parametrize("bad", [
    np.diag([1.0, 1.0, 0.0, 1.0]),                                  # zero spacing
    np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),  # sheared
    np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]),    # not affine
    np.full((3, 3), 1.0),                                           # wrong shape
])
def test_bad_geometry_raises(bad):
    with pytest.raises(InputError):
        scene.geometry_from_ijk_to_ras(bad)


def test_axis_aligned_roi_to_box_exact():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        box = scene.roi_to_box([10.0, 20.0, 30.0], [4.0, 6.0, 8.0], np.eye(3))
    np.testing.assert_array_equal(box.lo, [-12.0, -23.0, 26.0])
    np.testing.assert_array_equal(box.hi, [-8.0, -17.0, 34.0])
    centre, size = scene.box_to_roi(box)
    np.testing.assert_array_equal(centre, [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(size, [4.0, 6.0, 8.0])


def test_flipped_axes_are_still_axis_aligned():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        box = scene.roi_to_box([0.0, 0.0, 0.0], [2.0, 4.0, 6.0], np.diag([-1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(box.hi - box.lo, [2.0, 4.0, 6.0])


def test_rotated_roi_gives_bounding_box_with_warning():
    with pytest.warns(LesionSegWarning, match="rotated"):
        box = scene.roi_to_box([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], rotation(2, 45.0))
    half = np.sqrt(2.0)
    np.testing.assert_allclose(box.lo, [-1.0 - half, -2.0 - half, 2.0], atol=1e-12)
    np.testing.assert_allclose(box.hi, [-1.0 + half, -2.0 + half, 4.0], atol=1e-12)


def test_roi_axes_are_normalised_and_flat_roi_is_allowed():
    box = scene.roi_to_box([0.0, 0.0, 0.0], [10.0, 10.0, 0.0], np.eye(3) * 3.0)
    np.testing.assert_array_equal(box.hi - box.lo, [10.0, 10.0, 0.0])


@pytest.mark.parametrize("size", [[0.0, 0.0, 5.0], [0.0, 0.0, 0.0], [-1.0, 2.0, 2.0], [np.nan, 1.0, 1.0]])
def test_roi_without_extent_raises(size):
    with pytest.raises(InputError):
        scene.roi_to_box([0.0, 0.0, 0.0], size)


def test_roi_selects_expected_voxels_in_backend():
    """An RAS ROI spanning voxel centres 2..5 (i), 1..3 (j), 0..1 (k) selects exactly those voxels."""
    ijk_to_ras = np.diag([-1.0, -1.0, 2.0, 1.0])
    ijk_to_ras[:3, 3] = (10.0, 20.0, -4.0)
    image = scene.image_from_volume_array(np.zeros((4, 8, 8), np.int16), ijk_to_ras)
    lo_ras = (ijk_to_ras @ [2, 1, 0, 1])[:3]
    hi_ras = (ijk_to_ras @ [5, 3, 1, 1])[:3]
    box = scene.roi_to_box((lo_ras + hi_ras) / 2, np.abs(hi_ras - lo_ras))
    index_box = box_to_index(image, box)
    np.testing.assert_array_equal(index_box.lo, [2, 1, 0])
    np.testing.assert_array_equal(index_box.hi, [5, 3, 1])


def test_line_to_recist():
    line = scene.line_to_recist([[1.0, 2.0, 3.0], [11.0, 2.0, 3.0]], [[6.0, -1.0, 3.0], [6.0, 5.0, 3.0]])
    np.testing.assert_array_equal(line.long_start, [-1.0, -2.0, 3.0])
    np.testing.assert_array_equal(line.long_end, [-11.0, -2.0, 3.0])
    np.testing.assert_array_equal(line.short_start, [-6.0, 1.0, 3.0])
    assert line.long_length_mm == 10.0 and line.short_length_mm == 6.0
    assert scene.line_to_recist([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).short_start is None
    with pytest.raises(InputError):
        scene.line_to_recist([[0.0, 0.0, 0.0]])
    with pytest.raises(InputError):
        scene.line_to_recist([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_roi_for_axial_slice_view():
    ijk_to_ras = np.diag([-0.8, -0.8, 2.5, 1.0])
    slice_to_ras = np.eye(4)
    slice_to_ras[:3, 3] = (12.0, -30.0, 47.5)
    centre, size, axes = scene.roi_for_slice_view(slice_to_ras, [200.0, 160.0, 1.0], ijk_to_ras)
    np.testing.assert_array_equal(centre, [12.0, -30.0, 47.5])
    np.testing.assert_allclose(size, [40.0, 40.0, 7.5])
    assert np.linalg.det(axes) > 0
    np.testing.assert_allclose(np.abs(axes), np.eye(3))
    box = scene.roi_to_box(centre, size, axes)  # voxel-aligned: no rotation warning
    np.testing.assert_allclose(box.hi - box.lo, [40.0, 40.0, 7.5])


def test_roi_for_sagittal_view_is_thin_along_i():
    ijk_to_ras = np.diag([0.5, 1.0, 1.5, 1.0])
    sagittal = np.zeros((4, 4))
    sagittal[:3, :3] = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]  # slice normal = R axis
    sagittal[3, 3] = 1.0
    _, size, _ = scene.roi_for_slice_view(sagittal, [100.0, 100.0, 1.0], ijk_to_ras, slices=4)
    np.testing.assert_allclose(size, [2.0, 25.0, 25.0])


def test_roi_for_slice_view_rejects_empty_view():
    with pytest.raises(InputError):
        scene.roi_for_slice_view(np.eye(4), [0.0, 0.0, 1.0], np.eye(4))


def test_image_keeps_array_and_meta():
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    image = scene.image_from_volume_array(arr, np.eye(4), meta={"name": "ct"})
    assert isinstance(image, Image) and image.shape == (2, 3, 4) and image.meta == {"name": "ct"}
    assert isinstance(scene.roi_to_box([0, 0, 0], [1, 1, 1]), Box)
