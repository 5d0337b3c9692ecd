"""lesionseg.lesions: the one lesion table (CT and PET rows, exact values), its CSV / JSON files, and the old autoPET
and small-lesion tables read into the same rows."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lesionseg import Image, InputError, OutputExistsError
from lesionseg.lesions import (FIELDS, check_table_path, csv_columns, lesion_ids, lesion_table, read_lesion_table,
                               write_lesion_table)


@pytest.fixture
def ct_pair():
    """A (10, 12, 14) CT of 40 HU on an offset, anisotropic grid; label 2 marks a 2x2x3 block of 100 HU and a
    single voxel of 200 HU; label 1 a 4-voxel line of -10 HU."""
    ct = np.full((10, 12, 14), 40, np.int16)
    label = np.zeros(ct.shape, np.uint8)
    label[2:4, 3:5, 4:7], ct[2:4, 3:5, 4:7] = 2, 100
    label[8, 10, 12], ct[8, 10, 12] = 2, 200
    label[6, 1, 1:5], ct[6, 1, 1:5] = 1, -10
    geometry = dict(spacing=(0.5, 2.0, 3.0), origin=(-10.0, 20.0, 30.0))
    return Image(label, **geometry), Image(ct, **geometry)


def test_ct_rows_are_exact_and_numbered_like_lesion_ids(ct_pair):
    label, ct = ct_pair
    rows = lesion_table(label, ct)
    assert [(r["id"], r["voxels"]) for r in rows] == [(1, 12), (2, 4), (3, 1)]
    assert list(rows[0]) == list(FIELDS[:6]) and rows[0]["volume_ml"] == 12 * 3e-3
    assert [r["mean"] for r in rows] == [100.0, -10.0, 200.0]
    assert rows[0]["bbox_ijk"] == [[4, 3, 2], [6, 4, 3]] and rows[1]["bbox_ijk"] == [[1, 1, 6], [4, 1, 6]]
    np.testing.assert_allclose(rows[0]["centroid_lps"], [-10.0 + 5 * 0.5, 20.0 + 3.5 * 2.0, 30.0 + 2.5 * 3.0])
    ids, n = lesion_ids(label)
    assert n == 3 and ids.array[2, 3, 4] == 1 and ids.array[6, 1, 1] == 2 and ids.array[8, 10, 12] == 3
    only_two = lesion_table(label, ct, label_value=2)
    assert [(r["voxels"], r["mean"]) for r in only_two] == [(12, 100.0), (1, 200.0)]
    assert lesion_ids(label, label_value=2)[0].array[6, 1, 1] == 0
    assert lesion_table(label.with_array(np.zeros(label.shape, np.uint8)), ct) == []


def test_connectivity_joins_diagonal_voxels(ct_pair):
    label, ct = ct_pair
    arr = np.zeros(label.shape, np.uint8)
    arr[1, 1, 1] = arr[2, 2, 2] = 1  # corners touch
    arr[5, 5, 5] = arr[5, 6, 6] = 1  # edges touch
    assert [len(lesion_table(label.with_array(arr), ct, connectivity=c)) for c in (6, 18, 26)] == [4, 3, 2]
    with pytest.raises(InputError, match="connectivity"):
        lesion_table(label, ct, connectivity=8)


def test_pet_rows_add_the_suv_fields(ct_pair):
    label, ct = ct_pair
    suv = ct.with_array(np.where(label.array > 0, 3.0, 1.0).astype(np.float32), units="SUV")
    suv.array[2, 3, 4] = 7.5
    rows = lesion_table(label, ct, pet=suv)
    assert list(rows[0]) == list(FIELDS) and rows[0]["mean"] == pytest.approx((11 * 100.0 + 100.0) / 12)
    assert rows[0]["suv_max"] == 7.5 and rows[0]["suv_mean"] == pytest.approx((11 * 3.0 + 7.5) / 12, rel=1e-12)
    assert rows[0]["tlg_ml"] == rows[0]["suv_mean"] * rows[0]["volume_ml"]
    assert all(1.0 <= r["suv_peak"] <= r["suv_max"] for r in rows)
    with pytest.raises(InputError, match="not SUV"):
        lesion_table(label, ct, pet=suv.with_array(suv.array, units="Bq/mL"))


def test_bad_inputs_raise(ct_pair):
    label, ct = ct_pair
    with pytest.raises(InputError, match="resample"):
        lesion_table(label, Image(ct.array, ct.spacing, ct.origin + 1.0))
    with pytest.raises(InputError, match="Image objects"):
        lesion_table(label.array, ct)
    with pytest.raises(InputError, match="NaN"):
        lesion_table(label, ct.with_array(np.full(ct.shape, np.nan, np.float32)))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_files_read_back_exactly(ct_pair, tmp_path, suffix):
    label, ct = ct_pair
    suv = ct.with_array(np.where(label.array > 0, 2.5, 1.0).astype(np.float32), units="SUV")
    for rows, units in ((lesion_table(label, ct), "HU"), (lesion_table(label, ct, pet=suv), "HU"), ([], "HU")):
        path = write_lesion_table(rows, tmp_path / f"t{suffix}", method="m", image="ct.nii.gz", overwrite=True)
        table = read_lesion_table(path)
        assert table["lesions"] == rows and table["units"].get("mean", "HU") == units
        assert (table["method"], table["image"]) == (("m", "ct.nii.gz") if suffix == ".json" else ("", ""))
    if suffix == ".csv":  # an empty table has every column
        assert (tmp_path / "t.csv").read_text() == ",".join(csv_columns()) + "\n"
    with pytest.raises(OutputExistsError):
        write_lesion_table([], tmp_path / f"t{suffix}")
    with pytest.raises(InputError, match="would not|numbers its lesions"):
        write_lesion_table([{**lesion_table(label, ct)[0], "id": 2}], tmp_path / f"u{suffix}")
    with pytest.raises(InputError, match="finite|cannot hold"):
        write_lesion_table([{**lesion_table(label, ct)[0], "mean": float("nan")}], tmp_path / f"u{suffix}")
    assert not (tmp_path / f"u{suffix}").exists()
    check_table_path(None)
    with pytest.raises(InputError, match=".csv or .json"):
        check_table_path(tmp_path / "t.txt")


def test_old_autopet_and_small_lesion_tables(tmp_path):
    autopet_csv = tmp_path / "autopet.csv"
    autopet_csv.write_text("id,voxels,volume_ml,suv_max,suv_mean,suv_peak,tlg,centroid_l_mm,centroid_p_mm,"
                           "centroid_s_mm,box_i0,box_j0,box_k0,box_i1,box_j1,box_k1\n"
                           "1,12,1.5,9.5,4.25,,6.375,10.0,-20.5,30,1,2,3,4,5,6\n")
    (row,) = read_lesion_table(autopet_csv)["lesions"]
    assert row == {"id": 1, "voxels": 12, "volume_ml": 1.5, "centroid_lps": [10.0, -20.5, 30.0],
                   "bbox_ijk": [[1, 2, 3], [4, 5, 6]], "suv_max": 9.5, "suv_mean": 4.25, "suv_peak": None,
                   "tlg_ml": 6.375}
    (tmp_path / "autopet.json").write_text(json.dumps({"units": {"tlg": "SUVbw x mL"}, "lesions": [
        {"id": 1, "voxels": 12, "volume_ml": 1.5, "suv_max": 9.5, "suv_mean": 4.25, "suv_peak": 3.0, "tlg": 6.375,
         "centroid_lps": [10.0, -20.5, 30.0], "box_ijk": [[1, 2, 3], [4, 5, 6]]}]}))
    assert read_lesion_table(tmp_path / "autopet.json")["lesions"] == [{**row, "suv_peak": 3.0}]
    for centroid_header, centroid in (("centroid_lps", '"10.0;-20.5;30"'), ("centroid_x,centroid_y,centroid_z",
                                                                              "10.0,-20.5,30")):
        autopet_csv.write_text(f"id,volume_ml,{centroid_header}\n1,1.5,{centroid}\n")
        assert read_lesion_table(autopet_csv)["lesions"][0]["centroid_lps"] == [10.0, -20.5, 30.0]
    small_csv = tmp_path / "small.csv"
    small_csv.write_text("id,voxels,volume_mm3,mean_hu,centroid_x_mm,centroid_y_mm,centroid_z_mm\n"
                         "1,57,41.0,128.3,1.0,2.0,3.0\n2,,5.0,131.0,-4.5,6.0,-7.0\n")
    table = read_lesion_table(small_csv)
    assert table["units"] == {"volume_ml": "mL", "mean": "HU", "centroid_lps": "LPS mm"}
    assert table["lesions"][1] == {"id": 2, "voxels": None, "volume_ml": 0.005, "mean": 131.0,
                                   "centroid_lps": [-4.5, 6.0, -7.0]}
    (tmp_path / "small.json").write_text(json.dumps({"method": "small-lesion-il", "image": "ct", "lesions": [
        {"id": 1, "voxels": 57, "volume_mm3": 41.0, "mean_hu": 128.3, "centroid_lps": [1.0, 2.0, 3.0]}]}))
    small = read_lesion_table(tmp_path / "small.json")
    assert small["lesions"] == table["lesions"][:1] and small["units"]["mean"] == "HU"


@pytest.mark.parametrize("text, message", [
    ("id,volume_ml\n1,2\n", r"lacks the column\(s\) centroid"),
    ("id,volume_ml,centroid_lps\n1,1,\n", "line 2 has no centroid"),
    ("id,volume_ml,centroid_lps\n1,1,1;2\n", "is not 3 numbers"),
    ("id,volume_ml,centroid_lps\n1,x,1;2;3\n", "volume_ml is 'x', not a number"),
    ("id,volume_ml,centroid_lps\n1,nan,1;2;3\n", "not a finite number"),
    ("id,volume_ml,centroid_lps\n1.5,1,1;2;3\n", "id '1.5' is not a positive whole number"),
    ("id,volume_ml,centroid_lps\n1,1,1;2;3\n1,1,1;2;3\n", r"numbers its lesions \[1, 1\], not 1..2"),
    ("id,volume_ml,centroid_lps\n1,,1;2;3\n", "volume_ml is missing"),
])
def test_bad_tables_raise(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_lesion_table(path)


def test_unreadable_files_raise(tmp_path):
    with pytest.raises(InputError, match="no lesion table"):
        read_lesion_table(tmp_path / "none.json")
    for name, text, message in (("bad.json", "{not json", "cannot be read"), ("list.json", '{"lesions": {"id": 1}}',
                                                                              "has no list of lesions"),
                                ("t.txt", "", ".csv or .json")):
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=message):
            read_lesion_table(tmp_path / name)
