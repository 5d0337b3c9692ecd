"""Reading and writing images: NIfTI, NRRD, MHA and DICOM series, through SimpleITK.

Geometry is kept exactly. Writes are atomic (a temporary file in the target folder, then a rename) and
refuse to replace an existing file unless ``overwrite=True``. This module does not import torch.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError, OutputExistsError
from .image import Image

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


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
    reader = sitk.ImageSeriesReader()
    uids = reader.GetGDCMSeriesIDs(str(folder)) or ()
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}


def read_image(path: PathLike, series_uid: str | None = None) -> Image:
    """Read a NIfTI/NRRD/MHA file or a DICOM series folder.

    A folder holding several DICOM series needs ``series_uid``; the error lists them. Raises
    :class:`InputError` for a missing, unreadable, 4D, empty or non-finite image.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file or folder: {p}")
    try:
        if p.is_dir():
            series = list_dicom_series(p)
            if not series:
                raise InputError(f"no DICOM series found in {p}")
            if series_uid is None and len(series) > 1:
                listing = "; ".join(f"{uid} ({len(files)} files)" for uid, files in series.items())
                raise InputError(f"{p} holds {len(series)} DICOM series; choose one with --series: {listing}")
            uid = series_uid or next(iter(series))
            if uid not in series:
                raise InputError(f"series {uid} is not in {p}; found: {', '.join(series)}")
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(series[uid])
            img = reader.Execute()
        else:
            img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        log.debug("SimpleITK could not read %s: %s", p, exc)
        raise InputError(f"cannot read {p}: not a readable NIfTI, NRRD, MHA or DICOM image") from None
    try:
        image = from_sitk(img)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    image.check_finite()
    return image


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    if not path.parent.exists():
        raise InputError(f"output folder {path.parent} does not exist")
    if not any(str(path).lower().endswith(s) for s in WRITE_SUFFIXES):
        raise InputError(f"unsupported output format for {path.name}; use one of {', '.join(WRITE_SUFFIXES)}")


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes_via(path: Path, writer, overwrite: bool = False) -> None:
    """Write ``path`` atomically: ``writer(tmp_path)`` fills a temporary sibling that is then renamed.

    The temporary file keeps the target's suffix so format-sniffing writers behave. On any error the
    temporary file is removed and the target is untouched.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the user's usual permissions
    try:
        writer(Path(tmp))
        if path.exists() and not overwrite:  # appeared meanwhile
            raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image(image: Image, path: PathLike, overwrite: bool = False, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (format from the suffix) atomically, keeping its geometry exactly."""
    path = Path(path)
    _check_output(path, overwrite)
    itk = to_sitk(image)
    atomic_write_bytes_via(path, lambda tmp: sitk.WriteImage(itk, str(tmp), compress), overwrite)
    return path


def check_output_folder(output: PathLike, overwrite: bool) -> Path:
    """Raise unless ``output`` can become an output folder: :class:`OutputExistsError` for a non-empty folder
    without ``overwrite``, :class:`InputError` for a file or a missing parent folder. Returns it as a Path."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file, not a folder")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise OutputExistsError(f"{output} exists and is not empty; pass --overwrite to replace it")
    if not output.resolve().parent.is_dir():
        raise InputError(f"the parent folder of {output} does not exist")
    return output


@contextmanager
def output_folder(output: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Assemble an output folder atomically: yields a hidden temporary sibling to write into, renamed to
    ``output`` when the block ends without error and deleted otherwise (nothing partial is ever left).

    Checks :func:`check_output_folder` first. The sibling is made with ``mkdir`` (the user's umask), not
    ``tempfile.mkdtemp``, whose 0700 mode would survive the rename.
    """
    output = check_output_folder(output, overwrite)
    work = output.resolve().parent / f".{output.name}.{secrets.token_hex(4)}.tmp"
    work.mkdir()
    try:
        yield work
        if output.exists():
            shutil.rmtree(output)
        work.rename(output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
