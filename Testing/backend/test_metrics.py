from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import Image, InputError, RecistLine
from lesionseg.geometry import recist_to_index, world_to_index
from lesionseg.metrics import (RECIST_PERPENDICULAR_TOLERANCE_DEG, assd, dice, dice_global, dice_per_case,
                               evaluate, false_negative_volume, false_positive_volume, hd95, lesion_components,
                               lesion_sensitivity, per_lesion_dice, precision, recall, recist_axes,
                               surface_distances, volume_ml, volumetric_similarity)

SPACING = (0.5, 0.8, 2.0)  # one voxel = 0.8 mm^3 = 0.0008 mL
ORIGIN = (-40.0, 12.5, 300.0)


def grid(shape=(10, 12, 14), spacing=SPACING, direction=None) -> Image:
    return Image(np.zeros(shape, np.uint8), spacing, ORIGIN, np.eye(3) if direction is None else direction)


def mask(ref: Image, *boxes) -> Image:
    """A label image on ``ref``'s grid with ones in the given ``[k, j, i]`` index expressions."""
    arr = np.zeros(ref.shape, np.uint8)
    for box in boxes:
        arr[box] = 1
    return ref.with_array(arr)


CUBE = np.s_[2:6, 2:6, 2:6]
SHIFTED = np.s_[2:6, 2:6, 3:7]  # one voxel along i: intersection 4 * 4 * 3 = 48 of 64 + 64


def test_overlapping_cubes_exact():
    ref = grid()
    p, g = mask(ref, CUBE), mask(ref, SHIFTED)
    assert dice(p, g) == 0.75
    assert recall(p, g) == precision(p, g) == 0.75
    assert volumetric_similarity(p, g) == 1.0
    assert volume_ml(p) == pytest.approx(64 * 0.0008, abs=1e-12)
    bigger = mask(ref, np.s_[2:6, 2:6, 2:10])  # 128 voxels, contains the 64 of CUBE
    assert volumetric_similarity(p, bigger) == pytest.approx(1 - 64 / 192)
    assert recall(p, bigger) == 0.5 and precision(p, bigger) == 1.0


def test_empty_conventions():
    ref = grid()
    empty, cube = mask(ref), mask(ref, CUBE)
    assert dice(empty, empty) == 1.0 and dice(empty, cube) == 0.0
    assert hd95(empty, empty) == 0.0 and assd(empty, empty) == 0.0
    assert hd95(empty, cube) == math.inf and assd(cube, empty) == math.inf
    assert math.isnan(recall(cube, empty)) and math.isnan(precision(empty, cube))
    assert volumetric_similarity(empty, empty) == 1.0
    assert math.isnan(lesion_sensitivity(cube, empty))
    assert per_lesion_dice(cube, empty) == []


def test_global_and_per_case_dice():
    ref = grid()
    pairs = [(mask(ref, CUBE), mask(ref, SHIFTED)), (mask(ref), mask(ref, np.s_[8, 8, 8:12]))]
    # global: 2 * 48 / (64 + 64 + 0 + 4); per case: 0.75 and 0.0
    assert dice_global(pairs) == pytest.approx(96 / 132)
    assert dice_per_case(pairs) == [0.75, 0.0]
    assert dice_global([(mask(ref), mask(ref))]) == 1.0
    with pytest.raises(InputError):
        dice_global([])


def test_different_grids_raise():
    ref = grid()
    cube = mask(ref, CUBE)
    moved = Image(cube.array, SPACING, (0.0, 0.0, 0.0))
    other_spacing = Image(cube.array, (0.5, 0.8, 2.5), ORIGIN)
    for other in (moved, other_spacing, Image(np.zeros((10, 12, 15), np.uint8), SPACING, ORIGIN)):
        with pytest.raises(InputError, match="the prediction is on another grid than the ground truth"):
            dice(cube, other)
        with pytest.raises(InputError, match="on another grid"):
            evaluate(cube, other)
    with pytest.raises(InputError) as caught:
        evaluate(cube, moved)
    assert str(caught.value) == ("the prediction is on another grid than the ground truth (origin (-40, 12.5, 300) "
                                 "vs (0, 0, 0) mm); resample it onto that grid first")
    with pytest.raises(InputError, match=r"spacing \(0\.5, 0\.8, 2\) vs \(0\.5, 0\.8, 2\.5\) mm"):
        dice(cube, other_spacing)
    with pytest.raises(InputError, match=r"metrics \(prediction\) expects a lesionseg\.Image .* got numpy\.ndarray"):
        hd95(cube.array, cube)
    with pytest.raises(InputError, match="margin_mm must be a number >= 0 \\(mm\\), got -1.5"):
        per_lesion_dice(cube, cube, margin_mm=np.float64(-1.5))


