"""DICOM SEG output (lesionseg.dicomseg; ``--output-format dicom-seg`` of predict, batch and screen): CT and PET
series written with pydicom from the phantoms, methods run on them, the SEG read back with pydicom and highdicom.

The writers :func:`write_ct_dicom` and :func:`write_pet_dicom` are also used by ``test_batch.py``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import lesionseg
from lesionseg import Box, Image, InputError, RecistLine, dicomseg, read_image
from lesionseg.cli import main
from lesionseg.phantoms import chest_ct, wholebody_petct
from lesionseg.registry import get_spec, list_specs

REPO = Path(__file__).resolve().parents[2]
CT_SOP, PET_SOP = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.128"
WEIGHT, DOSE, HALF, DECAY = 70.0, 3.7e8, 6586.2, 3600.0
"""PET series: kg, Bq at injection, s, s from injection (10:00) to the series time (11:00)."""


def _slice(image: Image, k: int, series_uid: str, study_uid: str, frame_uid: str, modality: str, sop: str) -> Dataset:
    """One slice's header of ``image`` (LPS geometry from the image, no pixel data yet)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = modality, "PHANTOM", "Phantom^Case"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = "20200102", "100000", "20200102", "110000"
    ds.AcquisitionDate, ds.AcquisitionTime = "20200102", "110000"
    ds.SeriesNumber, ds.InstanceNumber, ds.AccessionNumber = 3, k + 1, ""
    ds.ReferringPhysicianName, ds.StudyID, ds.PatientBirthDate, ds.PatientSex = "", "1", "", "O"
    ds.ImagePositionPatient = [float(v) for v in image.index_to_world @ np.array([0.0, 0.0, k, 1.0])][:3]
    ds.ImageOrientationPatient = [float(v) for v in (*image.direction[:, 0], *image.direction[:, 1])]
    ds.PixelSpacing, ds.SliceThickness = [float(image.spacing[1]), float(image.spacing[0])], float(image.spacing[2])
    ds.Rows, ds.Columns = image.shape[1], image.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def write_ct_dicom(image: Image, folder: Path, study_uid: str = "1.2.3", frame_uid: str = "1.2.3.4") -> Path:
    """``image`` (HU) as a CT series in ``folder``: int16 slices, slope 1, intercept 0, files ``ct_<k>.dcm``."""
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for k in range(image.shape[0]):
        ds = _slice(image, k, series, study_uid, frame_uid, "CT", CT_SOP)
        ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept = 1, 1.0, 0.0
        ds.PixelData = np.ascontiguousarray(image.array[k], dtype="<i2").tobytes()
        ds.save_as(folder / f"ct_{k:03d}.dcm", enforce_file_format=True)
    return folder


def suv_factor() -> float:
    """SUVbw per Bq/mL of the PET series :func:`write_pet_dicom` writes (g/Bq)."""
    return WEIGHT * 1000.0 / (DOSE * 2.0 ** (-DECAY / HALF))


def write_pet_dicom(suv: Image, folder: Path, study_uid: str = "1.2.3", frame_uid: str = "1.2.3.4") -> Path:
    """``suv`` (SUVbw) as a PET series in Bq/mL with the SUV tags (BQML, START decay correction, weight, dose,
    half-life, injection at 10:00, series at 11:00): uint16 slices with a per-slice RescaleSlope."""
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    bqml = suv.array.astype(np.float64) / suv_factor()
    for k in range(suv.shape[0]):
        ds = _slice(suv, k, series, study_uid, frame_uid, "PT", PET_SOP)
        slope = max(float(bqml[k].max()), 1.0) / 60000.0
        ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept = 0, slope, 0.0
        ds.Units, ds.DecayCorrection, ds.CorrectedImage, ds.PatientWeight = "BQML", "START", ["ATTN", "DECY"], WEIGHT
        item = Dataset()
        item.RadionuclideTotalDose, item.RadionuclideHalfLife, item.RadiopharmaceuticalStartTime = DOSE, HALF, "100000"
        ds.RadiopharmaceuticalInformationSequence = [item]
        ds.PixelData = np.round(np.clip(bqml[k] / slope, 0, 65535)).astype("<u2").tobytes()
        ds.save_as(folder / f"pet_{k:03d}.dcm", enforce_file_format=True)
    return folder


def small_chest(seed: int = 1) -> tuple[Image, dict]:
    """A (12, 64, 64) chest phantom with one 12-15 mm nodule and its box (LPS mm, 3 mm margin)."""
    ct, _, info = chest_ct(seed=seed, shape=(12, 64, 64), spacing=(1.5, 1.5, 3.0), n_nodules=1,
                           diameter_mm=(12.0, 15.0))
    lo, hi = (np.asarray(v) for v in info["lesions"][0]["box_lps"])
    return ct, {"box": Box(lo - 3.0, hi + 3.0)}


