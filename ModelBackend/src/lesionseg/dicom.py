"""DICOM series: listing, a header check that refuses series SimpleITK would stack wrongly, and reading.

SimpleITK's ImageSeriesReader (GDCM) stacks whatever files a series holds: after a missing slice every
later slice is misplaced, two files at one position or a truncated file give a wrong volume, and the only
sign is an ITK warning on stderr. :func:`read_series` therefore checks every header with pydicom first
(:func:`check_series`) and refuses such a series with one :class:`InputError` line that names the file,
the positions or the gap. The check is written here because ITK and GDCM only warn (and sort what they
are given); pydicom parses, we judge. Positions are in LPS millimetres (DICOM's patient frame). No torch
import.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
ORIENTATION_TOL = 1e-4
"""Largest difference between two slices' direction cosines (ImageOrientationPatient) taken as equal."""
DUPLICATE_TOL_MM = 0.01
"""Slices closer than this along the slice normal (mm) are at one position."""
SPACING_TOL = 0.1
"""Largest departure from the median slice step, as a fraction of it (at least 0.01 mm). A missing slice
departs by 100 %; whole-body PET has steps a few % off at bed junctions (STS_001: 3.19 and 3.29 mm in a
3.27 mm series), which ITK's even stacking absorbs with under 0.05 mm error."""
DEFAULT_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
_NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
"""Implicit VR Little Endian, Explicit VR Little Endian, Explicit VR Big Endian: uncompressed pixel data."""
_TAG_NUMBERS = {"Rows": "(0028,0010)", "Columns": "(0028,0011)", "PixelSpacing": "(0028,0030)"}


def list_dicom_series(folder: PathLike) -> dict[str, list[str]]:
    """DICOM series in ``folder`` (not its subfolders), as GDCM groups them: ``{series_uid: [file, ...]}``,
    each list sorted for reading (along the slice normal). Files GDCM cannot parse are left out; ITK's
    "No Series were found" warning is not printed (the caller says so in one line)."""
    reader = sitk.ImageSeriesReader()
    with _itk_warnings_off():
        uids = reader.GetGDCMSeriesIDs(str(folder)) or ()
        return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}


def choose_series(folder: PathLike, series_uid: Optional[str] = None) -> tuple[str, list[str]]:
    """``(uid, files)`` of the series to read in ``folder``; ``series_uid`` is needed when it holds several.

    Raises :class:`InputError` when no series is found, when several are found without a choice (the
    message lists them and suggests ``--series``), or when ``series_uid`` is not among them.
    """
    series = list_dicom_series(folder)
    if not series:
        raise InputError(f"no DICOM series found in {folder}")
    if series_uid is None and len(series) > 1:
        listing = "; ".join(f"{uid} ({len(files)} files)" for uid, files in series.items())
        raise InputError(f"{folder} holds {len(series)} DICOM series; choose one with --series: {listing}")
    uid = series_uid or next(iter(series))
    if uid not in series:
        raise InputError(f"series {uid} is not in {folder}; found: {', '.join(series)}")
    _check_unlisted(folder, series, uid)
    return uid, series[uid]


@contextmanager
def _itk_warnings_off() -> Iterator[None]:
    """Silence ITK's global warning display inside the block (our checks report instead); restored after."""
    shown = sitk.ProcessObject_GetGlobalWarningDisplay()
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(shown)


