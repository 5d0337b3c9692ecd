from __future__ import annotations

import cv2
import numpy as np
import pytest

from lesionseg import Image, InputError, Points
from lesionseg.geometry import index_box_to_world, index_to_world
from lesionseg.refiners import (Chain, DenseCRFRefiner, GrabCutRefiner, Refiner, chain, grabcut_classes,
                                grabcut_slice, label_to_probability, refine_with_scribbles, window_to_uint8)

SPACING = (0.8, 0.8, 1.5)


def blob_image(shape=(12, 40, 40), centre=(6, 20, 20), radius_mm=(5.0, 5.0, 5.0), seed=0):
    """CT-like float image: a 40 HU ellipsoid (radii along i, j, k in mm) in -850 HU lung, noise sigma 20;
    and its truth."""
    rng = np.random.default_rng(seed)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    dist2 = ((k - centre[0]) * SPACING[2] / radius_mm[2]) ** 2 + ((j - centre[1]) * SPACING[1] / radius_mm[1]) ** 2 \
        + ((i - centre[2]) * SPACING[0] / radius_mm[0]) ** 2
    truth = dist2 <= 1.0
    arr = np.where(truth, 40.0, -850.0) + rng.normal(0.0, 20.0, shape)
    return Image(arr.astype(np.float32), SPACING, (-30.0, 12.5, 100.0)), truth


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def assert_label_on_grid(label: Image, image: Image) -> None:
    assert label.array.dtype == np.uint8 and set(np.unique(label.array)) <= {0, 1}
    assert label.shape == image.shape
    assert np.array_equal(label.spacing, image.spacing) and np.array_equal(label.origin, image.origin)
    assert np.array_equal(label.direction, image.direction)


@pytest.fixture(scope="module")
def blob():
    return blob_image()


@pytest.mark.parametrize("centre,radius_mm,refiner,minimum", [
    ((6, 20, 21), (6.5, 6.5, 5.0), GrabCutRefiner(), 0.85),      # too large and shifted: Dice 0.73 before
    ((6, 20, 21), (6.5, 6.5, 5.0), chain(GrabCutRefiner(), DenseCRFRefiner()), 0.95),
    ((6, 20, 21), (3.0, 3.0, 5.0), GrabCutRefiner(), 0.7),       # too small and shifted: Dice 0.52 before
], ids=["grabcut-large", "chain-large", "grabcut-small"])
def test_refiners_improve_a_rough_probability(blob, centre, radius_mm, refiner, minimum):
    image, truth = blob
    _, rough = blob_image(centre=centre, radius_mm=radius_mm)
    out = refiner.refine(image, image.with_array(np.where(rough, 0.7, 0.3).astype(np.float32)))
    assert_label_on_grid(out, image)
    assert dice(out.array, truth) > max(minimum, dice(rough, truth) + 0.1)
    assert isinstance(refiner, Refiner)


def test_densecrf_cleans_noisy_probability(blob):
    image, truth = blob
    rng = np.random.default_rng(3)
    prob = np.clip(np.where(truth, 0.7, 0.3) + rng.uniform(-0.25, 0.25, truth.shape), 0, 1).astype(np.float32)
    before = dice(prob >= 0.5, truth)  # about 0.33: every lung voxel above 0.5 is a false positive
    after = dice(DenseCRFRefiner().refine(image, image.with_array(prob)).array, truth)
    assert before < 0.5 and after > 0.95


