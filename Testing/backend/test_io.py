from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionseg import Image, InputError, OutputExistsError, read_image, write_image
from lesionseg.io import to_sitk


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_write_read_keeps_geometry_exactly(tmp_path, oblique_image, suffix):
    path = write_image(oblique_image, tmp_path / f"ct{suffix}")
    back = read_image(path)
    np.testing.assert_array_equal(back.array, oblique_image.array)
    assert back.array.dtype == oblique_image.array.dtype
    np.testing.assert_allclose(back.spacing, oblique_image.spacing, atol=1e-6)
    np.testing.assert_allclose(back.origin, oblique_image.origin, atol=1e-5)
    np.testing.assert_allclose(back.direction, oblique_image.direction, atol=1e-6)


def test_no_overwrite_and_no_partial_files(tmp_path, oblique_image):
    target = tmp_path / "ct.nii.gz"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_image(oblique_image, target)
    assert target.read_bytes() == b"precious"
    write_image(oblique_image, target, overwrite=True)
    assert read_image(target).shape == oblique_image.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


def test_failed_write_leaves_nothing(tmp_path, oblique_image, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", boom)
    with pytest.raises(RuntimeError):
        write_image(oblique_image, tmp_path / "ct.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_bad_output_paths(tmp_path, oblique_image):
    with pytest.raises(InputError, match="does not exist"):
        write_image(oblique_image, tmp_path / "missing" / "ct.nii.gz")
    with pytest.raises(InputError, match="unsupported output format"):
        write_image(oblique_image, tmp_path / "ct.png")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match="cannot read"):
        read_image(bad)
    with pytest.raises(InputError, match="no DICOM series"):
        read_image(tmp_path)


def test_4d_nan_and_2d(tmp_path):
    four = sitk.Image([3, 3, 3, 2], sitk.sitkFloat32)
    sitk.WriteImage(four, str(tmp_path / "4d.nii.gz"))
    with pytest.raises(InputError, match="4D"):
        read_image(tmp_path / "4d.nii.gz")
    arr = np.zeros((2, 3, 3), np.float32)
    arr[0, 0, 0] = np.nan
    sitk.WriteImage(to_sitk(Image(arr)), str(tmp_path / "nan.mha"))
    with pytest.raises(InputError, match="NaN"):
        read_image(tmp_path / "nan.mha")
    flat = sitk.GetImageFromArray(np.arange(12, dtype=np.int16).reshape(3, 4))
    flat.SetSpacing((0.5, 0.7))
    sitk.WriteImage(flat, str(tmp_path / "2d.nrrd"))
    img = read_image(tmp_path / "2d.nrrd")
    assert img.shape == (1, 3, 4) and img.spacing.tolist() == [0.5, 0.7, 1.0]


def _write_dicom_series(folder, uid_suffix: str, n: int = 3):
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = f"1.2.826.0.1.3680043.2.1125.{uid_suffix}"
    for k in range(n):
        sl = sitk.GetImageFromArray(np.full((1, 4, 5), k, np.int16))
        sl.SetOrigin((0.0, 0.0, 2.0 * k))
        for key, value in {"0020|000e": series_uid, "0020|0032": f"0\\0\\{2.0 * k}",
                           "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0013": str(k + 1),
                           "0008|0060": "CT"}.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"s{uid_suffix}_{k}.dcm"))
        writer.Execute(sl)


def test_dicom_series_and_several_series(tmp_path):
    _write_dicom_series(tmp_path / "one", "1")
    img = read_image(tmp_path / "one")
    assert img.shape == (3, 4, 5)
    assert img.array[:, 0, 0].tolist() == [0, 1, 2]
    _write_dicom_series(tmp_path / "one", "2")
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        read_image(tmp_path / "one")
    assert read_image(tmp_path / "one", series_uid="1.2.826.0.1.3680043.2.1125.2").shape == (3, 4, 5)
