"""LesionSegAutoPETLib offline: PET units and the SUV check, backend arguments, CT pairing, the lesion table (all
centroid spellings, bad tables), segment specs, the label placed on the PET grid (exact, flipped, off the grid),
and the PET DICOM export."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXTENSION
from LesionSegLib import scene

from lesionseg import Image, InputError
from lesionseg.methods.autopet.lesion_table import lesion_table, write_table

sys.path.insert(0, str(EXTENSION / "LesionSegAutoPET"))
from LesionSegAutoPETLib import autopet, inputs, lesions, loading, pairing  # noqa: E402

IJK_TO_RAS = np.array([[-2.0, 0, 0, 40.0], [0, -2.0, 0, 30.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]])


def test_units_arguments_and_checks():
    assert autopet.PetUnits("suv").arguments() == ["--pet-units", "suv"]
    units = autopet.PetUnits(autopet.unit_value("Bq/mL"), 70.0, 350.0, 60.0)
    assert units.arguments() == ["--pet-units", "bqml", "--weight-kg", "70.0", "--dose-bq", "350000000.0",
                                 "--decay-s", "3600.0", "--half-life-s", "6586.2"]
    for weight, dose in ((None, 350.0), (70.0, 0.0), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match="needs .*to be converted to SUV"):
            autopet.PetUnits("bqml", weight, dose).check()
    with pytest.raises(ValueError, match="minutes"):
        autopet.PetUnits("bqml", 70.0, 350.0, -1.0).check()
    with pytest.raises(ValueError, match="PET units must be one of"):
        autopet.unit_value("counts")
    assert autopet.unit_value("SUV (already converted)") == "suv"


def test_value_range_check():
    assert autopet.value_range_problem(0.0, 25.0, "suv") is None
    assert autopet.value_range_problem(-0.2, 12.0, "suv") is None  # faint negative noise is accepted
    assert autopet.value_range_problem(-300.0, 30000.0, "bqml") is None
    assert "negative values" in autopet.value_range_problem(-1024.0, 3071.0, "bqml")
    assert "negative values" in autopet.value_range_problem(-0.6, 2.0, "suv")
    for low, high in ((-1024.0, 3071.0), (0.0, 0.3), (0.0, 25000.0)):
        assert autopet.value_range_problem(low, high, "suv").startswith("this does not look like PET in SUV")
    assert "look like Bq/mL" in autopet.value_range_problem(0.0, 25000.0, "suv")
    assert autopet.value_range_problem(0.0, 25000.0, "Bq/mL") is None
    assert autopet.value_range_problem(0.0, 12.0, "bqml").startswith("this does not look like PET in Bq/mL")
    assert "not finite" in autopet.value_range_problem(np.float32(0), np.float32("nan"), "suv")
    assert autopet.modality_problem("CT", "PT").endswith("are PET and CT swapped?")
    assert autopet.modality_problem("", "PT") == "the volume chosen as CT is a PT series; are PET and CT swapped?"
    assert autopet.modality_problem("PT", "CT") is None and autopet.modality_problem("", "") is None
    assert autopet.input_problem(True, False).startswith("Select the CT")
    assert autopet.input_problem(True, True, same=True) == "The same volume is chosen as PET and as CT."
    assert autopet.units_panel_state(True, True, "Bq/mL") == autopet.UnitsPanelState(
        False, False, "DICOM: converted to SUV from its tags (no units to give)")
    assert autopet.units_panel_state(True, False, "Bq/mL") == autopet.UnitsPanelState(True, True,
                                                                                      "File: say what it holds")
    assert autopet.units_panel_state(True, False, "SUV (already converted)").bqml_enabled is False
    assert autopet.units_panel_state(False, False, "Bq/mL") == autopet.UnitsPanelState(False, False, "")


def test_predict_arguments(tmp_path):
    pet_dir = tmp_path / "pet_dicom"
    pet_dir.mkdir()
    out = tmp_path / "out"
    args = autopet.predict_arguments(tmp_path / "pet.nrrd", Path("ct.nrrd"), out, autopet.PetUnits("suv"), None, "cpu")
    assert args == ["predict", "autopet-l2snet", str(tmp_path / "pet.nrrd"), "ct.nrrd", "-o", str(out / "seg.nii.gz"),
                    "--table", str(out / "lesions.csv"), "--mip", str(out / "mip.png"), "--device", "cpu",
                    "--pet-units", "suv"]
    args = autopet.predict_arguments(pet_dir, Path("ct.nrrd"), out, None, tmp_path)
    assert args[2] == str(pet_dir) and "--pet-units" not in args and args[-2:] == ["--weights", str(tmp_path)]
    with pytest.raises(ValueError, match="converted from its tags"):
        autopet.predict_arguments(pet_dir, Path("ct"), out, autopet.PetUnits("suv"))
    with pytest.raises(ValueError, match="say what the PET file holds"):
        autopet.predict_arguments(tmp_path / "pet.nrrd", Path("ct"), out, None)
    with pytest.raises(ValueError, match="does not exist"):
        autopet.predict_arguments(pet_dir, Path("ct"), out, None, tmp_path / "missing")
    with pytest.raises(ValueError, match="device"):
        autopet.predict_arguments(pet_dir, Path("ct"), out, None, device="gpu")


def test_pairing_picks_the_one_ct_of_the_study():
    V = pairing.VolumeInfo
    study, other = pairing.study_key("1.2.3"), pairing.study_key("", 7, 1)
    assert (study, other, pairing.study_key("", 1, 1), pairing.study_key()) == ("dicom:1.2.3", "item:7", "", "")
    assert pairing.guess_modality(-1024.0) == "CT" and pairing.guess_modality(0.0) == ""
    assert pairing.guess_modality(-1024.0, " pt ") == "PT"
    scene_ = [V("pet", study, "PT"), V("ct", study, "CT"), V("ct2", other, "CT"), V("pet2", study, "PT")]
    assert pairing.pick_ct("pet", scene_) == pairing.Pairing("ct", "CT paired automatically: same study as the PET")
    assert pairing.pick_ct("pet", scene_ + [V("ct3", study, "CT")]) == pairing.Pairing(
        None, "2 CT volumes in the PET's study; choose one")
    assert pairing.pick_ct("pet", [V("pet", other, ""), V("x", other, "")]).ct_id == "x"
    assert pairing.pick_ct("pet", [V("pet", other), V("x", other), V("y", other)]).ct_id is None
    assert pairing.pick_ct("pet", [V("pet", "", "PT"), V("ct", "", "CT")]).reason.startswith("the PET is not in")
    assert pairing.pick_ct("nope", scene_).ct_id is None


CSV_HEADER = "id,voxels,volume_ml,suv_max,suv_mean,suv_peak,tlg,"


@pytest.mark.parametrize("centroid_header,centroid", [("centroid_lps", '"10.0;-20.5;30"'),
                                                      ("centroid_lps", '"[10.0, -20.5, 30]"'),
                                                      ("centroid_x,centroid_y,centroid_z", "10.0,-20.5,30"),
                                                      ("centroid_l_mm,centroid_p_mm,centroid_s_mm", "10.0,-20.5,30")])
def test_read_lesion_csv_centroid_spellings(tmp_path, centroid_header, centroid):
    path = tmp_path / "lesions.csv"
    path.write_text(f"{CSV_HEADER}{centroid_header}\n1,12,1.5,9.5,4.25,,6.375,{centroid}\n")
    (row,) = lesions.read_lesion_csv(path)
    assert (row.id, row.voxels, row.volume_ml, row.suv_max, row.tlg) == (1, 12, 1.5, 9.5, 6.375)
    assert np.isnan(row.suv_peak) and row.centroid_lps == (10.0, -20.5, 30.0)
    assert row.centroid_ras == (-10.0, 20.5, 30.0)
    assert row.cells() == ("1", "1.50", "9.50", "4.25", "6.4", "(-10.0, 20.5, 30.0)")
    assert row.as_dict()["centroid_ras"] == [-10.0, 20.5, 30.0]


def test_read_lesion_csv_rejects_bad_tables(tmp_path):
    path = tmp_path / "lesions.csv"
    with pytest.raises(ValueError, match="wrote no lesion table"):
        lesions.read_lesion_csv(path)
    bad = {"id,volume_ml\n1,2\n": "lacks the column\\(s\\) suv_max, suv_mean, tlg",
           f"{CSV_HEADER}centroid_lps\n1,1,1,1,1,1,1,\n": "line 2 has no centroid",
           f"{CSV_HEADER}centroid_lps\n1,1,1,1,1,1,1,1;2\n": "not three finite numbers",
           f"{CSV_HEADER}centroid_lps\n1,1,x,1,1,1,1,1;2;3\n": "volume_ml is 'x', not a number",
           f"{CSV_HEADER}centroid_lps\n1.5,1,1,1,1,1,1,1;2;3\n": "not a positive whole number",
           f"{CSV_HEADER}centroid_lps\n1,1,1,1,1,1,1,1;2;3\n1,1,1,1,1,1,1,1;2;3\n": "repeats lesion ids"}
    for text, message in bad.items():
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            lesions.read_lesion_csv(path)
    path.write_text(CSV_HEADER + "centroid_lps\n")
    assert lesions.read_lesion_csv(path) == [] and lesions.summary([]) == "No lesion found."


def two_lesion_pet() -> tuple[Image, Image]:
    """PET (SUV 1 background, lesions of 12 voxels at SUV 8 and 4 voxels at SUV 5) and CT on one grid."""
    pet = np.ones((8, 24, 20), np.float32)
    pet[2:5, 4:6, 4:6] = 8.0
    pet[5, 15:17, 10:12] = 5.0
    ct = np.full(pet.shape, 40, np.int16)
    ct[:, :, :3] = -1000
    return (scene.image_from_volume_array(pet, IJK_TO_RAS), scene.image_from_volume_array(ct, IJK_TO_RAS))


def test_backend_table_rows_columns_and_mismatch(tmp_path):
    pet, _ = two_lesion_pet()
    label = pet.with_array((pet.array > 3).astype(np.uint8))
    rows = lesions.read_lesion_csv(write_table(lesion_table(label, pet), tmp_path / "lesions.csv"))
    assert [(r.id, r.voxels, r.suv_max) for r in rows] == [(1, 12, 8.0), (2, 4, 5.0)]
    assert rows[0].volume_ml == pytest.approx(12 * 12e-3) and rows[0].tlg == pytest.approx(8 * 12 * 12e-3)
    np.testing.assert_allclose(rows[0].centroid_ras, (IJK_TO_RAS @ [4.5, 4.5, 3.0, 1.0])[:3])
    columns = lesions.table_columns(rows)
    assert len(columns) == len(lesions.TABLE_COLUMNS) and columns[0].dtype == np.int32
    np.testing.assert_array_equal(columns[0], [1, 2])
    np.testing.assert_allclose(np.column_stack(columns[6:]), [r.centroid_ras for r in rows])
    assert lesions.table_columns([])[3].shape == (0,)
    ids, counts = loading.lesion_labels(label.array, IJK_TO_RAS)
    assert counts.tolist() == [12, 4] and ids[3, 4, 4] == 1 and ids[5, 15, 10] == 2
    assert lesions.count_mismatch(rows, counts) is None
    assert lesions.count_mismatch(rows, [12]) == "the lesion table lists 2 lesions, the label holds 1"
    assert lesions.count_mismatch(rows, [12, 5]) == "lesion 2 has 4 voxels in the table and 5 in the label"
    assert lesions.summary(rows) == "2 lesions: 0.2 mL in total, TLG 1.4, highest SUVmax 8.00"


def test_segment_specs():
    (one,) = lesions.segment_specs([1, 2, 3], per_lesion=False)
    assert (one.label, one.name, one.tags) == (1, "lesions", {"LesionSeg.lesions": "3"})
    specs = lesions.segment_specs(range(1, 4), per_lesion=True)
    assert [(s.label, s.name, s.tags[lesions.LESION_ID_TAG]) for s in specs] == [
        (1, "lesion 1", "1"), (2, "lesion 2", "2"), (3, "lesion 3", "3")]
    assert len({s.color for s in specs}) == 3 and all("SCT^4147007^Mass" in s.terminology for s in specs + [one])
    assert lesions.segmentation_name("PET AC") == "PET AC lesions"


def test_label_onto_grid_exact_flipped_and_off_grid():
    pet, _ = two_lesion_pet()
    mask = (pet.array > 3).astype(np.uint8)
    shape = pet.shape
    exact = loading.label_onto_grid(pet.with_array(mask * 3), shape, IJK_TO_RAS, allow_resample=False)
    np.testing.assert_array_equal(exact, mask)
    flipped_geometry = IJK_TO_RAS @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, shape[0] - 1], [0, 0, 0, 1.0]])
    flipped = scene.image_from_volume_array(mask[::-1].copy(), flipped_geometry)
    with pytest.raises(InputError, match="origin .* differs from the volume"):
        loading.label_onto_grid(flipped, shape, IJK_TO_RAS, allow_resample=False)
    np.testing.assert_array_equal(loading.label_onto_grid(flipped, shape, IJK_TO_RAS, allow_resample=True), mask)
    far = scene.image_from_volume_array(mask, IJK_TO_RAS + np.array([[0, 0, 0, 900.0]] + [[0] * 4] * 3))
    with pytest.raises(InputError, match="do not overlap"):
        loading.label_onto_grid(far, shape, IJK_TO_RAS, allow_resample=True)


def test_copy_dicom_files(tmp_path):
    files = {f"1.2.{n}": tmp_path / f"src{n}.dcm" for n in range(3)}
    for n, path in enumerate(files.values()):
        path.write_bytes(bytes([n]) * 10)
    folder = inputs.copy_dicom_files(list(files), lambda uid: str(files[uid]), tmp_path / "pet_dicom")
    assert sorted(p.name for p in folder.iterdir()) == ["00000.dcm", "00001.dcm", "00002.dcm"]
    assert (folder / "00002.dcm").read_bytes() == bytes([2]) * 10
    with pytest.raises(InputError, match="1 of 3 DICOM files of the PET are no longer"):
        inputs.copy_dicom_files(list(files), lambda uid: "" if uid == "1.2.1" else str(files[uid]), tmp_path / "b")
    with pytest.raises(InputError, match="not loaded from DICOM"):
        inputs.copy_dicom_files([], str, tmp_path / "c")
    assert not (tmp_path / "b").exists()