@pytest.mark.parametrize("refiner", [GrabCutRefiner(), DenseCRFRefiner()], ids=["grabcut", "densecrf"])
def test_box_forces_outside_to_background(blob, refiner):
    image, _ = blob
    lo, hi = np.array([15, 14, 4]), np.array([26, 24, 8])
    box = index_box_to_world(image, lo, hi)
    prob = np.full(image.shape, 0.95, np.float32)  # sure foreground everywhere
    out = refiner.refine(image, image.with_array(prob), box).array
    inside = np.zeros(image.shape, bool)
    inside[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
    assert not out[~inside].any() and out[inside].any()


@pytest.mark.parametrize("refiner", [GrabCutRefiner(), DenseCRFRefiner()], ids=["grabcut", "densecrf"])
def test_oblique_geometry_and_empty_probability(oblique_image, refiner):
    prob = np.zeros(oblique_image.shape, np.float32)
    out = refiner.refine(oblique_image, oblique_image.with_array(prob))
    assert_label_on_grid(out, oblique_image)
    assert not out.array.any()
    prob[2:5, 3:9, 4:12] = 0.95
    out = refiner.refine(oblique_image, oblique_image.with_array(prob))
    assert_label_on_grid(out, oblique_image)
    assert out.array[2:5, 3:9, 4:12].all() and not out.array[:2].any() and not out.array[5:].any()


def test_point_seeds_are_kept(blob):
    image, truth = blob
    prob = np.where(truth, 0.7, 0.2).astype(np.float32)
    fg_ijk, bg_ijk = np.array([[20, 20, 1]]), np.array([[20, 20, 6]])  # fg on an empty slice, bg at the centre
    seeds = Points(index_to_world(image, np.vstack([fg_ijk, bg_ijk])), [1, 0])
    out = GrabCutRefiner(seed_radius_mm=1.0).refine(image, image.with_array(prob), seeds).array
    assert out[1, 20, 20] == 1 and out[1, 20, 21] == 1 and out[1, 20, 22] == 0  # 1 mm disk = 1 voxel radius
    assert out[6, 20, 20] == 0 and out[6, 20, 23] == 1


def test_bad_inputs_raise(blob, oblique_image):
    image, truth = blob
    good = image.with_array(truth.astype(np.float32))
    with pytest.raises(InputError, match="grid"):
        GrabCutRefiner().refine(image, oblique_image)
    for bad in (truth * 2.0, np.where(truth, np.nan, 0.0)):
        with pytest.raises(InputError, match=r"\[0, 1\]"):
            DenseCRFRefiner().refine(image, image.with_array(bad.astype(np.float32)))
    with pytest.raises(InputError, match="outside the image"):
        GrabCutRefiner().refine(image, good, Points([[1e4, 0.0, 0.0]], [1]))
    with pytest.raises(InputError, match="window"):
        GrabCutRefiner(window=(100, -100)).refine(image, good)
    with pytest.raises(InputError):
        GrabCutRefiner(iterations=0)
    with pytest.raises(InputError):
        DenseCRFRefiner(gaussian_sxy_mm=0)
    with pytest.raises(InputError, match="at least one"):
        chain()


def test_grabcut_slice_helper():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 32) ** 2 + (xx - 30) ** 2 <= 12 ** 2
    gray = np.clip(np.where(disk, 200, 40) + rng.normal(0, 10, disk.shape), 0, 255).astype(np.uint8)
    init = np.full(disk.shape, cv2.GC_BGD, np.uint8)
    init[12:54, 10:52] = cv2.GC_PR_FGD  # a rectangle around the disk, as GrabCut's rect mode
    out = grabcut_slice(gray, init, iterations=5)
    assert out.dtype == bool and dice(out, disk) > 0.95
    assert dice(grabcut_slice(gray, init, 5, scale=2.0), disk) > 0.95
    few = np.full(disk.shape, cv2.GC_BGD, np.uint8)
    few[30:32, 30:32] = cv2.GC_PR_FGD  # 4 pixels: too few for GrabCut's colour model, returned as given
    assert np.array_equal(grabcut_slice(gray, few), few == cv2.GC_PR_FGD)
    with pytest.raises(InputError):
        grabcut_slice(gray, init[:10])


def test_grabcut_classes_thresholds():
    prob = np.array([0.0, 0.1, 0.11, 0.49, 0.5, 0.89, 0.9, 1.0])
    expected = [cv2.GC_BGD, cv2.GC_BGD, cv2.GC_PR_BGD, cv2.GC_PR_BGD, cv2.GC_PR_FGD, cv2.GC_PR_FGD,
                cv2.GC_FGD, cv2.GC_FGD]
    assert grabcut_classes(prob).tolist() == expected


def test_window_to_uint8():
    arr = np.array([-1000.0, -500.0, 0.0, 500.0, 1000.0])
    assert window_to_uint8(arr, (-500, 500)).tolist() == [0, 0, 127, 255, 255]
    auto = window_to_uint8(np.arange(101.0))
    assert auto[0] == 0 and auto[-1] == 255 and auto[50] == 127


def test_label_to_probability_values():
    label = np.zeros((1, 1, 9), np.uint8)
    label[0, 0, 3:6] = 1
    spacing = (2.0, 1.0, 1.0)
    prob = label_to_probability(label, spacing, width_mm=1.0)
    # centre voxel: 4 mm to the nearest background voxel; first outside voxel: -2 mm
    assert prob[0, 0, 4] == pytest.approx(1 / (1 + np.exp(-4.0)), rel=1e-6)
    assert prob[0, 0, 2] == pytest.approx(1 / (1 + np.exp(2.0)), rel=1e-6)
    assert np.all((prob >= 0.5) == (label > 0))
    assert not label_to_probability(np.zeros((2, 3, 4)), spacing).any()
    assert label_to_probability(np.ones((2, 3, 4)), spacing).min() == 1.0


def test_chain_passes_soft_labels(blob):
    image, truth = blob
    calls = []

    class Recorder:
        def refine(self, img, probability, prompt=None):
            calls.append(probability.array.copy())
            return img.with_array(truth.astype(np.uint8))

    out = Chain([Recorder(), Recorder()], width_mm=0.5).refine(image, image.with_array(truth * 0.7))
    assert np.array_equal(out.array, truth) and len(calls) == 2
    np.testing.assert_allclose(calls[1], label_to_probability(truth, image.spacing, 0.5))


