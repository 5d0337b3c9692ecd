from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import InputError
from lesionseg.geometry import index_to_world, world_to_index
from lesionseg.phantoms import Canvas, Grid, abdomen_ct, blur_mm, chest_ct, ellipsoid, lobulated, tube

BUILDERS = {"chest": chest_ct, "abdomen": abdomen_ct}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def phantom(request):
    return request.param, BUILDERS[request.param](seed=3)


def test_same_seed_identical_other_seed_different():
    for build in BUILDERS.values():
        a, b, c = build(seed=5), build(seed=5), build(seed=6)
        np.testing.assert_array_equal(a[0].array, b[0].array)
        np.testing.assert_array_equal(a[1].array, b[1].array)
        assert a[2] == b[2]
        assert not np.array_equal(a[0].array, c[0].array)
        assert not np.array_equal(a[1].array, c[1].array)


def test_geometry_types_and_json(phantom):
    _, (image, label, info) = phantom
    assert image.array.dtype == np.int16 and label.array.dtype == np.uint8
    assert image.shape == (40, 160, 160) and label.same_grid(image)
    np.testing.assert_allclose(image.spacing, (0.8, 0.8, 2.5))
    assert np.all(np.abs(image.origin) > 1.0)
    assert set(np.unique(label.array)) == {0, 1}
    json.dumps(info, allow_nan=False)
    np.testing.assert_allclose(info["origin"], image.origin)


def test_hu_ranges(phantom):
    name, (image, label, info) = phantom
    hu = image.array
    assert hu.min() >= -1024 and 600 < hu.max() < 1000  # bone about 700 HU
    corners = hu[:, :6, :6]
    assert abs(float(np.median(corners)) + 1000) < 30 and 10 < corners.std() < 20  # air with noise
    centre = hu[:, 75:85, 75:85]
    assert -150 < float(np.median(centre)) < 100  # soft tissue, not air or bone
    if name == "chest":
        assert np.count_nonzero((hu > -900) & (hu < -800)) > 0.1 * hu.size  # lungs


def lesion_masks(label, info) -> list[np.ndarray]:
    """The 18-connected component of ``label`` holding each lesion's ``centre_lps``, in ``info`` order;
    checks that every component belongs to exactly one lesion."""
    parts, n = ndimage.label(label.array > 0, ndimage.generate_binary_structure(3, 2))
    numbers = []
    for record in info["lesions"]:
        i, j, k = np.rint(world_to_index(label, [record["centre_lps"]])[0]).astype(int)
        numbers.append(parts[k, j, i])
    assert sorted(numbers) == list(range(1, n + 1))
    return [parts == number for number in numbers]


def test_lesions_inside_their_organ(phantom):
    name, (image, label, info) = phantom
    masks = lesion_masks(label, info)
    assert len(masks) >= 1
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    for lesion, record in zip(masks, info["lesions"]):
        shell = ndimage.binary_dilation(lesion, in_plane, iterations=3) & ~lesion
        around = float(np.median(image.array[shell]))
        if name == "chest":
            assert record["organ"] in ("lung_left", "lung_right")
            # partial volume with the -850 HU lung darkens small nodules (a 6 mm nodule spans two
            # 2.5 mm slices), so compare with the surrounding lung rather than with the nodule's 0-80 HU
            inside = image.array[lesion]
            assert around < -700 and np.median(inside) - around > 400 and inside.max() < 250
        else:
            inside = float(np.median(image.array[lesion]))
            assert record["organ"] == "liver"
            assert 35 < around < 85  # liver parenchyma, 60 HU
            assert inside < 50 if record["kind"] == "hypodense" else inside > 75


def test_info_boxes_and_centres_hold_the_lesions(phantom):
    _, (image, label, info) = phantom
    for record in info["lesions"]:
        lo, hi = np.array(record["box_lps"])
        ijk_lo, ijk_hi = np.array(record["box_ijk"])
        lesion = np.zeros(label.shape, bool)
        lesion[ijk_lo[2]:ijk_hi[2] + 1, ijk_lo[1]:ijk_hi[1] + 1, ijk_lo[0]:ijk_hi[0] + 1] = True
        lesion &= label.array > 0
        assert lesion.sum() * image.voxel_volume_ml == pytest.approx(record["volume_ml"], abs=1e-4)
        world = index_to_world(label, np.argwhere(lesion)[:, ::-1])
        assert np.all(world >= lo - 1e-6) and np.all(world <= hi + 1e-6)
        centre = np.rint(world_to_index(label, [record["centre_lps"]])[0]).astype(int)
        assert label.array[centre[2], centre[1], centre[0]] == 1
        assert 0.5 * 5.0 <= record["diameter_mm"] <= 30.0


