from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lesionseg import Image, InputError, OutputExistsError
from lesionseg.io import read_image
from lesionseg.lesions import csv_columns, read_lesion_table
from lesionseg.methods.autopet.lesion_table import (PEAK_RADIUS_MM, lesion_ids, lesion_table, mask_summary,
                                                    write_table)
from lesionseg.methods.autopet.mip import _project, coronal_mip_png, mip_size
from lesionseg.phantoms.wholebody import wholebody_petct

IBSI = {"STS_001": (7.91, 2.56, 366.1, 935), "STS_002": (21.68, 7.37, 54.3, 400),
        "STS_003": (10.27, 5.82, 79.9, 465), "STS_004": (5.37, 1.36, 297.5, 404),
        "STS_005": (6.72, 2.96, 585.3, 1731)}
"""README reference values on the PET grid: SUVmax, SUVmean, MTV (mL), TLG."""


def tilted() -> np.ndarray:
    a, b = np.deg2rad(30.0), np.deg2rad(20.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.fixture
def pair():
    """SUV 1 everywhere on an oblique, offset (12, 20, 24) grid; a 3x3x3 cube (SUV 2, one voxel 9) and a
    2-voxel lesion (SUV 4 and 5) apart from it."""
    suv = np.ones((12, 20, 24), np.float32)
    label = np.zeros(suv.shape, np.uint8)
    label[4:7, 5:8, 6:9] = 1
    suv[4:7, 5:8, 6:9] = 2.0
    suv[5, 6, 8] = 9.0
    label[9, 15, 18:20] = 1
    suv[9, 15, 18:20] = (4.0, 5.0)
    geometry = dict(spacing=(0.8, 1.1, 2.5), origin=(-30.5, 12.25, -410.0), direction=tilted())
    return Image(label, **geometry), Image(suv, meta={"units": "SUV"}, **geometry)


def lps(image: Image, ijk) -> np.ndarray:
    return image.origin + image.direction @ (image.spacing * np.asarray(ijk, float))


def test_rows_exact_on_an_oblique_grid(pair):
    label, suv = pair
    rows = lesion_table(label, suv)
    assert [r["id"] for r in rows] == [1, 2] and [r["voxels"] for r in rows] == [27, 2]
    cube, small = rows
    assert cube["volume_ml"] == 27 * label.voxel_volume_ml and small["volume_ml"] == 2 * label.voxel_volume_ml
    assert cube["suv_max"] == 9.0 and cube["suv_mean"] == pytest.approx((26 * 2.0 + 9.0) / 27, rel=1e-12)
    assert small["suv_max"] == 5.0 and small["suv_mean"] == 4.5
    for row in rows:
        assert row["tlg_ml"] == pytest.approx(row["suv_mean"] * row["volume_ml"], rel=1e-12)
    np.testing.assert_allclose(cube["centroid_lps"], lps(label, (7, 6, 5)), atol=1e-9)
    np.testing.assert_allclose(small["centroid_lps"], lps(label, (18.5, 15, 9)), atol=1e-9)
    assert cube["bbox_ijk"] == [[6, 5, 4], [8, 7, 6]] and small["bbox_ijk"] == [[18, 15, 9], [19, 15, 9]]
    assert [row["mean"] for row in rows] == [row["suv_mean"] for row in rows]  # the PET is the image
    json.dumps(rows, allow_nan=False)


def test_suv_peak_is_the_mean_of_the_1ml_sphere_around_the_hottest_voxel(pair):
    label, suv = pair
    k, j, i = np.indices(suv.shape)
    centres = np.stack([i, j, k], axis=-1).reshape(-1, 3)
    mm = np.linalg.norm((centres - (8, 6, 5)) @ (suv.direction * suv.spacing).T, axis=1)
    expected = suv.array.reshape(-1)[mm <= PEAK_RADIUS_MM].astype(np.float64).mean()
    assert 4.0 / 3.0 * np.pi * PEAK_RADIUS_MM ** 3 == pytest.approx(1000.0)
    assert lesion_table(label, suv)[0]["suv_peak"] == pytest.approx(float(expected), rel=1e-9)


def test_connectivity_and_ids(pair):
    label, suv = pair
    arr = label.array.copy()
    arr[7, 8, 9] = 1  # touches the cube by a corner only
    arr[2, 2, 2:4] = 1
    arr[3, 3, 2] = 1  # touches that pair by an edge only
    touching = label.with_array(arr)
    assert [len(lesion_table(touching, suv, c)) for c in (6, 18, 26)] == [5, 4, 3]
    ids, n = lesion_ids(touching, 26)
    assert n == 3 and ids.array[5, 6, 7] == 1 and ids.array[7, 8, 9] == 1 and ids.array[2, 2, 2] == 2
    with pytest.raises(InputError):
        lesion_table(label, suv, connectivity=8)


def test_whole_mask_summary(pair):
    label, suv = pair
    row = mask_summary(label, suv)
    assert row["voxels"] == 29 and row["components"] == 2 and row["suv_max"] == 9.0
    assert row["suv_mean"] == pytest.approx((26 * 2.0 + 9.0 + 9.0) / 29, rel=1e-12)
    assert row["tlg_ml"] == pytest.approx(row["suv_mean"] * row["volume_ml"], rel=1e-12)
    with pytest.raises(InputError):
        mask_summary(label.with_array(np.zeros(label.shape, np.uint8)), suv)
    assert lesion_table(label.with_array(np.zeros(label.shape, np.uint8)), suv) == []


def test_bad_inputs_raise(pair):
    label, suv = pair
    shifted = Image(label.array, label.spacing, label.origin + 1.0, label.direction)
    with pytest.raises(InputError, match="resample"):
        lesion_table(shifted, suv)
    with pytest.raises(InputError, match="SUV"):
        lesion_table(label, suv.with_array(suv.array, units="Bq/mL"))
    bad = suv.array.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError):
        lesion_table(label, suv.with_array(bad))
    with pytest.raises(InputError):
        lesion_table(label.array, suv)


