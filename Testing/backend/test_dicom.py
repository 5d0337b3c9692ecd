"""DICOM series checks (lesionseg.dicom): synthetic CT series written with pydicom in tmp_path, with a slice
removed, duplicated, tilted or truncated, and the real STS_001 PET series when ../shared/data is present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from lesionseg import InputError, dicom

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
SPACING = 3.0
PIXEL = (0.7, 0.8)


def write_ct_series(folder: Path, n: int = 6, skip: tuple[int, ...] = (), frames: int = 1,
                    slices: dict[int, dict] | None = None, prefix: str = "s", **tags) -> Path:
    """A CT series of ``n`` 8x8 uint16 slices (``frames`` files per position) in ``folder``, slice k at
    z = 3 k mm, files ``{prefix}{frame}_{k}.dcm``, instance numbers ``k + 1`` (frame 0).

    Stored value ``k * 64 + arange(64)``, RescaleIntercept -1024, slope 1, so HU ``k*64 + i - 1024``.
    ``skip``: slice indices not written; ``slices[k]`` / ``tags``: header keywords of slice k / of all slices
    (None deletes).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for f in range(frames):
        for k in range(n):
            if k in skip:
                continue
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CT_SOP
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
            ds.Modality, ds.PatientID = "CT", "P1"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "1.2.3", series_uid, "1.2.3.4"
            ds.InstanceNumber = f * n + k + 1
            ds.ImagePositionPatient = [-20.0, -30.0, SPACING * k]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing, ds.SliceThickness = list(PIXEL), SPACING
            ds.Rows = ds.Columns = 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
            ds.PixelData = (k * 64 + np.arange(64, dtype=np.uint16)).tobytes()
            for key, value in {**tags, **(slices or {}).get(k, {})}.items():
                setattr(ds, key, value) if value is not None else delattr(ds, key)
            ds.save_as(folder / f"{prefix}{f}_{k}.dcm", enforce_file_format=True)
    return folder


def expected_hu(ks) -> np.ndarray:
    """The HU array ``(len(ks), 8, 8)`` of slices ``ks`` of :func:`write_ct_series`."""
    return np.stack([(k * 64 + np.arange(64.0)).reshape(8, 8) - 1024.0 for k in ks])


def test_complete_series_reads_with_its_geometry(tmp_path, capfd):
    folder = write_ct_series(tmp_path / "ct")
    (folder / "notes.txt").write_text("not DICOM")  # ignored, as GDCM ignores it
    img = dicom.read_series(folder)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), expected_hu(range(6)))
    assert img.GetSpacing() == pytest.approx((PIXEL[1], PIXEL[0], SPACING), abs=1e-9)  # DICOM: row spacing first
    assert img.GetOrigin() == pytest.approx((-20.0, -30.0, 0.0), abs=1e-9)
    assert img.GetDirection() == pytest.approx(tuple(np.eye(3).ravel()), abs=1e-12)
    one = write_ct_series(tmp_path / "one", n=1)
    assert dicom.read_series(one).GetSize() == (8, 8, 1)
    assert capfd.readouterr().err == ""


def test_gap_is_named(tmp_path, monkeypatch):
    folder = write_ct_series(tmp_path / "ct", skip=(3,))
    with pytest.raises(InputError, match=r"has a gap of 6\.0 mm between slices at z = 6\.0 and 12\.0 mm "
                                         r"\(instance 3 and instance 5\) where the spacing is 3\.0 mm: "
                                         r"a slice is missing; re-export the complete series"):
        dicom.read_series(folder)
    monkeypatch.setattr(dicom, "check_series", lambda files: None)
    stacked = dicom.read_series(folder)  # what ITK alone does: 5 slices evenly over 15 mm, no error
    assert stacked.GetSize()[2] == 5 and stacked.GetSpacing()[2] == pytest.approx(3.75)


def test_several_missing_slices_and_uneven_spacing(tmp_path):
    with pytest.raises(InputError, match=r"gap of 9\.0 mm .*: 2 slices are missing"):
        dicom.read_series(write_ct_series(tmp_path / "two", n=8, skip=(3, 4)))
    uneven = write_ct_series(tmp_path / "uneven", slices={3: {"ImagePositionPatient": [-20.0, -30.0, 7.5]}})
    with pytest.raises(InputError, match=r"uneven slice spacing: 1\.5 mm between slices at z = 6\.0 and 7\.5 mm"
                                         r" .*\(1 more irregular steps\)"):
        dicom.read_series(uneven)


def test_drift_off_the_grid_is_refused(tmp_path):
    """Each step within 10 % of the median, but the slices drift 1.2 mm from even stacking."""
    z = [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.3, 21.6, 24.9, 28.2, 31.5]
    folder = write_ct_series(tmp_path / "ct", n=len(z),
                             slices={k: {"ImagePositionPatient": [-20.0, -30.0, v]} for k, v in enumerate(z)})
    with pytest.raises(InputError, match=r"drifts off a regular grid: the slice at z = 15\.0 mm \(instance 6\)"):
        dicom.read_series(folder)


def test_small_jitter_passes_quietly(tmp_path, capfd):
    """A bed-junction step 0.1 mm off (3 % of 3 mm) is read; ITK's non-uniformity warning is not printed."""
    folder = write_ct_series(tmp_path / "ct", slices={3: {"ImagePositionPatient": [-20.0, -30.0, 9.1]}})
    capfd.readouterr()
    img = dicom.read_series(folder)
    assert img.GetSize() == (8, 8, 6)
    assert capfd.readouterr().err == ""
    shown = sitk.ProcessObject_GetGlobalWarningDisplay()
    assert shown  # restored after the read


