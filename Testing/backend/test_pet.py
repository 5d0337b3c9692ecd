"""PET input: SUVbw from DICOM tags (synthetic series built with pydicom, and the real STS_001 series when
../shared/data is present), explicit units for files, PET/CT checks and pairing, and ``lesionseg suv``."""
from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from lesionseg import Image, InputError, OutputExistsError, write_image
from lesionseg.errors import LesionSegWarning
from lesionseg.pet import (check_pet, check_pet_ct, looks_like_ct, looks_like_pet, pair_pet_ct, read_pet,
                           suv_factor_from_dicom)

WEIGHT, DOSE, HALF = 70.0, 370e6, 6586.2
PET_SOP = "1.2.840.10008.5.1.4.1.1.128"
RADIO_TAGS = ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime")


def write_pet_series(folder: Path, n: int = 3, frames: int = 1, radio: dict | None = None, prefix: str = "f",
                     **tags) -> Path:
    """A BQML PET series of ``n`` 8x8 slices (x ``frames`` at the same positions) in ``folder``.

    Injection 10:00:00, series and acquisition 11:00:00 on 2020-01-02; slice k holds
    ``(k*64 + arange(64)) * slope_k`` Bq/mL with ``slope_k = 50 * (k + 1)`` (SUV up to ~8). ``tags`` / ``radio`` override
    header / RadiopharmaceuticalInformationSequence keywords (None deletes).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for f in range(frames):
        for k in range(n):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = PET_SOP
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
            ds.Modality, ds.Units, ds.DecayCorrection = "PT", "BQML", "START"
            ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
            ds.SeriesType = ["DYNAMIC" if frames > 1 else "STATIC", "IMAGE"]
            ds.PatientWeight = WEIGHT
            ds.SeriesDate = ds.AcquisitionDate = "20200102"
            ds.SeriesTime = ds.AcquisitionTime = "110000"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", series_uid
            ds.FrameOfReferenceUID, ds.InstanceNumber = "1.2.3.4", f * n + k + 1
            item = Dataset()
            item.RadionuclideTotalDose, item.RadionuclideHalfLife = DOSE, HALF
            item.RadiopharmaceuticalStartTime = "100000"
            for key, value in (radio or {}).items():
                setattr(item, key, value) if value is not None else delattr(item, key)
            ds.RadiopharmaceuticalInformationSequence = [item]
            ds.ImagePositionPatient = [-20.0, -20.0, 3.0 * k]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing, ds.SliceThickness = [5.0, 5.0], 3.0
            ds.Rows = ds.Columns = 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.RescaleSlope, ds.RescaleIntercept = 50.0 * (k + 1), 0.0
            ds.PixelData = (k * 64 + np.arange(64, dtype=np.uint16)).tobytes()
            for key, value in tags.items():
                setattr(ds, key, value) if value is not None else delattr(ds, key)
            ds.save_as(folder / f"{prefix}{f}_{k}.dcm", enforce_file_format=True)
    return folder


def expected_bqml(n: int = 3, slope: float | None = None) -> np.ndarray:
    """The Bq/mL array ``(n, 8, 8)`` of :func:`write_pet_series` (``slope``: one RescaleSlope for all)."""
    return np.stack([(k * 64 + np.arange(64.0)).reshape(8, 8) * (slope or 50.0 * (k + 1)) for k in range(n)])


def factor(decay_s: float) -> float:
    return WEIGHT * 1000.0 / (DOSE * 2.0 ** (-decay_s / HALF))


def test_factor_arithmetic_and_suv_voxels(tmp_path):
    folder = write_pet_series(tmp_path / "pet")
    info = suv_factor_from_dicom(folder)
    assert info.factor == pytest.approx(factor(3600.0), rel=1e-12)
    assert (info.weight_kg, info.injected_dose_bq, info.half_life_s, info.decay_seconds) == (70.0, DOSE, HALF, 3600.0)
    assert info.decayed_dose_bq == pytest.approx(DOSE * 2.0 ** (-3600.0 / HALF), rel=1e-12)
    assert info.injection_time == datetime(2020, 1, 2, 10) and info.reference_time == datetime(2020, 1, 2, 11)
    assert (info.units, info.decay_correction, info.corrected_image) == ("BQML", "START", True)
    suv = read_pet(folder)
    assert suv.meta["units"] == "SUVbw" and suv.meta["suv"] == info and suv.array.dtype == np.float32
    np.testing.assert_allclose(suv.array, expected_bqml() * info.factor, rtol=1e-6)
    np.testing.assert_allclose(suv.spacing, (5.0, 5.0, 3.0))
    assert suv_factor_from_dicom(sorted(folder.iterdir())).factor == info.factor  # a list of files works too


@pytest.mark.parametrize("keyword", ["Units", "PatientWeight", "DecayCorrection", "SeriesTime", "SeriesDate",
                                     "RadiopharmaceuticalInformationSequence", *RADIO_TAGS])
def test_each_missing_tag_is_named(tmp_path, keyword):
    kwargs = {"radio": {keyword: None}} if keyword in RADIO_TAGS else {keyword: None}
    with pytest.raises(InputError, match=f"lacks {keyword} "):
        suv_factor_from_dicom(write_pet_series(tmp_path / "pet", **kwargs))


def test_admin_decay_correction_needs_no_decay(tmp_path):
    info = suv_factor_from_dicom(write_pet_series(tmp_path / "pet", DecayCorrection="ADMIN", SeriesTime=None,
                                                  radio={"RadiopharmaceuticalStartTime": None}))
    assert info.factor == pytest.approx(WEIGHT * 1000.0 / DOSE, rel=1e-12) and info.decay_seconds == 0.0
    assert any("ADMIN" in note for note in info.notes)


@pytest.mark.parametrize("tags, match", [
    ({"Units": "CNTS"}, "Units CNTS"),
    ({"DecayCorrection": "NONE"}, "DecayCorrection NONE"),
    ({"CorrectedImage": ["DECY", "SCAT"]}, "not attenuation-corrected"),
    ({"Modality": "CT"}, "swapped"),
    ({"Units": "GML", "SUVType": "LBM"}, "not body-weight"),
    ({"PatientWeight": 71000}, "kg, not g"),
    ({"PatientWeight": 0}, "positive"),
])
def test_unsupported_headers(tmp_path, tags, match):
    with pytest.raises(InputError, match=match):
        suv_factor_from_dicom(write_pet_series(tmp_path / "pet", **tags))


def test_gml_passes_through_as_suv(tmp_path):
    folder = write_pet_series(tmp_path / "pet", Units="GML", PatientWeight=None, RescaleSlope=0.01)
    assert suv_factor_from_dicom(folder).factor == 1.0
    np.testing.assert_allclose(read_pet(folder).array, expected_bqml(slope=0.01), rtol=1e-6)
    with pytest.raises(InputError, match="contradicts"):
        read_pet(folder, units="bqml")


def test_series_time_after_acquisition_time_uses_earliest_acquisition(tmp_path):
    folder = write_pet_series(tmp_path / "pet", SeriesTime="114500")
    info = suv_factor_from_dicom(folder)
    assert info.reference_time == datetime(2020, 1, 2, 11) and info.decay_seconds == 3600.0
    assert any("after the earliest AcquisitionTime" in note for note in info.notes)


def test_earliest_series_time_and_start_datetime(tmp_path):
    folder = write_pet_series(tmp_path / "pet", AcquisitionTime=None,
                              radio={"RadiopharmaceuticalStartDateTime": "20200102103000"})
    one = pydicom.dcmread(folder / "f0_2.dcm")
    one.SeriesTime = "104500"
    one.save_as(folder / "f0_2.dcm")
    info = suv_factor_from_dicom(folder)
    assert info.decay_seconds == 900.0 and info.factor == pytest.approx(factor(900.0), rel=1e-12)
    assert info.injection_time == datetime(2020, 1, 2, 10, 30)
    with pytest.raises(InputError, match="after the scan start"):
        suv_factor_from_dicom(write_pet_series(tmp_path / "late", radio={
            "RadiopharmaceuticalStartDateTime": "20200102113000"}))


def test_injection_before_midnight(tmp_path):
    info = suv_factor_from_dicom(write_pet_series(tmp_path / "pet", SeriesTime="003000", AcquisitionTime="003000",
                                                  radio={"RadiopharmaceuticalStartTime": "233000"}))
    assert info.decay_seconds == 3600.0 and info.injection_time == datetime(2020, 1, 1, 23, 30)


def test_several_series_are_listed_and_4d_is_refused(tmp_path):
    write_pet_series(tmp_path / "two")
    write_pet_series(tmp_path / "two", prefix="ct", Modality="CT")
    with pytest.raises(InputError, match=r"holds 2 DICOM series; choose one with --series: .*\(PT, 3 files\)"):
        read_pet(tmp_path / "two")
    with pytest.raises(InputError, match=r"4D PET \(2 frames of 3 slices"):
        read_pet(write_pet_series(tmp_path / "dyn", frames=2))


def test_file_input_needs_units(tmp_path):
    bqml = Image(expected_bqml().astype(np.float32) + 1000.0, (4.0, 4.0, 3.0))
    path = write_image(bqml, tmp_path / "pet.nii.gz")
    with pytest.raises(InputError, match="--pet-units suv"):
        read_pet(path)
    with pytest.raises(InputError, match="patient weight"):
        read_pet(path, units="bqml", dose_bq=DOSE, decay_s=0)
    with pytest.raises(InputError, match="injected dose"):
        read_pet(path, units="bqml", weight_kg=WEIGHT)
    with pytest.raises(InputError, match="half-life"):
        read_pet(path, units="bqml", weight_kg=WEIGHT, dose_bq=DOSE, decay_s=60.0)
    with pytest.raises(InputError, match=r"holds Bq/mL-like values .*not SUV as --pet-units suv says: give "
                                         r"--pet-units bqml with --weight-kg and --dose-bq"):
        read_pet(path, units="suv")
    suv = read_pet(path, units="bqml", weight_kg=WEIGHT, dose_bq=DOSE, decay_s=3600.0, half_life_s=HALF)
    np.testing.assert_allclose(suv.array, bqml.array * factor(3600.0), rtol=1e-6)
    same = read_pet(path, units="bqml", weight_kg=WEIGHT, decayed_dose_bq=DOSE * 2.0 ** (-3600.0 / HALF))
    np.testing.assert_array_equal(same.array, suv.array)
    np.testing.assert_array_equal(read_pet(write_image(suv, tmp_path / "suv.nrrd"), units="suv").array, suv.array)
    with pytest.raises(InputError, match="one DICOM file"):
        read_pet(next(write_pet_series(tmp_path / "dcm").iterdir()), units="suv")


def test_4d_file_lists_frames(tmp_path):
    vol = sitk.GetImageFromArray(np.random.default_rng(0).random((2, 4, 4)).astype(np.float32))
    sitk.WriteImage(sitk.JoinSeries([vol] * 3), str(tmp_path / "dyn.nii.gz"))
    with pytest.raises(InputError, match=r"4D PET \(3 frames"):
        read_pet(tmp_path / "dyn.nii.gz", units="suv")


def phantom_pair(shift_mm: float = 0.0) -> tuple[Image, Image]:
    """A (10, 16, 16) PET in SUV at 4 mm and a (20, 32, 32) CT in HU at 2 mm covering the same box."""
    rng = np.random.default_rng(1)
    suv = np.abs(rng.normal(0.5, 0.2, (10, 16, 16))).astype(np.float32)
    suv[4:6, 6:9, 6:9] = 8.0
    hu = rng.normal(40.0, 15.0, (20, 32, 32)).astype(np.int16)
    hu[:, :, :6] = -1000
    pet = Image(suv, (4.0, 4.0, 4.0), (-30.0, -30.0, 0.0))
    ct = Image(hu, (2.0, 2.0, 2.0), (-31.0 + shift_mm, -31.0, -1.0))
    return pet, ct


def test_value_heuristics_and_swaps():
    pet, ct = phantom_pair()
    assert looks_like_pet(pet.array) and not looks_like_ct(pet.array)
    assert looks_like_ct(ct.array) and not looks_like_pet(ct.array)
    assert not looks_like_pet(pet.array * 20000.0)  # Bq/mL
    check_pet_ct(pet, ct)
    with pytest.raises(InputError, match="look swapped"):
        check_pet_ct(Image(ct.array, pet.spacing * 0.5), Image(pet.array, ct.spacing * 2))
    with pytest.raises(InputError, match="PET looks like a CT"):
        check_pet_ct(ct, ct)
    with pytest.raises(InputError, match="CT looks like a PET"):
        check_pet_ct(pet, pet)
    with pytest.raises(InputError, match="constant"):
        check_pet_ct(pet.with_array(np.zeros(pet.shape, np.float32)), ct)
    with pytest.raises(InputError, match="CT is constant"):
        check_pet_ct(pet, ct.with_array(np.full(ct.shape, -1000, np.int16)))
    with pytest.warns(LesionSegWarning, match="is it in HU"):
        check_pet_ct(pet, ct.with_array(np.abs(ct.array) + 1000))


def test_pet_alone_must_be_a_3d_suv_volume(tmp_path):
    pet, ct = phantom_pair()
    check_pet(pet)
    for slices in (1, 2):
        flat = Image(pet.array[4:4 + slices].copy(), pet.spacing, pet.origin)
        for check in (lambda: check_pet(flat), lambda: check_pet_ct(flat, ct),
                      lambda: read_pet(write_image(flat, tmp_path / f"flat{slices}.nii.gz"), units="suv")):
            with pytest.raises(InputError, match=f"is 16x16x{slices} voxels .*: a 3D PET volume is needed"):
                check()
    with pytest.raises(InputError, match="PET is constant"):
        check_pet(pet.with_array(np.zeros(pet.shape, np.float32)))
    with pytest.raises(InputError, match=r"look like Bq/mL; .*--pet-units bqml with --weight-kg and --dose-bq"):
        check_pet(pet.with_array(pet.array * 20000.0))
    with pytest.raises(InputError, match="PET looks like a CT"):
        check_pet(ct)
    with pytest.raises(InputError, match=r"do not overlap .*session\? Use --flag\.$"):
        check_pet_ct(pet, phantom_pair(shift_mm=1000.0)[1], overlap_hint="Use --flag.")


def test_pairing_resamples_ct_onto_pet_grid():
    pet, ct = phantom_pair()
    paired = pair_pet_ct(pet, ct)
    assert paired.same_grid(pet) and paired.array.dtype == np.int16
    assert np.all(paired.array[:, :, 0] == -1000)  # the air columns of the CT
    assert pair_pet_ct(pet, paired) is paired
    shifted = pair_pet_ct(pet, phantom_pair(shift_mm=40.0)[1])
    assert np.all(shifted.array[:, :, :10] == -1000)  # outside the CT: -1000 HU
    with pytest.raises(InputError, match="do not overlap"):
        pair_pet_ct(pet, phantom_pair(shift_mm=1000.0)[1])


def suv_cli(argv: list[str]) -> argparse.Namespace:
    from lesionseg import cli_suv

    parser = argparse.ArgumentParser()
    cli_suv.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["suv", *argv])


def test_suv_command(tmp_path, capsys):
    from lesionseg import cli_suv
    from lesionseg.io import read_image

    folder, out = write_pet_series(tmp_path / "pet"), tmp_path / "suv.nii.gz"
    assert cli_suv.run(suv_cli([str(folder), "-o", str(out)])) == 0
    text = capsys.readouterr().out
    assert f"SUVbw factor {factor(3600.0):.6e}" in text and "PatientWeight 70 kg" in text and "decay 3600 s" in text
    np.testing.assert_allclose(read_image(out).array, expected_bqml() * factor(3600.0), rtol=1e-6)
    with pytest.raises(OutputExistsError):
        cli_suv.run(suv_cli([str(folder), "-o", str(out)]))
    write_pet_series(folder, prefix="again")
    with pytest.raises(InputError, match="2 DICOM series"):
        cli_suv.run(suv_cli([str(folder), "-o", str(tmp_path / "x.nii.gz")]))
    assert not (tmp_path / "x.nii.gz").exists()


def test_real_sts001_series_matches_reference(shared_data):
    from lesionseg.io import read_image

    folder = shared_data / "sts001-wholebody-fdgpet"
    info = suv_factor_from_dicom(folder / "dicom" / "PET")
    assert info.weight_kg == 71.0 and info.decay_seconds == 2711.0 and info.half_life_s == 6588.0
    assert info.injected_dose_bq == pytest.approx(388.8e6, rel=1e-3)
    assert info.decayed_dose_bq == pytest.approx(292.3e6, rel=1e-3)
    assert info.factor == pytest.approx(71000.0 / info.decayed_dose_bq, rel=1e-12)
    suv, ref = read_pet(folder / "dicom" / "PET"), read_image(folder / "PET_SUVbw.nii.gz")
    assert suv.same_grid(ref)
    rel = np.abs(suv.array.astype(np.float64) - ref.array) / ref.array.max()
    assert rel.max() < 1e-6  # measured 1.7e-7 (float32 rounding)
    assert np.corrcoef(suv.array.ravel(), ref.array.ravel())[0, 1] > 1 - 1e-9


def test_real_ibsi_pet_ct_pair(shared_data):
    from lesionseg.io import read_image

    case = shared_data / "ibsi-sts-petct" / "STS_001"
    pet, ct = read_pet(case / "PET_image.nii.gz", units="suv"), read_image(case / "CT_image.nii.gz")
    paired = pair_pet_ct(pet, ct)
    assert paired.same_grid(pet) and paired.array.min() >= -1000
    with pytest.raises(InputError, match="swapped"):
        check_pet_ct(ct, pet)


def edit_file(path: Path, radio: dict | None = None, **tags) -> None:
    """Set header keywords of one file (``radio``: in its RadiopharmaceuticalInformationSequence item)."""
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        setattr(ds, key, value)
    for key, value in (radio or {}).items():
        setattr(ds.RadiopharmaceuticalInformationSequence[0], key, value)
    ds.save_as(path)


DIFFERING = [
    ("PatientWeight", 95.0, r"PatientWeight \(0010,1030\) differs within series [\d.]+: 70 kg on 3 slices, "
                            r"95 kg on 1; SUV would be wrong on part of the volume; fix the tags"),
    ("Units", "CNTS", r"Units \(0054,1001\) differs within series .*: BQML on 3 slices, CNTS on 1"),
    ("DecayCorrection", "ADMIN", r"DecayCorrection \(0054,1102\) differs .*: START on 3 slices, ADMIN on 1"),
    ("CorrectedImage", ["DECY", "SCAT"], r"CorrectedImage \(0028,0051\) differs .*: ATTN/DECY on 3 slices, DECY on 1"),
    ("SeriesDate", "20200101", r"SeriesDate \(0008,0021\) differs .*: 20200102 on 3 slices, 20200101 on 1"),
    ("RadionuclideTotalDose", 400e6, r"RadionuclideTotalDose \(0018,1074\) differs .*: 3\.7e\+08 Bq on 3 slices, "
                                     r"4e\+08 Bq on 1"),
    ("RadionuclideHalfLife", 6588.0, r"RadionuclideHalfLife \(0018,1075\) differs .*: 6586\.2 s on 3 slices, "
                                     r"6588 s on 1"),
    ("RadiopharmaceuticalStartTime", "101500", r"RadiopharmaceuticalStartTime \(0018,1072\) differs .*: "
                                               r"10:00:00 on 3 slices, 10:15:00 on 1"),
    ("RadiopharmaceuticalStartDateTime", "20200102101500", r"RadiopharmaceuticalStartDateTime \(0018,1078\) differs"
                                                           r" .*: 20200102100000 on 3 slices, 20200102101500 on 1"),
]


@pytest.mark.parametrize("keyword, value, match", DIFFERING, ids=[case[0] for case in DIFFERING])
def test_suv_tags_must_agree_across_the_series(tmp_path, keyword, value, match):
    folder = write_pet_series(tmp_path / "pet", n=4, radio={"RadiopharmaceuticalStartDateTime": "20200102100000"}
                              if keyword == "RadiopharmaceuticalStartDateTime" else None)
    if keyword in RADIO_TAGS or keyword == "RadiopharmaceuticalStartDateTime":
        edit_file(folder / "f0_3.dcm", radio={keyword: value})
    else:
        edit_file(folder / "f0_3.dcm", **{keyword: value})
    with pytest.raises(InputError, match=match):
        suv_factor_from_dicom(folder)


def test_equal_values_spelt_differently_agree(tmp_path):
    """103500.00 and 103500 are one time, "70.0" and 70 one weight; SeriesTime may differ per slice."""
    folder = write_pet_series(tmp_path / "pet", n=4)
    edit_file(folder / "f0_3.dcm", PatientWeight="70.0", SeriesTime="110500",
              radio={"RadiopharmaceuticalStartTime": "100000.00"})
    info = suv_factor_from_dicom(folder)
    assert info.factor == pytest.approx(factor(3600.0), rel=1e-12)


def test_single_valued_corrected_image(tmp_path):
    info = suv_factor_from_dicom(write_pet_series(tmp_path / "pet", CorrectedImage="ATTN"))
    assert not info.corrected_image and info.factor == pytest.approx(factor(3600.0), rel=1e-12)


def test_injection_after_scan_start_is_refused_not_wrapped(tmp_path):
    folder = write_pet_series(tmp_path / "pet", SeriesTime="131000", AcquisitionTime="131000",
                              radio={"RadiopharmaceuticalStartTime": "140500"})
    message = (r"the injection time 14:05:00 \(RadiopharmaceuticalStartTime\) is after the scan start 13:10:00 "
               r"\(SeriesTime\) in series [\d.]+; check the times")
    with pytest.raises(InputError, match=message):
        suv_factor_from_dicom(folder)
    with pytest.raises(InputError, match=message):  # not "does not look like SUV"
        read_pet(folder)


@pytest.mark.parametrize("scan, uptake_s", [("033000", 4 * 3600.0), ("060000", 6.5 * 3600.0)])
def test_midnight_wrap_only_for_a_plausible_uptake(tmp_path, scan, uptake_s):
    folder = write_pet_series(tmp_path / "pet", SeriesTime=scan, AcquisitionTime=scan,
                              radio={"RadiopharmaceuticalStartTime": "233000"})
    if uptake_s <= 6 * 3600:
        assert suv_factor_from_dicom(folder).decay_seconds == uptake_s
    else:
        with pytest.raises(InputError, match=r"injection time 23:30:00 .* after the scan start 06:00:00"):
            suv_factor_from_dicom(folder)


def test_implausibly_long_uptake_is_refused(tmp_path):
    folder = write_pet_series(tmp_path / "pet", radio={"RadiopharmaceuticalStartDateTime": "20200101100000"})
    with pytest.raises(InputError, match=r"an uptake time of 25\.0 h between the injection 2020-01-01 10:00:00 "
                                         r"\(RadiopharmaceuticalStartDateTime\) and the scan start 2020-01-02 "
                                         r"11:00:00 \(SeriesDate/SeriesTime\) in series [\d.]+ is not plausible "
                                         r"\(over 12 h\); check the dates and times"):
        suv_factor_from_dicom(folder)
    zr89 = write_pet_series(tmp_path / "zr", radio={"RadiopharmaceuticalStartDateTime": "20191230110000",
                                                    "RadionuclideHalfLife": 282240.0})
    assert suv_factor_from_dicom(zr89).decay_seconds == 3 * 86400.0  # 89Zr: 72 h is under 5 half-lives