def read_series(folder: PathLike, series_uid: Optional[str] = None) -> sitk.Image:
    """Read one DICOM series of ``folder`` as a SimpleITK image (LPS geometry, RescaleSlope applied).

    The series is chosen with :func:`choose_series` and checked with :func:`check_series` before
    SimpleITK reads it, with ITK warnings silenced so that only our one error line appears. Raises
    :class:`InputError` for every problem those name, and when SimpleITK cannot decode the series.
    """
    uid, files = choose_series(folder, series_uid)
    check_series(files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with _itk_warnings_off():
            return reader.Execute()
    except RuntimeError as exc:
        log.debug("SimpleITK could not read series %s in %s: %s", uid, folder, exc)
        raise InputError(f"cannot read DICOM series {uid} in {folder}: SimpleITK could not decode its "
                         "pixel data (an unsupported compression?)") from None


def _read_header(path: PathLike, force: bool = True):
    """The pydicom dataset of ``path``, its large values (pixel data) left unread; None when unreadable.

    ``force`` reads files without the DICM preamble too (GDCM accepts them). Any parser error means
    "not readable", whatever pydicom raised for the damage at hand.
    """
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about damage; the caller reports it in one line
            return pydicom.dcmread(path, defer_size=1024, force=force)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        log.debug("pydicom cannot read %s: %s", path, exc)
        return None


def _value(path: str, ds, keyword: str, default=None):
    """``ds.<keyword>`` (``default`` when absent or empty); InputError naming the file and tag when pydicom
    cannot convert the stored value (a damaged header read leniently)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ds.get(keyword)
    except Exception as exc:  # noqa: BLE001 - pydicom's converters raise many types for bad values
        raise InputError(f"{path} has an unreadable {keyword} ({exc}); re-export the series") from None
    return default if value is None or value == "" else value


def _check_unlisted(folder: PathLike, series: dict[str, list[str]], uid: str) -> None:
    """InputError for a file of ``folder`` that GDCM left out of every series but that belongs to series
    ``uid`` (its header says so; a truncated one is named as such) or carries the DICM marker and no
    readable SOP class: a damaged slice that would otherwise be dropped without a word.

    Files GDCM ignored that lack the marker (notes, thumbnails) or are readable non-images (DICOMDIR,
    structure sets) are left alone. Only files outside every series are read, so this costs nothing
    in a clean folder.
    """
    listed = {Path(f).name for files in series.values() for f in files}
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        if entry.name in listed or not entry.is_file():
            continue
        with open(entry.path, "rb") as fh:
            marked = fh.read(132)[128:] == b"DICM"
        ds = _read_header(entry.path, force=False)
        try:
            sop_class = ds is not None and (_value(entry.path, ds, "SOPClassUID") or _value(
                entry.path, getattr(ds, "file_meta", {}), "MediaStorageSOPClassUID"))
            series_uid = None if ds is None else str(_value(entry.path, ds, "SeriesInstanceUID", ""))
        except InputError:
            sop_class = series_uid = None
        if marked and not sop_class:
            raise InputError(f"{entry.path} starts like a DICOM file but cannot be read: a damaged file, maybe "
                             f"a slice of series {uid}; remove or replace it")
        if series_uid == uid:
            if "Rows" in ds:
                _check_pixel_length(entry.path, ds)
            raise InputError(f"{entry.path} belongs to series {uid} but GDCM cannot read it: a damaged slice; "
                             "re-export the complete series")


def _mm(value: float) -> str:
    """A length in mm for messages: two decimals, or one when the second is 0 (12.0, 3.27, -11.48)."""
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def _check_pixel_length(path: str, ds) -> None:
    """InputError when the native (uncompressed) pixel data of ``path`` is shorter than its header says:
    Rows * Columns * SamplesPerPixel * NumberOfFrames * BitsAllocated / 8 bytes, all present in the file.

    Encapsulated (compressed) pixel data has no fixed length and is left to the decoder; so is a deflated
    file, whose offsets do not match the file's bytes.
    """
    try:
        elem = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    except TypeError:  # pydicom < 3 has no keep_deferred and reads the value instead
        elem = ds.get_item(_PIXEL_DATA)
    if elem is None:
        raise InputError(f"{path} has no pixel data (7FE0,0010): not an image slice; remove it from the series")
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if elem.length == _UNDEFINED_LENGTH or (syntax is not None and str(syntax) not in _NATIVE_SYNTAXES):
        return
    try:
        expected = math.ceil(int(_value(path, ds, "Rows")) * int(_value(path, ds, "Columns"))
                             * int(_value(path, ds, "SamplesPerPixel", 1)) * _frames(path, ds)
                             * int(_value(path, ds, "BitsAllocated")) / 8)
    except (TypeError, ValueError):
        raise InputError(f"{path} lacks a readable Rows, Columns or BitsAllocated: not a usable image slice") from None
    if elem.value is not None:  # small values are read, not deferred: short when the file is
        present = len(elem.value)
    else:
        present = min(elem.length, os.path.getsize(path) - elem.value_tell)
    if present < expected:
        raise InputError(f"{path} is truncated: its pixel data holds {max(present, 0)} of the {expected} bytes "
                         f"its header describes; re-export the series or replace the file")


def _frames(path: str, ds) -> int:
    """NumberOfFrames of one file (1 when absent); InputError when it is not a positive integer."""
    try:
        frames = int(_value(path, ds, "NumberOfFrames", 1))
    except (TypeError, ValueError):
        frames = 0
    if frames < 1:
        raise InputError(f"{path} has an unusable NumberOfFrames (0028,0008); re-export the series")
    return frames


def _headers(files: Sequence[PathLike]) -> list:
    """The pydicom dataset of every file; InputError naming the first file that is not readable DICOM."""
    headers = []
    for path in map(str, files):
        ds = _read_header(path)
        if ds is None or "Rows" not in ds:
            raise InputError(f"{path} is not a readable DICOM image file; remove or replace it")
        headers.append(ds)
    return headers


def _slice_name(path: str, ds) -> str:
    """``instance 4`` when the header has an InstanceNumber, else the file name."""
    number = _value(path, ds, "InstanceNumber")
    return f"instance {number}" if number is not None else Path(path).name


def _numbers(path: str, ds, keyword: str) -> tuple[float, ...]:
    """The numbers of ``keyword`` rounded to 4 decimals (empty when absent); InputError when not numbers."""
    try:
        return tuple(np.round(np.atleast_1d(np.asarray(_value(path, ds, keyword, ()), float)), 4).tolist())
    except (TypeError, ValueError):
        raise InputError(f"{path} has an unusable {keyword} {_TAG_NUMBERS[keyword]}; re-export the series") from None


def _agree(uid: str, keyword: str, values: list, paths: list[str]) -> None:
    """InputError naming ``keyword`` and the counts when ``values`` (one per file) are not all equal."""
    counts = Counter(values)
    if len(counts) > 1:
        (common, n_common), (other, n) = counts.most_common(2)
        where = Path(paths[values.index(other)]).name
        text = ["/".join(f"{v:g}" for v in value) or "absent" for value in (common, other)]
        raise InputError(f"{keyword} {_TAG_NUMBERS[keyword]} differs within series {uid}: {text[0]} on {n_common} "
                         f"files, {text[1]} on {n} (e.g. {where}); the slices do not form one volume; "
                         "re-export the series")


def check_series(files: Sequence[PathLike]) -> None:
    """Raise :class:`InputError` unless the DICOM files of one series stack into a regular volume.

    Every header is read with pydicom (pixel values are not decoded). Refused, each with one line naming
    the file(s), positions or gap:

    * a file that is not readable DICOM, has no pixel data, or whose uncompressed pixel data is shorter
      than Rows x Columns x SamplesPerPixel x NumberOfFrames x BitsAllocated / 8 (a truncated file);
    * Rows, Columns or PixelSpacing that differ between files;
    * ImageOrientationPatient that differs between files (more than 1e-4 in a direction cosine);
    * several files at one position along the slice normal (normal = row x column direction; z below is
      ImagePositionPatient projected on it, in mm): a 4D/dynamic series when every position holds the same
      number of files, a duplicated slice otherwise;
    * spacing between consecutive positions that differs from the median spacing by more than 10 % of it
      or 0.01 mm, whichever is larger (:data:`SPACING_TOL`): a gap (a missing slice) or uneven spacing;
      or a slice that far from the even grid ITK stacks the slices on (a slow drift).

    One file is always fine. The position checks are skipped when no file has ImagePositionPatient (ITK
    then stacks in file order at 1 mm) and for multi-frame files (NumberOfFrames > 1), whose positions
    live in per-frame sequences; a series where only some files lack it is refused. Without
    ImageOrientationPatient on every file the axial orientation is assumed.
    """
    paths = [str(f) for f in files]
    if not paths:
        raise InputError("a DICOM series needs at least one file; none was given")
    headers = _headers(paths)
    uid = str(_value(paths[0], headers[0], "SeriesInstanceUID", "(no SeriesInstanceUID)"))
    for path, ds in zip(paths, headers):
        _check_pixel_length(path, ds)
    if len(headers) < 2:
        return
    for keyword in ("Rows", "Columns", "PixelSpacing"):
        _agree(uid, keyword, [_numbers(path, ds, keyword) for path, ds in zip(paths, headers)], paths)
    if any(_frames(path, ds) > 1 for path, ds in zip(paths, headers)):
        return
    with_position = [_value(path, ds, "ImagePositionPatient") is not None for path, ds in zip(paths, headers)]
    if not any(with_position):
        return
    if not all(with_position):
        missing = paths[with_position.index(False)]
        raise InputError(f"{missing} lacks ImagePositionPatient (0020,0032) while other slices of series {uid} "
                         "have it: the slices cannot be placed; re-export the series")
    _check_positions(uid, paths, headers)


def _vectors(paths: list[str], headers: list, keyword: str, number: str, size: int) -> np.ndarray:
    """``keyword`` of every header as an ``(N, size)`` float array (DEFAULT_ORIENTATION where an orientation
    is absent); InputError naming the first file whose value does not hold ``size`` numbers."""
    rows = []
    for path, ds in zip(paths, headers):
        value = _value(path, ds, keyword, DEFAULT_ORIENTATION if size == 6 else ())
        try:
            row = np.asarray(value, float).reshape(-1)
        except (TypeError, ValueError):
            row = np.zeros(0)
        if row.size != size or not np.isfinite(row).all():
            raise InputError(f"{path} has an unusable {keyword} {number} ({value!r}): {size} numbers are needed")
        rows.append(row)
    return np.array(rows)


def _check_positions(uid: str, paths: list[str], headers: list) -> None:
    """The orientation, duplicate and spacing checks of :func:`check_series` (every file has a position)."""
    orientations = _vectors(paths, headers, "ImageOrientationPatient", "(0020,0037)", 6)
    off = np.abs(orientations - orientations[0]).max(axis=1) > ORIENTATION_TOL
    if off.any():
        k = int(np.argmax(off))
        raise InputError(f"ImageOrientationPatient (0020,0037) differs within series {uid}: "
                         f"{np.round(orientations[0], 4).tolist()} in {Path(paths[0]).name}, "
                         f"{np.round(orientations[k], 4).tolist()} in {Path(paths[k]).name} ({int(off.sum())} of "
                         f"{len(paths)} files): the slices are not parallel; re-export the series")
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    z = _vectors(paths, headers, "ImagePositionPatient", "(0020,0032)", 3) @ normal
    order = np.argsort(z, kind="stable")
    z = z[order]
    names = [_slice_name(paths[i], headers[i]) for i in order]
    steps = np.diff(z)
    same = steps <= DUPLICATE_TOL_MM
    if same.any():
        starts = np.concatenate([[True], ~same])
        per_position = np.diff(np.flatnonzero(np.concatenate([starts, [True]])))
        if per_position.min() == per_position.max():
            raise InputError(f"series {uid} holds {per_position[0]} files per slice position ({len(z)} files at "
                             f"{len(per_position)} positions): a 4D, dynamic or multi-echo series; export one "
                             "frame as its own series")
        k = int(np.argmax(same))
        raise InputError(f"series {uid} has two slices at z = {_mm(z[k])} mm ({names[k]} and {names[k + 1]}): "
                         "a duplicated slice; remove one or re-export the series")
    _check_spacing(uid, z, names)


def _check_spacing(uid: str, z: np.ndarray, names: list[str]) -> None:
    """InputError when the sorted, distinct positions ``z`` (mm along the slice normal) are not evenly spaced:
    a step more than :data:`SPACING_TOL` of the median step away from it (a gap when it is a multiple of
    it), or a slice that far from where ITK's regular stacking (first to last, evenly) puts it."""
    steps = np.diff(z)
    if len(steps) < 2:
        return
    spacing = float(np.median(steps))
    tol = max(SPACING_TOL * spacing, DUPLICATE_TOL_MM)
    bad = np.abs(steps - spacing) > tol
    if bad.any():
        k = int(np.argmax(np.where(bad, np.abs(steps - spacing), -1.0)))
        where = (f"between slices at z = {_mm(z[k])} and {_mm(z[k + 1])} mm ({names[k]} and {names[k + 1]}) "
                 f"where the spacing is {_mm(spacing)} mm")
        more = f" ({int(bad.sum()) - 1} more irregular steps)" if bad.sum() > 1 else ""
        missing = round(steps[k] / spacing) - 1
        if missing >= 1 and abs(steps[k] - (missing + 1) * spacing) <= tol:
            what = "a slice is missing" if missing == 1 else f"{missing} slices are missing"
            raise InputError(f"series {uid} has a gap of {_mm(steps[k])} mm {where}: {what}{more}; "
                             "re-export the complete series")
        raise InputError(f"series {uid} has uneven slice spacing: {_mm(steps[k])} mm {where}{more}; it cannot be "
                         "stacked on a regular grid; re-export or resample the series")
    grid = z[0] + np.arange(len(z)) * (z[-1] - z[0]) / (len(z) - 1)
    if (off := np.abs(z - grid)).max() > tol:
        k = int(np.argmax(off))
        raise InputError(f"series {uid} drifts off a regular grid: the slice at z = {_mm(z[k])} mm ({names[k]}) "
                         f"lies {_mm(off[k])} mm from where even stacking puts it (spacing {_mm(spacing)} mm); "
                         "re-export or resample the series")
