"""LesionSegLib.lesiontable and the pure parts of LesionSegLib.wholevolume offline: the backend's lesion table (this
format, CT and PET, and the two older ones) as panel rows, cells, table-node columns, summaries and segment specs;
the options check, the run record, a label placed on a volume's grid and its lesions numbered as the backend does."""
from __future__ import annotations

import json

import numpy as np
import pytest
from LesionSegLib import lesiontable, results, scene, wholevolume

from lesionseg import InputError
from lesionseg.lesions import lesion_table, write_lesion_table

IJK_TO_RAS = np.array([[-2.0, 0, 0, 40.0], [0, -2.0, 0, 30.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]])


def two_lesion_pet():
    """PET (SUV 1 background, lesions of 12 voxels at SUV 8 and 4 voxels at SUV 5) and CT on one grid."""
    pet = np.ones((8, 24, 20), np.float32)
    pet[2:5, 4:6, 4:6] = 8.0
    pet[5, 15:17, 10:12] = 5.0
    ct = np.full(pet.shape, 40, np.int16)
    ct[:, :, :3] = -1000
    return scene.image_from_volume_array(pet, IJK_TO_RAS), scene.image_from_volume_array(ct, IJK_TO_RAS)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_pet_and_ct_tables_read_as_rows(tmp_path, suffix):
    pet, ct = two_lesion_pet()
    label = pet.with_array((pet.array > 3).astype(np.uint8))
    path = write_lesion_table(lesion_table(label, ct, pet=pet), tmp_path / f"pet{suffix}")
    rows = lesiontable.read_lesion_rows(path)
    assert [(r.id, r.voxels, r.suv_max, r.mean) for r in rows] == [(1, 12, 8.0, 40.0), (2, 4, 5.0, 40.0)]
    assert rows[0].volume_ml == pytest.approx(12 * 12e-3) and rows[0].tlg_ml == pytest.approx(8 * 12 * 12e-3)
    np.testing.assert_allclose(rows[0].centroid_ras, (IJK_TO_RAS @ [4.5, 4.5, 3.0, 1.0])[:3])
    assert rows[0].cells()[:5] == ("1", "0.14", "8.00", "8.00", "1.2") and len(rows[0].cells()) == 6
    assert lesiontable.summary(rows) == "2 lesions: 0.2 mL in total, TLG 1.4, highest SUVmax 8.00"
    names, columns = lesiontable.table_columns(rows)
    assert names == lesiontable.PET_TABLE_COLUMNS and len(columns) == len(names) and columns[0].dtype == np.int32
    np.testing.assert_array_equal(columns[0], [1, 2])
    np.testing.assert_allclose(np.column_stack(columns[6:]), [r.centroid_ras for r in rows])
    assert set(rows[0].as_dict()) == {"id", "voxels", "volume_ml", "mean", "centroid_lps", "centroid_ras", "suv_max",
                                      "suv_mean", "suv_peak", "tlg_ml"}

    ct_rows = lesiontable.read_lesion_rows(write_lesion_table(lesion_table(label, ct), tmp_path / f"ct{suffix}"))
    assert [(r.id, r.voxels, r.mean, r.has_suv) for r in ct_rows] == [(1, 12, 40.0, False), (2, 4, 40.0, False)]
    assert ct_rows[1].cells() == ("2", "48", "40", "(" + ", ".join(f"{c:.1f}" for c in ct_rows[1].centroid_ras) + ")")
    assert lesiontable.summary(ct_rows) == "2 lesions, 192 mm\u00b3 in total (largest 144 mm\u00b3)"
    names, columns = lesiontable.table_columns(ct_rows)
    assert names == lesiontable.CT_TABLE_COLUMNS and columns[2].tolist() == [40.0, 40.0]
    assert "suv_max" not in ct_rows[0].as_dict()
    assert lesiontable.table_columns([])[1][3].shape == (0,) and lesiontable.summary([]) == "No lesion found."