def small_pet() -> tuple[Image, Image, dict]:
    """A (24, 48, 48) crop (4 mm) of the whole-body PET/CT phantom around its first lesion: (SUV, CT, info)."""
    pet, ct, _, info = wholebody_petct(seed=0, with_lesions=True)
    lo, hi = (np.asarray(v) for v in info["lesions"][5]["box_ijk"])
    start = np.maximum((lo + hi) // 2 - [24, 24, 12], 0)
    end = start + [47, 47, 23]
    return pet.crop(start, end), ct.crop(start, end), info


def read_seg(path: Path) -> hd.seg.Segmentation:
    return hd.seg.segread(path)


def seg_label(seg: hd.seg.Segmentation, source_files: list[Path]) -> np.ndarray:
    """The SEG as a label array ``(K, J, I)`` in the order of ``source_files`` (segment number = value), read
    frame by frame through each frame's referenced source instance."""
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in source_files]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, ignore_spatial_locations=True,
                                             assert_missing_frames_are_empty=True)
    return np.asarray(pixels)


def frame_sources(seg: Dataset) -> list[str]:
    """The referenced source SOP Instance UID of each frame of a SEG dataset."""
    return [frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for frame in seg.PerFrameFunctionalGroupsSequence]


def test_every_class_of_every_method_has_the_codes_of_the_slicer_panels():
    terminology = "".join((REPO / "LesionSegExtension" / path).read_text(encoding="utf-8") for path in (
        "LesionSegCommon/LesionSegLib/results.py", "LesionSegScreening/LesionSegScreeningLib/screening.py"))
    for spec in list_specs():
        for name in spec.classes[1:]:
            for code in filter(None, dicomseg.CLASS_CODES[name]):
                assert f"{code.scheme}^{code.value}^{code.meaning}" in terminology, (spec.name, name, code)


def test_prompt_text_fits_the_attribute():
    box = Box((-120.25, 33.5, -410.0), (-80.0, 70.04, -380.0))
    assert dicomseg.prompt_text(box) == "box -120.2,33.5,-410.0 -80.0,70.0,-380.0 mm LPS"
    line = RecistLine((-123.4, -234.5, -1345.6), (-150.1, -200.2, -1345.6), (-140.0, -230.0, -1345.6),
                      (-133.0, -205.0, -1345.6))
    assert dicomseg.prompt_text(line) == "RECIST -123.4,-234.5,-1345.6 -150.1,-200.2,-1345.6 short 26.0 mm"
    assert dicomseg.prompt_text(line, 50) == "RECIST -123,-234,-1346 -150,-200,-1346 short 26 mm"
    assert dicomseg.prompt_text(None) == ""


def test_ct_seg_references_the_source_and_equals_the_nifti(tmp_path):
    ct, case = small_chest()
    folder = write_ct_dicom(ct, tmp_path / "ct")
    box = case["box"]
    argv = ["predict", "classical-box", str(folder), "--box", *map(str, (*box.lo, *box.hi))]
    assert main(argv + ["-o", str(tmp_path / "label.nii.gz")]) == 0
    assert main(argv + ["-o", str(tmp_path / "seg.dcm"), "--output-format", "dicom-seg"]) == 0
    nifti = read_image(tmp_path / "label.nii.gz")
    assert 0 < nifti.array.sum() < nifti.array.size
    files = sorted(folder.glob("*.dcm"))
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert (ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.PatientID) == (source.StudyInstanceUID,
                                                                          source.FrameOfReferenceUID, "PHANTOM")
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    positions = {u: pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient for u, f in zip(uids, files)}
    slices = np.flatnonzero(nifti.array.reshape(nifti.shape[0], -1).any(axis=1))
    assert sorted(frame_sources(ds)) == sorted(uids[k] for k in slices)  # one frame per non-empty slice
    for frame in ds.PerFrameFunctionalGroupsSequence:
        referenced = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert np.allclose(frame.PlanePositionSequence[0].ImagePositionPatient, positions[referenced], atol=1e-4)
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "lesion" and segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "4147007"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("LesionSeg classical-box", lesionseg.__version__)
    assert segment.SegmentDescription == dicomseg.prompt_text(box)
    np.testing.assert_array_equal(seg_label(read_seg(tmp_path / "seg.dcm"), files), nifti.array)


def test_file_input_and_bad_suffix_are_refused_before_any_work(tmp_path, capsys):
    ct, case = small_chest()
    lesionseg.write_image(ct, tmp_path / "ct.nii.gz")
    box = [str(v) for v in (*case["box"].lo, *case["box"].hi)]
    argv = ["predict", "classical-box", str(tmp_path / "ct.nii.gz"), "--box", *box, "--output-format", "dicom-seg"]
    assert main(argv + ["-o", str(tmp_path / "seg.dcm")]) == 2
    assert "needs a DICOM series as the first input" in capsys.readouterr().err
    folder = write_ct_dicom(ct, tmp_path / "dcm")
    argv[2] = str(folder)
    assert main(argv + ["-o", str(tmp_path / "seg.nii.gz")]) == 2
    assert "use one of .dcm" in capsys.readouterr().err
    assert not list(tmp_path.glob("seg*"))