def diagonal_case() -> tuple[Image, Image]:
    """Ground truth: lesion A (2x2x2 at k,j,i 1..2) and lesion B (one voxel, far away).

    Prediction (k, j, i): (1,1,1) inside A with an edge-diagonal neighbour (0,0,1) outside A (joined to
    it by 18- and 26-connectivity, not by 6); (2,2,2) inside A with a corner-diagonal neighbour (3,3,3)
    outside A (joined by 26-connectivity only); a separate 3-voxel false positive.
    """
    ref = grid()
    gt = mask(ref, np.s_[1:3, 1:3, 1:3], np.s_[7, 9, 11])
    pred = mask(ref, np.s_[1, 1, 1], np.s_[0, 0, 1], np.s_[2, 2, 2], np.s_[3, 3, 3], np.s_[6, 2, 8:11])
    return pred, gt


def test_false_positive_and_negative_volumes_autopet():
    pred, gt = diagonal_case()
    v = 0.0008
    # 18-connected: {(1,1,1), (0,0,1)} and {(2,2,2)} touch A; {(3,3,3)} and the 3-voxel run do not
    assert false_positive_volume(pred, gt) == pytest.approx(4 * v)
    assert false_positive_volume(pred, gt, connectivity=6) == pytest.approx(5 * v)
    assert false_positive_volume(pred, gt, connectivity=26) == pytest.approx(3 * v)
    # B (1 voxel) is missed; A is hit
    assert false_negative_volume(pred, gt) == pytest.approx(1 * v)
    assert lesion_sensitivity(pred, gt) == 0.5
    assert false_positive_volume(gt, gt) == 0.0 and false_negative_volume(gt, gt) == 0.0


def test_false_negative_diagonal_lesion():
    ref = grid()
    # a ground-truth lesion of two edge-diagonal voxels; the prediction hits only one of them
    gt = mask(ref, np.s_[4, 4, 4], np.s_[5, 5, 4])
    pred = mask(ref, np.s_[4, 4, 4])
    assert false_negative_volume(pred, gt) == 0.0
    assert false_negative_volume(pred, gt, connectivity=6) == pytest.approx(0.0008)
    assert lesion_sensitivity(pred, gt) == 1.0 and lesion_sensitivity(pred, gt, connectivity=6) == 0.5


def test_lesion_components_connectivity():
    pred, _ = diagonal_case()
    counts = {c: lesion_components(pred, c)[1] for c in (6, 18, 26)}
    assert counts == {6: 5, 18: 4, 26: 2}
    labels, _ = lesion_components(pred)
    assert labels.same_grid(pred) and labels.array[1, 1, 1] == labels.array[0, 0, 1] > 0
    with pytest.raises(InputError, match="connectivity"):
        lesion_components(pred, 8)


def test_per_lesion_dice_local_box():
    ref = grid((10, 30, 30), spacing=(1.0, 1.0, 1.0))
    gt = mask(ref, np.s_[2:4, 2:6, 2:6], np.s_[5:7, 20:24, 20:24])  # 32 voxels each
    # lesion 1 exact plus a far-away false positive, lesion 2 half covered
    pred = mask(ref, np.s_[2:4, 2:6, 2:6], np.s_[5:7, 20:24, 20:22], np.s_[2:4, 20:24, 2:6])
    scores = per_lesion_dice(pred, gt, margin_mm=3.0)
    assert [s.lesion for s in scores] == [1, 2]
    assert scores[0].dice == 1.0
    assert scores[1].dice == pytest.approx(2 * 16 / (32 + 16))
    assert scores[0].volume_ml == pytest.approx(0.032)
    np.testing.assert_allclose(scores[0].centre_lps, np.array(ORIGIN) + [3.5, 3.5, 2.5])
    # a false positive inside the box counts; a neighbouring lesion's voxels in the box do not
    near = mask(ref, np.s_[2:4, 2:6, 2:6], np.s_[2:4, 2:6, 8])
    assert per_lesion_dice(near, gt, margin_mm=3.0)[0].dice == pytest.approx(64 / 72)
    neighbours = mask(ref, np.s_[2:4, 2:6, 2:6], np.s_[2:4, 2:6, 8])
    assert per_lesion_dice(neighbours, neighbours, margin_mm=3.0)[0].dice == 1.0
    with pytest.raises(InputError):
        per_lesion_dice(pred, gt, margin_mm=-1)