def test_scribbles_add_and_remove_regions(blob):
    image, truth = blob
    arr = image.array.copy()
    arr[6, 5:9, 30:34] = 40.0  # a second small bright spot the mask missed
    arr[6, 19:22, 24:36] = 40.0  # a bright bar (a vessel) leaving the blob, wrongly in the mask
    image = image.with_array(arr)
    wrong = truth.copy()
    wrong[6, 19:22, 24:36] = True
    mask = image.with_array(wrong.astype(np.uint8))
    fg = Points(index_to_world(image, [[32, 7, 6]]), [1])
    bg = Points(index_to_world(image, [[31, 20, 6]]), [1])  # labels are ignored: the argument decides
    plain = refine_with_scribbles(image, mask).array
    assert plain[6, 5:9, 30:34].sum() == 0 and plain[6, 19:22, 27:36].all()  # GrabCut alone keeps the mistakes
    out = refine_with_scribbles(image, mask, fg=fg, bg=bg)
    assert_label_on_grid(out, image)
    assert out.array[6, 5:9, 30:34].all()  # the missed spot was added
    assert not out.array[6, 19:22, 27:36].any()  # the bar was cut off beyond the stroke too
    slices = truth.any(axis=(1, 2))
    assert dice(out.array[slices], truth[slices]) > 0.95


def test_scribbles_bad_input_and_empty(blob, oblique_image):
    image, truth = blob
    mask = image.with_array(truth.astype(np.uint8))
    with pytest.raises(InputError, match="grid"):
        refine_with_scribbles(image, oblique_image)
    with pytest.raises(InputError, match="outside"):
        refine_with_scribbles(image, mask, bg=Points([[-1e4, 0, 0]], [0]))
    empty = refine_with_scribbles(image, image.with_array(np.zeros(image.shape, np.uint8)))
    assert_label_on_grid(empty, image)
    assert not empty.array.any()
    box = index_box_to_world(image, [0, 0, 0], [3, 3, 3])
    assert not GrabCutRefiner().refine(image, mask, box).array.any()  # no candidates inside the box


@pytest.mark.parametrize("make, message", [
    (lambda: GrabCutRefiner(iterations=0), "GrabCut iterations must be a whole number >= 1, got 0"),
    (lambda: GrabCutRefiner(iterations=2.5), "GrabCut iterations must be a whole number >= 1, got 2.5"),
    (lambda: GrabCutRefiner(upsample_to=0), "upsample_to (pixels) must be a whole number >= 1, got 0"),
    (lambda: GrabCutRefiner(max_upsample=np.float64(0.5)), "max_upsample must be a number >= 1, got 0.5"),
    (lambda: GrabCutRefiner(margin_mm=np.nan), "margin_mm must be a number >= 0, got nan"),
    (lambda: DenseCRFRefiner(seed_radius_mm=-1), "seed_radius_mm must be a number >= 0, got -1"),
    (lambda: DenseCRFRefiner(iterations=0), "DenseCRF iterations must be a whole number >= 1, got 0"),
    (lambda: DenseCRFRefiner(gaussian_sxy_mm=0), "gaussian_sxy_mm must be a number > 0, got 0"),
    (lambda: DenseCRFRefiner(bilateral_compat=-3), "bilateral_compat must be a number >= 0, got -3"),
    (lambda: GrabCutRefiner(window=np.array([100.0, -100.0])).refine(*_flat()),
     "window must be (lo, hi) with hi > lo, got (100, -100)"),
])
def test_each_bad_setting_is_named_with_its_value(make, message):
    with pytest.raises(InputError) as caught:
        make()
    assert str(caught.value) == message


def _flat() -> tuple[Image, Image]:
    image = Image(np.zeros((3, 8, 8), np.int16))
    prob = np.zeros(image.shape, np.float32)
    prob[1, 2:6, 2:6] = 0.7
    return image, image.with_array(prob)


def test_grid_messages_say_what_differs_and_a_huge_seed_radius_is_bounded(oblique_image):
    image, prob = _flat()
    moved = Image(prob.array, prob.spacing, prob.origin + [0.0, 0.0, 2.0])
    with pytest.raises(InputError) as caught:
        GrabCutRefiner().refine(image, moved)
    assert str(caught.value) == ("the probability image is on another grid than the image (origin (0, 0, 2) vs "
                                 "(0, 0, 0) mm); resample it onto that grid first")
    with pytest.raises(InputError, match=r"the mask is on another grid than the image \(shape"):
        refine_with_scribbles(image, oblique_image)
    with pytest.raises(InputError, match="band_mm must be a number >= 0, got -1"):
        refine_with_scribbles(image, image.with_array((prob.array > 0).astype(np.uint8)), band_mm=-1)
    seeds = Points([[4.0, 4.0, 1.0]], [1])
    out = GrabCutRefiner(seed_radius_mm=1e12).refine(image, prob, seeds)   # a disk over the whole slice, no MemoryError
    assert out.array[1].all() and not out.array[0].any()
