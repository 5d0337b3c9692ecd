"""Synthesis from a real label map (#18): ``lesionseg.phantoms.labelmap.labelmap_ct`` on a small hand-made label
map (determinism, labels, tumour placement, HU ranges, geometry, variety, errors), ``lesionseg data synthetic s4c
--labelmap``, and one case from the TotalSegmentator example label map when ../shared/data is present."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lesionseg.errors import InputError
from lesionseg.image import Image
from lesionseg.phantoms.labelmap import labelmap_ct
from lesionseg.phantoms.labelmap_tissues import names_beside, read_names

NAMES = {1: "autochthon_left", 2: "liver", 3: "pancreas", 4: "aorta", 5: "colon", 6: "vertebrae_L1"}
SPACING = (2.0, 2.0, 3.0)


def small_map(pancreas: bool = True) -> Image:
    """A 12 x 40 x 40 label map at 3 mm (LPS, tilted origin): back muscle, spine, aorta, liver, colon, and a
    tube pancreas across the middle; unlabelled fat between."""
    k, j, i = np.mgrid[0:12, 0:40, 0:40]
    labels = np.zeros((12, 40, 40), np.uint8)
    labels[((i - 20) ** 2 / 100 + (j - 31) ** 2 / 9) <= 1] = 1
    labels[(i - 20) ** 2 + (j - 27) ** 2 <= 9] = 6
    labels[(i - 23) ** 2 + (j - 22) ** 2 <= 3] = 4
    labels[((i - 9) ** 2 / 36 + (j - 17) ** 2 / 64) <= 1] = 2
    labels[((i - 28) ** 2 / 9 + (j - 12) ** 2 / 9) <= 1] = 5
    if pancreas:
        labels[(np.abs(j - 19) <= 2) & (i >= 14) & (i <= 32) & (k >= 3) & (k <= 8)] = 3
    return Image(labels, (3.0, 3.0, 3.0), (-60.0, -40.0, -300.0), meta={"source": "small.nii.gz"})


def lps_centroid(mask_image: Image, value: int) -> np.ndarray:
    kji = np.argwhere(mask_image.array == value).mean(axis=0)
    return mask_image.origin + mask_image.direction @ (mask_image.spacing * kji[::-1])


def test_same_seed_same_case_and_labels_are_s4c_classes():
    first = labelmap_ct(small_map(), NAMES, 5, "tumour", SPACING)
    second = labelmap_ct(small_map(), NAMES, 5, "tumour", SPACING)
    for a, b in zip(first[:3], second[:3]):
        assert np.array_equal(a.array, b.array) and a.same_grid(b, tol=0)
    assert json.dumps(first[3], sort_keys=True) == json.dumps(second[3], sort_keys=True)
    arterial, venous, label, info = first
    assert arterial.same_grid(label, tol=0) and venous.same_grid(label, tol=0)
    assert arterial.array.dtype == np.int16 and label.array.dtype == np.uint8
    assert np.allclose(label.spacing, SPACING) and set(np.unique(label.array)) == {0, 1, 2}
    assert info["source"] == "small.nii.gz" and info["phantom"] == "labelmap_ct" and info["positive"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tumour_sits_in_the_pancreas_and_normal_has_none(seed):
    _, _, label, info = labelmap_ct(small_map(), NAMES, seed, "tumour", SPACING)
    tumour = label.array == 2
    assert tumour.any() and len(info["tumours"]) == 1
    assert (ndimage.binary_dilation(tumour) & (label.array == 1)).any()
    assert 5.0 <= info["tumours"][0]["diameter_mm"] <= 40.0
    assert info["tumours"][0]["volume_mm3"] == pytest.approx(tumour.sum() * np.prod(SPACING), abs=1e-3)
    _, _, normal, info = labelmap_ct(small_map(), NAMES, seed, "normal", SPACING)
    assert set(np.unique(normal.array)) == {0, 1} and info["tumours"] == [] and not info["positive"]


def test_duct_kinds_draw_a_duct_inside_the_pancreas():
    _, _, label, info = labelmap_ct(small_map(), NAMES, 3, "tumour+duct", SPACING)
    assert info["duct"] is not None and (label.array == 3).any() and (label.array == 2).any()
    assert info["duct"]["volume_mm3"] == pytest.approx((label.array == 3).sum() * np.prod(SPACING), abs=1e-3)


def test_hu_ranges_are_plausible():
    seed = next(s for s in range(20)
                if not labelmap_ct(small_map(), NAMES, s, "normal", SPACING)[3]["geometry"]["crop"])
    arterial, venous, label, info = labelmap_ct(small_map(), NAMES, seed, "normal", SPACING)
    for image, phase in ((arterial, "arterial"), (venous, "venous")):
        hu = image.array.astype(float)
        assert hu[:, :3, :3].mean() < -900 and hu[:, -3:, -3:].mean() < -900  # air outside the body
        assert -130 <= info["hu"][phase]["fat"] <= -70
        fat = hu[(hu > -250) & (hu < -30)]
        assert -130 <= np.median(fat) <= -70
        assert hu[label.array == 1].mean() > info["hu"][phase]["fat"] + 60


def test_geometry_follows_the_label_map():
    source = small_map()
    _, _, label, info = labelmap_ct(source, NAMES, 4, "normal", SPACING)
    assert np.linalg.norm(lps_centroid(label, 1) - lps_centroid(source, 3)) < 30.0
    volume = (label.array == 1).sum() * np.prod(SPACING)
    expected = (source.array == 3).sum() * 27.0 * np.prod(info["geometry"]["scale"])
    assert 0.75 * expected <= volume <= 1.25 * expected
    assert info["pancreas_mm3"] == pytest.approx(volume, abs=1e-3)


def test_default_grid_is_fine_in_plane():
    arterial, _, label, info = labelmap_ct(small_map(), NAMES, 7, "normal")
    xy, _, z = label.spacing
    assert 0.7 <= xy <= 1.0 and 1.0 <= z <= 5.0 and min(label.shape[1:]) >= 32


def test_seeds_give_different_geometry_and_contrast():
    cases = [labelmap_ct(small_map(), NAMES, seed, "normal", SPACING)[3] for seed in (10, 11, 12)]
    assert len({json.dumps(c["geometry"]) for c in cases}) == 3
    assert len({c["hu"]["arterial"]["pancreas"] for c in cases}) == 3
    assert len({tuple(c["shape"]) for c in cases}) > 1


def test_bad_label_maps_and_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="pancreas"):
        labelmap_ct(small_map(pancreas=False), NAMES, 0, "normal", SPACING)
    with pytest.raises(InputError, match="pancreas"):
        labelmap_ct(small_map(), {k: v for k, v in NAMES.items() if v != "pancreas"}, 0, "normal", SPACING)
    with pytest.raises(InputError, match="kind"):
        labelmap_ct(small_map(), NAMES, 0, "cyst", SPACING)
    with pytest.raises(InputError, match="spacing"):
        labelmap_ct(small_map(), NAMES, 0, "normal", (1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="labelmap-names"):
        names_beside(tmp_path / "seg.nii.gz")
    (tmp_path / "bad.csv").write_text("id,label_name\n1,liver\n")
    with pytest.raises(InputError, match="label,name"):
        read_names(tmp_path / "bad.csv")


def write_map(folder: Path) -> tuple[Path, Path]:
    from lesionseg.io import write_image

    folder.mkdir()
    path = folder / "seg.nii.gz"
    write_image(small_map(), path)
    names = folder / "names.csv"
    names.write_text("label,name\n" + "".join(f"{k},{v}\n" for k, v in NAMES.items()))
    return path, names


def test_synthetic_labelmap_writes_a_dataset_that_records_its_source(tmp_path):
    from lesionseg import cli
    from lesionseg.data import Dataset

    path, names = write_map(tmp_path / "map")
    out = tmp_path / "ds"
    assert cli.main(["--progress", "none", "data", "synthetic", "s4c", "-o", str(out), "--cases", "2",
                     "--labelmap", str(path), "--labelmap-names", str(names), "--spacing-mm", "1.8", "2.0"]) == 0
    ds = Dataset(out)
    ds.check()
    assert ds.meta["synthetic"] is True and ds.meta["randomise"] is True
    assert ds.meta["labelmap"] == str(path.resolve()) and ds.meta["labelmap_names"] == str(names.resolve())
    assert "real label map" in ds.meta["anatomy"] and ds.meta["generator"].endswith("labelmap_ct")
    for case, record in zip(ds.cases(), ds.meta["phantoms"]):
        label = case.read_label()
        assert all(image.same_grid(label, tol=1e-6) for image in case.read_images())
        assert record["info"]["source"] == "seg.nii.gz" and 1.8 <= label.spacing[0] <= 2.0
        assert (label.array == 1).any()


def test_synthetic_labelmap_refuses_missing_names_and_no_pancreas(tmp_path):
    from lesionseg import cli
    from lesionseg.io import write_image
    from lesionseg.methods.s4c.data import SyntheticSettings

    path, names = write_map(tmp_path / "map")
    out = tmp_path / "ds"
    assert cli.main(["--progress", "none", "data", "synthetic", "s4c", "-o", str(out), "--labelmap", str(path)]) != 0
    write_image(small_map(pancreas=False), tmp_path / "map" / "empty.nii.gz")
    assert cli.main(["--progress", "none", "data", "synthetic", "s4c", "-o", str(out), "--labelmap",
                     str(tmp_path / "map" / "empty.nii.gz"), "--labelmap-names", str(names)]) != 0
    assert not out.exists()
    with pytest.raises(InputError, match="--labelmap"):
        SyntheticSettings(labelmap_names=names)
    with pytest.raises(InputError, match="--fov-mm"):
        SyntheticSettings(labelmap=path, fov_mm=(200.0, 210.0))
    assert SyntheticSettings(labelmap=path).randomised


def test_totalseg_example_label_map(shared_data):
    folder = shared_data / "totalseg-example-ct"
    from lesionseg.io import read_image

    labels = read_image(folder / "example_seg.nii.gz")
    names = read_names(names_beside(folder / "example_seg.nii.gz"))
    _, venous, label, info = labelmap_ct(labels, names, 0, "tumour", (1.5, 1.5, 3.0))
    assert names[7] == "pancreas" and (label.array == 2).any()
    assert 0.5 * 17.39e3 <= info["pancreas_mm3"] <= 1.7 * 17.39e3
    assert venous.array[label.array == 1].mean() > info["hu"]["venous"]["fat"] + 60