def test_direction_and_origin_arguments():
    t = np.deg2rad(20.0)
    direction = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    plain = chest_ct(seed=2, shape=(12, 96, 96))
    turned = chest_ct(seed=2, shape=(12, 96, 96), origin=(10.0, -20.0, 30.0), direction=direction)
    np.testing.assert_array_equal(plain[0].array, turned[0].array)  # anatomy is drawn in grid mm
    np.testing.assert_allclose(turned[0].direction, direction)
    np.testing.assert_allclose(turned[0].origin, (10.0, -20.0, 30.0))
    for record in turned[2]["lesions"]:
        lo, hi = np.array(record["box_lps"])
        ijk_lo, ijk_hi = np.array(record["box_ijk"])
        corners = index_to_world(turned[1], np.array([ijk_lo, ijk_hi]))
        assert np.all(corners >= lo - 1e-6) and np.all(corners <= hi + 1e-6)


def test_single_slice_phantom_and_counts():
    image, label, info = abdomen_ct(seed=1, shape=(1, 128, 128), n_lesions=3)
    assert image.shape == (1, 128, 128) and len(lesion_masks(label, info)) == 3
    _, label0, info0 = chest_ct(seed=1, n_nodules=0)
    assert info0["lesions"] == [] and not label0.array.any()


def test_bad_arguments_raise():
    with pytest.raises(InputError, match="shape"):
        chest_ct(shape=(4, 16, 160))
    with pytest.raises(InputError):
        abdomen_ct(n_lesions=-1)
    with pytest.raises(InputError):
        chest_ct(diameter_mm=(20.0, 10.0))
    with pytest.raises(InputError, match="spacing"):
        chest_ct(spacing=(0.8, 0.0, 2.5))
    canvas = Canvas(Grid.create((4, 32, 32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), np.random.default_rng(0))
    canvas.paint(ellipsoid(canvas.grid, (0.0, 0.0, 0.0), (10.0, 10.0, 10.0)), 60.0, "organ")
    with pytest.raises(InputError, match="shape"):
        canvas.place_lesion("organ", 5.0, 20.0, kind="lesion", shape="cube")


def test_shape_helpers_exact():
    grid = Grid.create((11, 41, 41), (0.5, 0.5, 1.0), (0.0, 0.0, 0.0))
    ball = ellipsoid(grid, (0.0, 0.0, 0.0), (5.0, 5.0, 5.0)).full(grid.shape)
    k, j, i = np.indices(grid.shape)
    expected = ((i - 20) * 0.5) ** 2 + ((j - 20) * 0.5) ** 2 + (k - 5.0) ** 2 <= 25.0
    np.testing.assert_array_equal(ball, expected)
    rod = tube(grid, np.array([[-5.0, 0.0, 0.0], [5.0, 0.0, 0.0]]), 1.0).full(grid.shape)
    x = np.clip((i - 20) * 0.5, -5.0, 5.0)  # nearest point on the segment, then the distance to it
    np.testing.assert_array_equal(rod, ((i - 20) * 0.5 - x) ** 2 + ((j - 20) * 0.5) ** 2 + (k - 5.0) ** 2 <= 1.0)
    assert rod[5, 20, 8:33].all() and rod[5, 22, 10:31].all() and not rod[5, 23, :].any()
    blob = lobulated(grid, (0.0, 0.0, 0.0), 4.0, np.random.default_rng(0)).full(grid.shape)
    inside = ((i - 20) * 0.5) ** 2 + ((j - 20) * 0.5) ** 2 + (k - 5.0) ** 2 <= 16.0 + 1e-9
    assert blob[5, 20, 20] and not np.any(blob & ~inside)
    step = np.zeros((1, 1, 9), np.float32)
    step[..., 4:] = 1.0
    smooth = blur_mm(step, (0.5, 1.0, 1.0), 0.5)
    assert smooth[0, 0, 3] == pytest.approx(1 - smooth[0, 0, 4], abs=1e-6) and 0 < smooth[0, 0, 3] < 0.5