@pytest.mark.parametrize("centroid_header,centroid", [("centroid_lps", '"10.0;-20.5;30"'),
                                                      ("centroid_lps", '"[10.0, -20.5, 30]"'),
                                                      ("centroid_x,centroid_y,centroid_z", "10.0,-20.5,30"),
                                                      ("centroid_l_mm,centroid_p_mm,centroid_s_mm", "10.0,-20.5,30")])
def test_old_autopet_tables_still_load(tmp_path, centroid_header, centroid):
    path = tmp_path / "lesions.csv"
    path.write_text(f"id,voxels,volume_ml,suv_max,suv_mean,suv_peak,tlg,{centroid_header}\n"
                    f"1,12,1.5,9.5,4.25,,6.375,{centroid}\n")
    (row,) = lesiontable.read_lesion_rows(path)
    assert (row.id, row.voxels, row.volume_ml, row.suv_max, row.tlg_ml, row.suv_peak) == (1, 12, 1.5, 9.5, 6.375, None)
    assert row.centroid_lps == (10.0, -20.5, 30.0) and row.centroid_ras == (-10.0, 20.5, 30.0)
    assert row.cells() == ("1", "1.50", "9.50", "4.25", "6.4", "(-10.0, 20.5, 30.0)")
    assert np.isnan(lesiontable.table_columns([row])[1][4][0])  # SUVpeak missing: NaN in the table node


def test_old_small_lesion_tables_still_load(tmp_path):
    rows = [{"id": 1, "voxels": 57, "volume_mm3": 41.04, "mean_hu": 128.3, "centroid_lps": [1.0, 2.0, 3.0]},
            {"id": 2, "voxels": 8, "volume_mm3": 5.76, "mean_hu": 131.0, "centroid_lps": [-4.5, 6.0, -7.0]}]
    (tmp_path / "lesions.json").write_text(json.dumps({"method": "small-lesion-il", "image": "ct", "lesions": rows}))
    found = lesiontable.read_lesion_rows(tmp_path / "lesions.json")
    assert [(r.id, r.voxels, r.volume_mm3, r.mean) for r in found] == [(1, 57, pytest.approx(41.04), 128.3),
                                                                      (2, 8, pytest.approx(5.76), 131.0)]
    assert found[1].centroid_ras == (4.5, -6.0, -7.0) and found[1].cells() == ("2", "5.8", "131", "(4.5, -6.0, -7.0)")
    (tmp_path / "lesions.csv").write_text("id,voxels,volume_mm3,mean_hu,centroid_x_mm,centroid_y_mm,centroid_z_mm\n"
                                          "1,57,41.04,128.3,1.0,2.0,3.0\n2,,5.76,131.0,-4.5,6.0,-7.0\n")
    from_csv = lesiontable.read_lesion_rows(tmp_path / "lesions.csv")
    assert from_csv[0] == found[0] and from_csv[1].voxels is None
    assert lesiontable.summary(found) == "2 lesions, 47 mm\u00b3 in total (largest 41 mm\u00b3)"


def test_bad_tables_raise_value_errors(tmp_path):
    with pytest.raises(ValueError, match="wrote no lesion table"):
        lesiontable.read_lesion_rows(tmp_path / "lesions.csv")
    for text, message in (("id,volume_ml\n1,2\n", "lacks the column"), ("id,volume_ml,centroid_lps\n1,x,1;2;3\n",
                                                                          "volume_ml is 'x', not a number")):
        (tmp_path / "lesions.csv").write_text(text)
        with pytest.raises(ValueError, match=message):
            lesiontable.read_lesion_rows(tmp_path / "lesions.csv")