def test_write_table_csv_and_json(pair, tmp_path):
    label, suv = pair
    rows = lesion_table(label, suv)
    out = write_table(rows, tmp_path / "lesions.csv")
    with out.open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(csv_columns(mean_units="SUV")) and len(table) == 2
    assert list(table[0])[:4] == ["id", "voxels", "volume_ml", "mean_suv"] and list(table[0])[-1] == "tlg_ml"
    assert float(table[0]["tlg_ml"]) == rows[0]["tlg_ml"] and int(table[1]["bbox_i1"]) == 19
    assert float(table[0]["centroid_z_mm"]) == rows[0]["centroid_lps"][2]
    assert read_lesion_table(out)["lesions"] == rows
    with pytest.raises(OutputExistsError):
        write_table(rows[:1], out)
    assert len(out.read_text().splitlines()) == 3
    write_table(rows[:1], out, overwrite=True)
    assert len(out.read_text().splitlines()) == 2
    loaded = json.loads(write_table(rows, tmp_path / "lesions.json").read_text())
    assert loaded["lesions"] == rows and loaded["units"]["volume_ml"] == "mL"
    assert loaded["method"] == "autopet-l2snet" and loaded["units"]["tlg_ml"] == "SUVbw x mL"
    for name in ("lesions.txt", "missing/lesions.csv"):
        with pytest.raises(InputError):
            write_table(rows, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesions.csv", "lesions.json"]


def test_table_matches_phantom_records():
    pet, _, label, info = wholebody_petct(5, n_lesions=4, shape=(100, 40, 60), spacing=(6.0, 6.0, 10.0))
    rows = lesion_table(label, pet)
    assert len(rows) == len(info["lesions"]) >= 1
    assert sorted(r["volume_ml"] for r in rows) == pytest.approx(sorted(r["volume_ml"] for r in info["lesions"]),
                                                                 abs=1e-4)


def test_ibsi_reference_values(shared_data):
    for case, (suv_max, suv_mean, mtv, tlg) in IBSI.items():
        folder = shared_data / "ibsi-sts-petct" / case
        row = mask_summary(read_image(folder / "PET_mask.nii.gz"), read_image(folder / "PET_image.nii.gz"))
        assert row["suv_max"] == pytest.approx(suv_max, abs=0.005), case
        assert row["suv_mean"] == pytest.approx(suv_mean, abs=0.005), case
        assert row["volume_ml"] == pytest.approx(mtv, abs=0.05), case
        assert row["tlg_ml"] == pytest.approx(tlg, abs=0.5), case


def test_mip_orientation_is_independent_of_storage():
    arr = np.zeros((6, 5, 4), np.float32)
    arr[5, 2, 0] = 7.0  # top slice (superior), i = 0 (patient's right with identity direction)
    arr[0, 1, 3] = 3.0
    image = Image(arr, (2.0, 3.0, 4.0), (10.0, 20.0, 30.0))
    mip = _project(arr, image, np.max)
    assert mip.shape == (6, 4) and mip[0, 0] == 7.0 and mip[5, 3] == 3.0
    flipped = np.ascontiguousarray(arr[::-1, :, ::-1])  # the same patient stored with i to the right, k down
    direction = np.diag([-1.0, 1.0, -1.0])
    origin = image.origin + np.array([3 * 2.0, 0.0, 5 * 4.0])
    np.testing.assert_array_equal(_project(flipped, Image(flipped, (2.0, 3.0, 4.0), origin, direction), np.max), mip)


def test_mip_png(pair, tmp_path):
    pet, _, label, _ = wholebody_petct(5, n_lesions=3, shape=(100, 40, 60), spacing=(6.0, 6.0, 10.0))
    out = coronal_mip_png(pet, label, tmp_path / "mip.png", title="phantom", height_px=400)
    import matplotlib.image
    picture = matplotlib.image.imread(out)
    width, height = mip_size(pet, 400)
    assert picture.shape[:2] == (height, width) == (400, 10 + round(362 * 360 / 1000) + 10 + 16 + 62)
    with pytest.raises(OutputExistsError):
        coronal_mip_png(pet, None, out)
    with pytest.raises(InputError):
        coronal_mip_png(pet, pair[0], tmp_path / "other.png")
    with pytest.raises(InputError):
        coronal_mip_png(pet, label, tmp_path / "mip.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mip.png"]