def test_duplicate_position_and_4d(tmp_path):
    folder = write_ct_series(tmp_path / "dup", slices={4: {"ImagePositionPatient": [-20.0, -30.0, 9.0]}})
    with pytest.raises(InputError, match=r"two slices at z = 9\.0 mm \(instance 4 and instance 5\): "
                                         r"a duplicated slice"):
        dicom.read_series(folder)
    with pytest.raises(InputError, match=r"holds 2 files per slice position \(12 files at 6 positions\)"):
        dicom.read_series(write_ct_series(tmp_path / "dyn", frames=2))


def test_inconsistent_orientation(tmp_path):
    tilted = [1.0, 0.0, 0.0, 0.0, float(np.cos(0.1)), float(np.sin(0.1))]
    folder = write_ct_series(tmp_path / "ct", slices={2: {"ImageOrientationPatient": tilted}})
    with pytest.raises(InputError, match=r"ImageOrientationPatient \(0020,0037\) differs within series .*"
                                         r"in s0_2\.dcm \(1 of 6 files\): the slices are not parallel"):
        dicom.read_series(folder)


def test_inconsistent_pixel_spacing(tmp_path):
    folder = write_ct_series(tmp_path / "ct", slices={5: {"PixelSpacing": [0.7, 0.9]}})
    with pytest.raises(InputError, match=r"PixelSpacing \(0028,0030\) differs within series .*: 0\.7/0\.8 on 5 "
                                         r"files, 0\.7/0\.9 on 1 \(e\.g\. s0_5\.dcm\)"):
        dicom.read_series(folder)


def test_truncated_pixel_data(tmp_path):
    folder = write_ct_series(tmp_path / "ct")
    path = folder / "s0_2.dcm"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InputError, match=r"s0_2\.dcm is truncated: its pixel data holds 108 of the 128 bytes"):
        dicom.check_series(sorted(folder.iterdir()))
    with pytest.raises(InputError, match=r"s0_2\.dcm is truncated"):
        dicom.read_series(folder)


def test_short_pixel_element(tmp_path):
    """Pixel data shorter than Rows x Columns x 2 bytes, with a length field that agrees (a bad writer)."""
    folder = write_ct_series(tmp_path / "ct", slices={1: {"PixelData": bytes(100)}})
    with pytest.raises(InputError, match=r"s0_1\.dcm is truncated: its pixel data holds 100 of the 128 bytes"):
        dicom.read_series(folder)


def test_damaged_file_of_the_series_is_refused(tmp_path):
    folder = write_ct_series(tmp_path / "ct")
    last = folder / "s0_5.dcm"
    data = last.read_bytes()
    last.write_bytes(data[:data.index(b"\x20\x00\x13\x00")])  # cut inside the header, before InstanceNumber
    with pytest.raises(InputError, match=r"s0_5\.dcm"):
        dicom.read_series(folder)
    marked = write_ct_series(tmp_path / "marked")
    (marked / "zz.dcm").write_bytes(bytes(128) + b"DICM" + b"\xff" * 40)
    with pytest.raises(InputError, match=r"zz\.dcm starts like a DICOM file but cannot be read"):
        dicom.read_series(marked)


def test_positions_missing_on_some_or_all_files(tmp_path):
    some = write_ct_series(tmp_path / "some", slices={2: {"ImagePositionPatient": None}})
    with pytest.raises(InputError, match=r"lacks ImagePositionPatient \(0020,0032\) while other slices"):
        dicom.check_series(dicom.list_dicom_series(some).popitem()[1])
    none = write_ct_series(tmp_path / "none", n=3, ImagePositionPatient=None)
    dicom.check_series(sorted(none.iterdir()))  # nothing to check: ITK stacks in file order


def test_not_dicom_and_empty(tmp_path):
    folder = write_ct_series(tmp_path / "ct", n=2)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 300)
    with pytest.raises(InputError, match=r"junk\.dcm is not a readable DICOM image file"):
        dicom.check_series([*sorted(folder.iterdir()), junk])
    with pytest.raises(InputError, match="at least one file"):
        dicom.check_series([])


def test_series_choice_messages(tmp_path):
    with pytest.raises(InputError, match="no DICOM series found in"):
        dicom.read_series(tmp_path)
    write_ct_series(tmp_path / "two")
    write_ct_series(tmp_path / "two", n=3, prefix="other")
    uids = dicom.list_dicom_series(tmp_path / "two")
    assert sorted(len(v) for v in uids.values()) == [3, 6]
    with pytest.raises(InputError, match=r"holds 2 DICOM series; choose one with --series: .*\(3 files\)"):
        dicom.read_series(tmp_path / "two")
    with pytest.raises(InputError, match=r"series 9\.9 is not in"):
        dicom.read_series(tmp_path / "two", "9.9")
    small = next(uid for uid, files in uids.items() if len(files) == 3)
    assert dicom.read_series(tmp_path / "two", small).GetSize() == (8, 8, 3)


def test_real_sts001_series_reads_as_itk_does(shared_data, capfd):
    folder = shared_data / "sts001-wholebody-fdgpet" / "dicom" / "PET"
    _, files = dicom.choose_series(folder)
    assert len(files) == 267
    capfd.readouterr()
    img = dicom.read_series(folder)
    assert capfd.readouterr().err == ""  # ITK's non-uniformity warning (bed junctions, 0.08 mm) is not shown
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        ref = reader.Execute()
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(True)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ref))
    assert (img.GetSpacing(), img.GetOrigin(), img.GetDirection()) == (ref.GetSpacing(), ref.GetOrigin(),
                                                                       ref.GetDirection())
    assert pydicom.dcmread(files[0], stop_before_pixels=True).Modality == "PT"