def test_count_mismatch_and_segment_specs(tmp_path):
    pet, _ = two_lesion_pet()
    label = pet.with_array((pet.array > 3).astype(np.uint8))
    rows = lesiontable.read_lesion_rows(write_lesion_table(lesion_table(label, pet, pet=pet), tmp_path / "t.csv"))
    assert lesiontable.count_mismatch(rows, [12, 4]) is None
    assert lesiontable.count_mismatch(rows, [12]) == "the lesion table lists 2 lesions, the label holds 1"
    assert lesiontable.count_mismatch(rows, [12, 5]) == "lesion 2 has 4 voxels in the table and 5 in the label"
    (one,) = lesiontable.segment_specs(3, per_lesion=False, tags={"x": "y"})
    assert (one.label, one.name, one.tags) == (1, "lesions", {"x": "y", lesiontable.LESION_COUNT_TAG: "3"})
    specs = lesiontable.segment_specs(3)
    assert [(s.label, s.name, s.tags[lesiontable.LESION_ID_TAG]) for s in specs] == [
        (1, "lesion 1", "1"), (2, "lesion 2", "2"), (3, "lesion 3", "3")]
    assert specs[1].color == results.lesion_color("lesion 2") and len({s.color for s in specs}) == 3
    assert all("SCT^4147007^Mass" in s.terminology for s in specs + [one])
    assert [s.name for s in lesiontable.segment_specs(2, names=["a", "b"])] == ["a", "b"]
    with pytest.raises(ValueError, match="1 segment names for 2 lesions"):
        lesiontable.segment_specs(2, names=["a"])


def test_options_and_run_record(tmp_path):
    wholevolume.check_options(None, "cpu")
    wholevolume.check_options(tmp_path, "auto")
    with pytest.raises(ValueError, match="device must be one of"):
        wholevolume.check_options(None, "gpu")
    with pytest.raises(ValueError, match="weights folder .* does not exist"):
        wholevolume.check_options(tmp_path / "nope")
    assert wholevolume.output_paths(tmp_path, {"label": "l.nii.gz"}) == {"label": tmp_path / "l.nii.gz"}
    job = wholevolume.Job(None, tmp_path, {"pet": "P", "ct": "C"}, None, {"table": "t.csv"}, ("ct.nrrd",), 0.0)
    assert job.volumeNode == "P" and job.output_dir == tmp_path / "out" and job.options == {}
    assert job.outputs == {"table": tmp_path / "out" / "t.csv"} and job.input_paths() == [tmp_path / "ct.nrrd"]


def test_lesions_numbered_as_the_backend_does():
    mask = np.zeros((6, 8, 8), np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1  # corner-touching: one lesion with 26-connectivity, two with 18
    mask[4, 5:8, 6] = 1
    ids, counts = wholevolume.lesion_labels(mask, IJK_TO_RAS, 26)
    assert counts.tolist() == [3, 2] and ids.dtype == np.int32 and ids[4, 5, 6] == 1
    assert ids[1, 1, 1] == ids[2, 2, 2] == 2
    assert wholevolume.lesion_labels(mask, IJK_TO_RAS, 18)[1].tolist() == [3, 1, 1]
    assert wholevolume.lesion_labels(np.zeros((2, 2, 2), np.uint8), IJK_TO_RAS, 18)[1].size == 0


def test_label_onto_grid_exact_flipped_and_off_grid():
    pet, _ = two_lesion_pet()
    mask = (pet.array > 3).astype(np.uint8)
    shape = pet.shape
    exact = wholevolume.label_onto_grid(pet.with_array(mask * 3), shape, IJK_TO_RAS, allow_resample=False)
    np.testing.assert_array_equal(exact, mask)
    flipped_geometry = IJK_TO_RAS @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, shape[0] - 1], [0, 0, 0, 1.0]])
    flipped = scene.image_from_volume_array(mask[::-1].copy(), flipped_geometry)
    with pytest.raises(InputError, match="origin .* differs from the volume"):
        wholevolume.label_onto_grid(flipped, shape, IJK_TO_RAS, allow_resample=False)
    np.testing.assert_array_equal(wholevolume.label_onto_grid(flipped, shape, IJK_TO_RAS, allow_resample=True), mask)
    far = scene.image_from_volume_array(mask, IJK_TO_RAS + np.array([[0, 0, 0, 900.0]] + [[0] * 4] * 3))
    with pytest.raises(InputError, match="do not overlap"):
        wholevolume.label_onto_grid(far, shape, IJK_TO_RAS, allow_resample=True)
