"""Issue #22: inputs ITK would read wrongly — truncated NIfTI, NaN/inf in NIfTI, a header promising too much."""
from __future__ import annotations

import gzip
import struct
import time

import numpy as np
import pytest
import SimpleITK as sitk

from lesionseg import Image, read_image, write_image
from lesionseg.cli import main
from lesionseg.errors import InputError
from lesionseg.filecheck import check_nifti


def _image(dtype=np.int16) -> Image:
    rng = np.random.default_rng(0)
    return Image((rng.normal(0, 300, (12, 30, 40))).astype(dtype), (0.8, 0.8, 2.5), (1.0, 2.0, 3.0))


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_a_file_cut_in_half_is_refused_not_read_as_zeros(tmp_path, name):
    path = tmp_path / name
    write_image(_image(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(path))) == 0).mean() > 0.3   # what ITK alone does
    with pytest.raises(InputError, match="truncated"):
        read_image(path)


def test_a_header_promising_1000_cubed_voxels_fails_fast(tmp_path, capsys):
    small = tmp_path / "small.nii.gz"
    write_image(_image(), small)
    with gzip.open(small) as fh:
        raw = bytearray(fh.read())
    raw[40:56] = struct.pack("<8h", 3, 1000, 1000, 1000, 1, 1, 1, 1)
    lie = tmp_path / "lie.nii.gz"
    lie.write_bytes(gzip.compress(bytes(raw[:15000])))
    t0 = time.perf_counter()
    assert main(["--progress", "none", "predict", "classical-box", str(lie), "--box-ijk", "1", "1", "1", "5", "5", "5",
                 "-o", str(tmp_path / "o.nii.gz")]) == 2
    assert time.perf_counter() - t0 < 30          # not a 4 GB allocation; the limit only guards against a hang
    err = capsys.readouterr().err
    assert "truncated" in err and "1000000000 values" in err and not (tmp_path / "o.nii.gz").exists()


def test_a_header_promising_more_than_the_memory_is_refused(tmp_path, monkeypatch):
    import lesionseg.filecheck as filecheck

    path = tmp_path / "ct.nrrd"
    write_image(_image(), path)
    monkeypatch.setattr(filecheck, "available_memory", lambda: 10_000)
    with pytest.raises(InputError, match=r"40x30x12 voxels of 16-bit signed integer .* only 0.0 MiB"):
        read_image(path)


@pytest.mark.parametrize("name", ["pet.nii.gz", "pet.nii"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_in_nifti_are_found(tmp_path, name, bad):
    image = _image(np.float32)
    arr = image.array.copy()
    arr[3, 4, 5] = bad
    arr[7, 1, 2] = bad
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))     # written past write_image's own check
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()   # ITK turns them into 0
    with pytest.raises(InputError, match="2 NaN or infinite"):
        read_image(path)


def test_check_nifti_accepts_every_dtype_and_big_chunks(tmp_path, monkeypatch):
    import lesionseg.filecheck as filecheck

    monkeypatch.setattr(filecheck, "CHUNK", 997)           # values straddle chunk borders
    for dtype in (np.uint8, np.int16, np.float32, np.float64, np.int32):
        path = tmp_path / f"x_{np.dtype(dtype).name}.nii.gz"
        write_image(_image(dtype), path)
        check_nifti(path)
    arr = _image(np.float64).array.copy()
    arr[-1, -1, -1] = np.nan                               # the very last value
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "last.nii.gz"))
    with pytest.raises(InputError, match="1 NaN"):
        check_nifti(tmp_path / "last.nii.gz")


def test_corrupt_gzip_is_refused(tmp_path):
    path = tmp_path / "ct.nii.gz"
    write_image(_image(), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(path)
