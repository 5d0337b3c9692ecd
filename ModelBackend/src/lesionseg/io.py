"""Reading and writing images: NIfTI, NRRD, MHA and DICOM series, through SimpleITK.

Geometry is kept exactly. Reads check what ITK does not (truncated NIfTI, NaN/inf in NIfTI, images larger
than memory, DICOM series with gaps: :mod:`lesionseg.filecheck`, :mod:`lesionseg.dicom`). Writes are atomic
and verified and refuse to replace an existing file unless ``overwrite=True`` (:mod:`lesionseg.outputs`).
This module does not import torch.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .filecheck import check_memory, check_nifti, check_while, is_nifti, quick_check_nifti, quiet_native_stderr
from .image import Image, require_image
from .outputs import atomic_write, check_output_file, check_output_folder, output_folder  # noqa: F401 (API)

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
"""Single-file formats only: a detached header (.mhd, .nhdr) would point at a temporary data file name."""


def from_sitk(img: sitk.Image) -> Image:
    """Convert a SimpleITK image (scalar, 2D or 3D) to :class:`Image`."""
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected a scalar image, got {img.GetNumberOfComponentsPerPixel()} components per voxel")
    dim = img.GetDimension()
    if dim == 2:
        spacing = (*img.GetSpacing(), 1.0)
        origin = (*img.GetOrigin(), 0.0)
        d2 = np.asarray(img.GetDirection()).reshape(2, 2)
        direction = np.eye(3)
        direction[:2, :2] = d2
    elif dim == 3:
        spacing, origin = img.GetSpacing(), img.GetOrigin()
        direction = np.asarray(img.GetDirection()).reshape(3, 3)
    else:
        raise InputError(f"expected a 2D or 3D image, got a {dim}D image (pick one volume of a 4D series)")
    return Image(sitk.GetArrayFromImage(img), spacing, origin, direction)


def to_sitk(image: Image) -> sitk.Image:
    """Convert :class:`Image` to a 3D SimpleITK image with the same geometry."""
    arr = image.array
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(v) for v in image.spacing))
    img.SetOrigin(tuple(float(v) for v in image.origin))
    img.SetDirection(tuple(float(v) for v in image.direction.reshape(-1)))
    return img


def list_dicom_series(folder: PathLike) -> dict[str, list[str]]:
    """DICOM series in ``folder``: ``{series_uid: [file, ...]}`` (files sorted for reading)."""
    from .dicom import list_dicom_series as listing

    return listing(folder)


def _read_file(p: Path) -> sitk.Image:
    """One image file through SimpleITK after the checks ITK does not make (:mod:`lesionseg.filecheck`):
    for NIfTI, the sizes the header promises (at once) and an intact gzip stream with finite floats (beside
    ITK's read, on the other core); before reading, memory for the size the header promises. ITK's own
    messages go to the debug log."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    with quiet_native_stderr():
        if is_nifti(p):
            quick_check_nifti(p)
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            log.debug("SimpleITK could not read the header of %s: %s", p, exc)
            if is_nifti(p):
                check_nifti(p)  # a damaged gzip stream says so
            raise InputError(f"cannot read {p}: not a readable NIfTI, NRRD, MHA or DICOM image") from None
        pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
        check_memory(p, reader.GetSize(), _bytes_per_voxel(pixel, reader.GetNumberOfComponents()), pixel)
        if is_nifti(p):
            return check_while(lambda: check_nifti(p), reader.Execute)
        return reader.Execute()


def _bytes_per_voxel(pixel: str, components: int) -> int:
    """Bytes of one voxel of SimpleITK pixel type ``pixel`` (e.g. "16-bit signed integer") and ``components``."""
    bits = next((b for b in (64, 32, 16, 8) if f"{b}-bit" in pixel), 32)
    return bits // 8 * max(components, 1) * (2 if "complex" in pixel else 1)


def _series_in(folder: Path, series_uid: Union[str, Sequence[str], None]) -> Optional[str]:
    """The one of ``series_uid`` (a UID, or candidates as given with repeated ``--series``) that ``folder``
    holds; None when it holds none of them (its only series is read, or the error lists them)."""
    if series_uid is None or isinstance(series_uid, str):
        return series_uid
    held = [uid for uid in series_uid if uid in list_dicom_series(folder)]
    if len(held) > 1:
        raise InputError(f"{folder} holds several of the series given with --series ({', '.join(held)}); give one")
    return held[0] if held else None


def read_image(path: PathLike, series_uid: Union[str, Sequence[str], None] = None) -> Image:
    """Read a NIfTI/NRRD/MHA file or a DICOM series folder.

    A folder holding several DICOM series needs ``series_uid`` (or a list of candidate UIDs of which it holds
    one, as the CLI's repeated ``--series`` gives); the error lists them. A series with a gap,
    a duplicated position or a truncated slice is refused (:func:`lesionseg.dicom.read_series`). Raises
    :class:`InputError` for a missing, unreadable, truncated, 4D, empty or non-finite image, and for one
    whose header promises more voxels than the memory available.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file or folder: {p}")
    try:
        if p.is_dir():
            from .dicom import read_series

            img = read_series(p, _series_in(p, series_uid))
        else:
            img = _read_file(p)
    except RuntimeError as exc:
        log.debug("SimpleITK could not read %s: %s", p, exc)
        raise InputError(f"cannot read {p}: not a readable NIfTI, NRRD, MHA or DICOM image") from None
    except PermissionError:
        raise InputError(f"cannot read {p}: permission denied") from None
    try:
        image = from_sitk(img)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    image.check_finite()
    return image


def write_image(image: Image, path: PathLike, overwrite: bool = False, compress: bool = True,
                inputs: Iterable[PathLike] = ()) -> Path:
    """Write ``image`` to ``path`` (format from the suffix) atomically, keeping its geometry exactly.

    The file is verified before it replaces anything (a NIfTI written by ITK on a full disk is silently
    truncated): see :func:`lesionseg.outputs.atomic_write`. ``inputs``: paths the output must not be.
    Raises :class:`InputError` (also for a value that is not an :class:`Image`), :class:`OutputExistsError`,
    :class:`~lesionseg.errors.OutputError` (a folder in the way, no permission, no space left).
    """
    image = require_image(image, "write_image")
    path = Path(path)
    check_output_file(path, overwrite, inputs, WRITE_SUFFIXES)
    itk = to_sitk(image)

    def write(tmp: Path) -> None:
        with quiet_native_stderr():
            sitk.WriteImage(itk, str(tmp), compress)

    def verify(tmp: Path) -> None:
        if is_nifti(tmp):
            quick_check_nifti(tmp, "the written file")

    atomic_write(path, write, overwrite, verify, inputs)
    return path


def atomic_write_bytes_via(path: Path, writer, overwrite: bool = False) -> None:
    """Write ``path`` atomically through ``writer(tmp_path)`` (see :func:`lesionseg.outputs.atomic_write`)."""
    atomic_write(path, writer, overwrite)