def test_label_off_the_series_grid_is_refused(tmp_path):
    ct, _ = small_chest()
    folder = write_ct_dicom(ct, tmp_path / "ct")
    spec = get_spec("classical-box")
    shifted = Image(np.ones(ct.shape, np.uint8), ct.spacing, np.asarray(ct.origin) + [0, 0, 1.5], ct.direction)
    with pytest.raises(InputError, match="no slice of the DICOM series at its position"):
        dicomseg.write_label(shifted, tmp_path / "seg.dcm", "dicom-seg", spec=spec, source=folder)
    with pytest.raises(InputError, match="classes are 0..1"):
        dicomseg.write_label(ct.with_array(np.full(ct.shape, 2, np.uint8)), tmp_path / "seg.dcm", "dicom-seg",
                             spec=spec, source=folder)
    assert not list(tmp_path.glob("*seg*"))


def test_multiclass_seg_has_one_segment_per_class(tmp_path):
    ct, _ = small_chest()
    folder = write_ct_dicom(ct, tmp_path / "ct")
    label = np.zeros(ct.shape, np.uint8)
    label[3:6, 10:30, 10:30], label[4, 15:20, 15:20], label[7, 40:44, 40:44] = 1, 2, 3
    path = dicomseg.write_label(ct.with_array(label), tmp_path / "s4c.dcm", "dicom-seg", spec=get_spec("s4c"),
                                source=folder)
    ds = pydicom.dcmread(path)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["pancreas", "tumour", "duct"]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in ds.SegmentSequence] == [
        "15776009", "4147007", "69930009"]
    assert ds.SegmentSequence[1].AnatomicRegionSequence[0].CodeValue == "15776009"
    assert all(s.SegmentAlgorithmType == "AUTOMATIC" and "SegmentDescription" not in s for s in ds.SegmentSequence)
    np.testing.assert_array_equal(seg_label(read_seg(path), sorted(folder.glob("*.dcm"))), label)


@pytest.fixture
def pet_threshold():
    """A weight-free PET method registered for one test: SUV > 3 (its reader: lesionseg.pet.read_pet)."""
    from lesionseg import registry
    from lesionseg.segmenter import Segmenter

    @registry.register("test-pet-threshold", prompt="none", inputs=("PET",), needs_weights=False,
                       reader="test_dicomseg:read_pet_input", summary="test only: SUV > 3")
    class Threshold(Segmenter):
        def predict(self, prompt=None):
            return self.image.with_array((self.image.array > 3.0).astype(np.uint8))

    yield "test-pet-threshold"
    registry._REGISTRY.pop("test-pet-threshold")


def read_pet_input(paths, options, series=()):
    from lesionseg.pet import read_pet

    return [read_pet(paths[0])]


def test_pet_seg_and_suv_from_the_series(tmp_path, pet_threshold):
    pet, _, _ = small_pet()
    folder = write_pet_dicom(pet, tmp_path / "pet")
    argv = ["predict", pet_threshold, str(folder)]
    assert main(argv + ["-o", str(tmp_path / "label.nii.gz")]) == 0
    assert main(argv + ["-o", str(tmp_path / "seg.dcm"), "--output-format", "dicom-seg"]) == 0
    nifti = read_image(tmp_path / "label.nii.gz")
    assert nifti.array.sum() > 0
    files = sorted(folder.glob("*.dcm"))
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(files[0]).SeriesInstanceUID
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    np.testing.assert_array_equal(seg_label(read_seg(tmp_path / "seg.dcm"), files), nifti.array)


def test_screen_writes_a_seg_per_phase_equal_to_its_labels(tmp_path, capsys):
    from lesionseg.phantoms import pancreas_ct

    _, venous, _, _ = pancreas_ct(seed=3, shape=(30, 120, 144))
    folder = write_ct_dicom(venous, tmp_path / "venous")
    out = tmp_path / "report"
    assert main(["screen", "--venous", str(folder), "-o", str(out), "--output-format", "dicom-seg"]) == 0
    labels = read_image(out / "venous_seg.nii.gz").array
    assert set(np.unique(labels)) >= {0, 1}
    report = json.loads((out / "report.json").read_text())
    assert report["phases"]["venous"]["dicom_seg"] == "venous_seg.dcm"
    ds = pydicom.dcmread(out / "venous_seg.dcm")
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["pancreas", "tumour", "duct"]
    np.testing.assert_array_equal(seg_label(read_seg(out / "venous_seg.dcm"), sorted(folder.glob("*.dcm"))), labels)
    lesionseg.write_image(venous, tmp_path / "venous.nii.gz")
    assert main(["screen", "--venous", str(tmp_path / "venous.nii.gz"), "-o", str(tmp_path / "r2"),
                 "--output-format", "dicom-seg"]) == 2
    assert "needs a DICOM series as the venous phase" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