def ball(ref: Image, centre_mm, radius_mm) -> Image:
    k, j, i = np.indices(ref.shape)
    pos = np.stack([i, j, k], -1) * ref.spacing
    return ref.with_array((np.linalg.norm(pos - centre_mm, axis=-1) <= radius_mm).astype(np.uint8))


def test_single_voxels_hd95_exact():
    ref = grid()
    a, b = mask(ref, np.s_[3, 4, 2]), mask(ref, np.s_[3, 4, 7])
    assert hd95(a, b) == pytest.approx(5 * 0.5)
    assert assd(a, b) == pytest.approx(2.5)
    assert hd95(a, a) == 0.0 and assd(a, a) == 0.0


def test_hd95_shifted_sphere():
    ref = grid((24, 40, 48), spacing=(0.8, 0.8, 1.6))
    centre = np.array([18.0, 16.0, 18.0])
    shift = 4.0  # mm along i (5 voxels)
    a, b = ball(ref, centre, 9.0), ball(ref, centre + [shift, 0, 0], 9.0)
    # surface distances of a shifted sphere are shift * |cos(theta)|, uniform on [0, shift]:
    # 95th percentile 0.95 * shift, mean shift / 2
    assert 0.95 * shift - 0.8 <= hd95(a, b) <= shift + 0.8
    assert assd(a, b) == pytest.approx(shift / 2, abs=0.4)
    assert hd95(a, b) == pytest.approx(hd95(b, a))


def test_surface_distances_match_distance_transform():
    """The k-d tree distances equal MONAI's way: distance_transform_edt of the other surface."""
    rng = np.random.default_rng(4)
    ref = grid((9, 14, 16), spacing=(0.6, 0.9, 2.2))
    p = ndimage.binary_opening(rng.random(ref.shape) > 0.5)
    g = ndimage.binary_opening(rng.random(ref.shape) > 0.5)
    pred, gt = ref.with_array(p.astype(np.uint8)), ref.with_array(g.astype(np.uint8))
    to_gt, to_pred = surface_distances(pred, gt)
    surf_p, surf_g = p & ~ndimage.binary_erosion(p), g & ~ndimage.binary_erosion(g)
    np.testing.assert_allclose(to_gt, ndimage.distance_transform_edt(~surf_g, sampling=(2.2, 0.9, 0.6))[surf_p])
    np.testing.assert_allclose(to_pred, ndimage.distance_transform_edt(~surf_p, sampling=(2.2, 0.9, 0.6))[surf_g])
    t = np.deg2rad(50.0)
    oblique = np.array([[np.cos(t), 0.0, -np.sin(t)], [0.0, 1.0, 0.0], [np.sin(t), 0.0, np.cos(t)]])
    turned = grid((9, 14, 16), spacing=(0.6, 0.9, 2.2), direction=oblique)
    np.testing.assert_allclose(surface_distances(turned.with_array(p), turned.with_array(g))[0], to_gt)
    with pytest.raises(InputError, match="non-empty"):
        surface_distances(pred, ref)


def test_surface_distances_2d_image():
    ref = grid((1, 48, 48), spacing=(0.7, 0.7, 5.0))
    a = ball(ref, np.array([16.0, 16.0, 0.0]), 8.0)
    b = ball(ref, np.array([17.4, 16.0, 0.0]), 8.0)  # 2 pixels along i
    # a circle shifted by s: distances s * |cos(theta)|, theta uniform: mean 2 s / pi
    assert assd(a, b) == pytest.approx(2 * 1.4 / np.pi, abs=0.25)
    assert 1.2 <= hd95(a, b) <= 1.4 + 0.7


