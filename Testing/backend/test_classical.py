from __future__ import annotations

import numpy as np
import pytest

import lesionseg
from lesionseg import Box, Image, InputError, LesionSegWarning, Points, RecistLine
from lesionseg.geometry import box_to_index, index_box_to_world, index_to_world
from lesionseg.methods.classical import ClassicalBox, ClassicalBoxOptions, box_prior, threshold_in_box

CENTRE = np.array([20, 18, 10])  # (i, j, k)


def rotation(deg_z: float, deg_x: float) -> np.ndarray:
    z, x = np.deg2rad(deg_z), np.deg2rad(deg_x)
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return rz @ rx


def nodule_image(direction=np.eye(3), radius=6, seed=0):
    """Lung nodule phantom: a sphere of ``radius`` voxels, 40 HU, in -850 HU lung, noise sigma 20 HU."""
    rng = np.random.default_rng(seed)
    shape = (20, 36, 40)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    truth = (i - CENTRE[0]) ** 2 + (j - CENTRE[1]) ** 2 + (k - CENTRE[2]) ** 2 <= radius ** 2
    arr = (np.where(truth, 40.0, -850.0) + rng.normal(0, 20, shape)).astype(np.int16)
    return Image(arr, (0.75, 0.75, 1.25), (-40.0, 25.0, -300.0), direction), truth


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def box_around(image: Image, half=8) -> Box:
    return index_box_to_world(image, CENTRE - half, CENTRE + half)


@pytest.fixture(scope="module")
def segmenter():
    seg = lesionseg.build("classical-box", device="cpu")
    return seg


def test_registered_without_weights():
    cls = lesionseg.get_method("classical-box")
    assert cls is ClassicalBox and cls.prompt_kind == "box" and cls.needs_weights is False
    assert cls.summary == "Classical baseline: GrabCut + DenseCRF inside the box"
    assert "classical-box" in lesionseg.method_names()
    assert isinstance(lesionseg.build("classical-box", device="cpu"), ClassicalBox)


@pytest.mark.parametrize("direction", [np.eye(3), rotation(15, 8)], ids=["axial", "oblique"])
def test_sphere_dice_and_geometry(segmenter, direction):
    image, truth = nodule_image(direction)
    box = box_around(image, half=7)  # on the oblique grid the LPS box covers more voxels than 15^3
    segmenter.set_image(image)
    label = segmenter.predict(box)
    assert label.array.dtype == np.uint8 and set(np.unique(label.array)) == {0, 1}
    assert label.shape == image.shape
    assert np.array_equal(label.spacing, image.spacing) and np.array_equal(label.origin, image.origin)
    assert np.array_equal(label.direction, image.direction)
    inside = np.zeros(image.shape, bool)
    inside[box_to_index(image, box).slices] = True
    assert not label.array[~inside].any()
    assert dice(label.array, truth) > 0.85
    assert np.array_equal(segmenter.predict(box).array, label.array)  # repeatable


