"""LesionSegAutoPETLib offline: PET units and the SUV check, backend arguments, CT pairing and the PET DICOM export
(the lesion table, segment specs and the label placed on the PET grid: test_slicer_lesiontable.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXTENSION

from lesionseg import InputError

sys.path.insert(0, str(EXTENSION / "LesionSegAutoPET"))
from LesionSegAutoPETLib import autopet, inputs, pairing  # noqa: E402


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
    assert autopet.input_problem(True, False) is None  # no CT: PET-only mode, with a notice
    assert autopet.input_problem(False, True) == "Select the PET volume."
    assert autopet.input_notice(True, False) == autopet.PET_ONLY_NOTICE and autopet.input_notice(True, True) == ""
    assert autopet.input_notice(False, False) == "" and "PET-only mode" in autopet.PET_ONLY_NOTICE
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
    alone = autopet.predict_arguments(tmp_path / "pet.nrrd", None, out, autopet.PetUnits("suv"), None, "cpu", True)
    assert alone == ["predict", "autopet-l2snet", str(tmp_path / "pet.nrrd"), "-o", str(out / "seg.nii.gz"),
                     "--table", str(out / "lesions.csv"), "--mip", str(out / "mip.png"), "--device", "cpu",
                     "--pet-units", "suv", "--allow-pet-only"]
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


def test_segmentation_name():
    assert autopet.segmentation_name("PET AC") == "PET AC lesions"


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