def ellipse_image(a_mm, b_mm, spacing, angle_deg=0.0, direction=None, slices=3) -> Image:
    """Ellipse with semi-axes ``a_mm`` (rotated ``angle_deg`` from +i) and ``b_mm`` on the middle slice,
    smaller copies on the other slices."""
    ref = grid((slices, 101, 81), spacing=spacing, direction=direction)
    j, i = np.indices(ref.shape[1:])
    x, y = (i - 40) * spacing[0], (j - 50) * spacing[1]
    t = np.deg2rad(angle_deg)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    arr = np.zeros(ref.shape, np.uint8)
    for k in range(slices):
        scale = 1.0 if k == slices // 2 else 0.7
        arr[k] = (u / (scale * a_mm)) ** 2 + (v / (scale * b_mm)) ** 2 <= 1
    return ref.with_array(arr)


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0])
def test_recist_axes_of_ellipse(angle):
    spacing = (0.6, 0.9, 3.0)
    img = ellipse_image(20.0, 12.0, spacing, angle)
    m = recist_axes(img)
    assert m.k == 1
    assert m.long_mm == pytest.approx(40.0, abs=0.9)
    assert m.short_mm == pytest.approx(24.0, abs=0.9)
    long_vec = m.long_endpoints_lps[1] - m.long_endpoints_lps[0]
    short_vec = m.short_endpoints_lps[1] - m.short_endpoints_lps[0]
    # near its ends the boundary is within half a pixel of the circle of radius a over about +-9 degrees,
    # so the long axis direction is only that precise at this resolution
    t = np.deg2rad(angle)
    assert abs(long_vec[:2] @ [np.cos(t), np.sin(t)]) / np.linalg.norm(long_vec) > np.cos(np.deg2rad(10))
    cos_between = abs(long_vec @ short_vec) / (np.linalg.norm(long_vec) * np.linalg.norm(short_vec))
    assert cos_between <= np.sin(np.deg2rad(RECIST_PERPENDICULAR_TOLERANCE_DEG)) + 1e-9
    assert np.all(m.long_endpoints_lps[:, 2] == ORIGIN[2] + 1 * spacing[2])
    np.testing.assert_allclose(m.long_endpoints_lps.mean(axis=0)[:2], np.array(ORIGIN[:2]) + [24.0, 45.0], atol=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the axes cross, so the prompt converts without a warning
        prompt = recist_to_index(img, RecistLine(*m.long_endpoints_lps, *m.short_endpoints_lps))
    assert prompt.k == 1


def test_recist_axes_honour_direction():
    t = np.deg2rad(35.0)
    rotation = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    direction = rotation @ np.diag([-1.0, 1.0, 1.0])
    plain = recist_axes(ellipse_image(15.0, 6.0, (0.5, 0.8, 2.0)))
    img = ellipse_image(15.0, 6.0, (0.5, 0.8, 2.0), direction=direction)
    m = recist_axes(img)
    assert m.long_mm == pytest.approx(plain.long_mm, abs=1e-9)
    assert m.short_mm == pytest.approx(plain.short_mm, abs=1e-9)
    ijk = world_to_index(img, m.long_endpoints_lps)
    np.testing.assert_allclose(ijk[:, 2], 1.0, atol=1e-9)
    np.testing.assert_allclose(sorted(ijk[:, 0]), [40 - 30, 40 + 30], atol=1.0)  # 15 mm / 0.5 mm on each side


def test_recist_tiny_and_empty():
    ref = grid()
    one = recist_axes(mask(ref, np.s_[3, 4, 5]))
    assert one.long_mm == pytest.approx(0.8) and one.short_mm == pytest.approx(0.5)
    with pytest.raises(InputError, match="non-empty"):
        recist_axes(mask(ref))


def test_evaluate_json_ready():
    pred, gt = diagonal_case()
    result = evaluate(pred, gt)
    json.dumps(result, allow_nan=False)
    assert result["dice"] == pytest.approx(dice(pred, gt))
    assert result["hd95_mm"] == pytest.approx(hd95(pred, gt))
    assert result["false_positive_volume_ml"] == pytest.approx(4 * 0.0008)
    assert result["false_negative_volume_ml"] == pytest.approx(0.0008)
    assert result["gt_lesions"] == 2 and result["pred_lesions"] == 4
    assert [d["lesion"] for d in result["lesions"]] == [1, 2]
    empty = evaluate(mask(pred), gt)
    json.dumps(empty, allow_nan=False)
    assert empty["hd95_mm"] is None and empty["precision"] is None and empty["dice"] == 0.0