def test_only_box_voxels_when_the_box_cuts_the_lesion(segmenter):
    image, truth = nodule_image()
    lo, hi = CENTRE - [8, 8, 3], CENTRE + [3, 8, 8]  # cuts off the lesion's +i side and -k cap
    segmenter.set_image(image)
    label = segmenter.predict(index_box_to_world(image, lo, hi)).array
    inside = np.zeros(image.shape, bool)
    inside[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
    assert not label[~inside].any()
    assert dice(label[inside], truth[inside]) > 0.85


def test_threshold_baseline_dice():
    image, truth = nodule_image(rotation(15, 8))
    box = box_around(image, half=7)
    label = threshold_in_box(image, box)
    assert label.array.dtype == np.uint8 and label.same_grid(image)
    inside = np.zeros(image.shape, bool)
    inside[box_to_index(image, box).slices] = True
    assert not label.array[~inside].any()
    assert dice(label.array, truth) > 0.85


def test_threshold_keeps_largest_component_and_warns_when_empty():
    arr = np.full((5, 20, 20), -850, np.int16)
    arr[1:4, 2:8, 2:8] = 50  # 108 voxels
    arr[2, 12:14, 12:14] = 50  # 4 voxels
    image = Image(arr)
    label = threshold_in_box(image, index_box_to_world(image, [0, 0, 0], [19, 19, 4])).array
    assert label.sum() == 108 and label[2, 12, 12] == 0
    with pytest.warns(LesionSegWarning, match="above"):
        empty = threshold_in_box(image, index_box_to_world(image, [10, 0, 0], [11, 10, 4]))
    assert not empty.array.any()


def test_box_prior_values():
    from lesionseg.geometry import IndexBox

    prior = box_prior((5, 9, 9), IndexBox(np.array([1, 2, 0]), np.array([7, 6, 4])))
    assert prior[2, 4, 4] == pytest.approx(0.6) and prior[2, 2, 1] == pytest.approx(0.3)
    assert prior[2, 0, 0] == 0.0 and prior[:, :, 8].max() == 0.0
    np.testing.assert_allclose(np.unique(prior), [0.0, 0.3, 0.6], rtol=1e-6)


def test_bad_prompts_raise(segmenter):
    image, _ = nodule_image()
    fresh = ClassicalBox()
    with pytest.raises(InputError, match="set_image"):
        fresh.predict(box_around(image))
    segmenter.set_image(image)
    with pytest.raises(InputError, match="no prompt"):
        segmenter.predict(None)
    recist = RecistLine(*index_to_world(image, [[14, 18, 10], [26, 18, 10]]))
    with pytest.raises(InputError, match="RecistLine"):
        segmenter.predict(recist)
    with pytest.raises(InputError, match="Points"):
        segmenter.predict(Points(index_to_world(image, [CENTRE]), [1]))
    with pytest.raises(InputError, match="outside"):
        segmenter.predict(Box((1e4, 1e4, 1e4), (1e4 + 5, 1e4 + 5, 1e4 + 5)))
    with pytest.raises(InputError, match="--margin-mm"):
        ClassicalBox(margin_mm=-1)
    with pytest.raises(InputError, match="--iterations"):
        ClassicalBoxOptions(iterations=0)


@pytest.mark.parametrize("k", [int(CENTRE[2]), 0])
def test_one_slice_box_segments_that_slice(segmenter, k):
    """A box one slice thick ("current slice only" in Slicer) must segment that slice, also at the edge."""
    image, truth = nodule_image()
    if k == 0:  # move the nodule to the first slice: no slice below for GrabCut's context channel
        image = image.with_array(np.roll(image.array, -int(CENTRE[2]), axis=0))
        truth = np.roll(truth, -int(CENTRE[2]), axis=0)
    segmenter.set_image(image)
    lo, hi = CENTRE - 8, CENTRE + 8
    out = segmenter.predict(index_box_to_world(image, [lo[0], lo[1], k], [hi[0], hi[1], k])).array
    assert out.sum() == out[k].sum() > 0
    assert dice(out[k], truth[k]) > 0.85


def test_one_slice_boxes_on_real_ct(segmenter, shared_data):
    """Lung-PET-CT-Dx per-slice tumour boxes: each one-slice box yields a mask on its slice.

    Regression: without slices of context around a one-slice crop, GrabCut returned empty masks on 7 of
    these 9 boxes. No expert masks exist here, so the check is against the box's voxels above -400 HU.
    """
    import csv

    folder = shared_data / "lung-pet-ct-dx-ct"
    image = lesionseg.read_image(folder / "Lung_Dx-A0001_series3_B_CT.nii.gz")
    segmenter.set_image(image)
    for row in csv.DictReader(open(folder / "boxes.csv")):
        k = int(row["z_index"])
        x0, y0, x1, y1 = (int(row[c]) for c in ("xmin", "ymin", "xmax", "ymax"))
        out = segmenter.predict(index_box_to_world(image, [x0, y0, k], [x1 - 1, y1 - 1, k])).array
        dense = image.array[k, y0:y1, x0:x1] > -400
        assert out.sum() == out[k].sum()
        assert out[k, y0:y1, x0:x1].sum() > 0.3 * dense.sum(), k


def test_cli_accepts_a_one_voxel_box_ijk(tmp_path, capsys):
    """Indices are inclusive: ``--box-ijk 5 5 5 5 5 5`` is the one voxel (5, 5, 5), not a zero-size box."""
    from lesionseg import cli

    image, _ = nodule_image()
    lesionseg.write_image(image, tmp_path / "ct.nii.gz")
    code = cli.main(["--progress", "none", "predict", "classical-box", str(tmp_path / "ct.nii.gz"), "--box-ijk",
                     *map(str, CENTRE), *map(str, CENTRE), "-o", str(tmp_path / "m.nii.gz")])
    out, err = capsys.readouterr()
    assert code == 0, err
    label = lesionseg.read_image(tmp_path / "m.nii.gz")
    assert label.same_grid(image) and out.startswith(str(tmp_path / "m.nii.gz"))
    outside = label.array.copy()
    outside[CENTRE[2], CENTRE[1], CENTRE[0]] = 0
    assert not outside.any()                        # nothing outside the one voxel of the box


def test_options_keywords_and_flags_are_one_setting(tmp_path, capsys):
    """``use_crf=False`` (Python), ``options=ClassicalBoxOptions(crf=False)``, ``set_options`` and ``--no-crf``
    (CLI) all give GrabCut alone; the CRF changes the label on this phantom."""
    from lesionseg import cli

    image, _ = nodule_image()
    box = box_around(image, half=7)
    keyword = ClassicalBox(use_crf=False, iterations=3)
    assert keyword.options == ClassicalBoxOptions(crf=False, iterations=3)
    keyword.set_image(image)
    grabcut = keyword.predict(box).array
    seg = ClassicalBox()
    seg.set_image(image)
    with_crf = seg.predict(box).array
    seg.set_options(ClassicalBoxOptions(crf=False, iterations=3))
    assert np.array_equal(seg.predict(box).array, grabcut) and not np.array_equal(with_crf, grabcut)
    lesionseg.write_image(image, tmp_path / "ct.nii.gz")
    lo, hi = CENTRE - 7, CENTRE + 7
    assert cli.main(["--progress", "none", "predict", "classical-box", str(tmp_path / "ct.nii.gz"), "--box-ijk",
                     *map(str, lo), *map(str, hi), "--no-crf", "--iterations", "3",
                     "-o", str(tmp_path / "m.nii.gz")]) == 0
    assert np.array_equal(lesionseg.read_image(tmp_path / "m.nii.gz").array, grabcut)


def test_evaluate_without_a_model_scores_every_lesion(tmp_path, capsys):
    """``lesionseg evaluate classical-box --data D --baselines``: no model, every case, one jittered box per
    lesion; the threshold baseline is fixed at -400 HU as there are no training cases."""
    import json

    from lesionseg import cli
    from lesionseg.data import DatasetWriter

    with DatasetWriter(tmp_path / "D", ("CT",), {"background": 0, "nodule": 1}) as writer:
        for seed in (0, 1):
            image, truth = nodule_image(seed=seed)
            writer.add(f"case{seed}", [image], image.with_array(truth.astype(np.uint8)))
    out = tmp_path / "e.json"
    assert cli.main(["--progress", "none", "evaluate", "classical-box", "--data", str(tmp_path / "D"), "--baselines",
                     "--json", str(out), "--no-crf"]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert list(summary) == ["classical-box", "HU threshold"]
    assert summary["classical-box"]["lesion_dice"]["lesions"] == 2
    assert summary["classical-box"]["lesion_dice"]["mean"] > 0.8
    assert summary["HU threshold"]["chosen"] == [{"hu": -400.0, "training_lesions": 0, "train_dice": {}}]
    assert "| classical-box | 2 |" in capsys.readouterr().out
