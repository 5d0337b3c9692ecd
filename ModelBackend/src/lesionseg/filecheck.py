"""Checks of image files that SimpleITK does not make: truncation, non-finite NIfTI voxels, memory.

ITK's NIfTI reader fills the missing part of a truncated ``.nii``/``.nii.gz`` with zeros and turns NaN and
infinite voxels into 0; its NIfTI writer truncates silently when the disk is full. :func:`check_nifti` reads
the header and the voxel data's bytes (decompressing a ``.nii.gz`` in a stream, which also checks its CRC) and
raises :class:`~lesionseg.errors.InputError` for a file whose data is shorter than its header says, and for
float voxels that are NaN or infinite; :func:`quick_check_nifti` is its instant part (sizes only), and
:func:`check_while` runs the full check beside ITK's own read, so that it costs little time. :func:`check_memory` refuses an image whose header promises more
voxels than the machine can hold. :func:`quiet_native_stderr` keeps ITK's multi-line messages (written by C++
straight to file descriptor 2) off the terminal; they go to the debug log instead. No torch here.
"""
from __future__ import annotations

import gzip
import logging
import os
import struct
import tempfile
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)
CHUNK = 1 << 24
"""Bytes decompressed at a time (16 MiB)."""
NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
                1280: "u8", 128: "u1", 2304: "u1", 32: "f4", 1792: "f8"}
"""NIfTI datatype code -> numpy kind of one stored number (RGB, RGBA and complex as their element type)."""
ELEMENTS = {128: 3, 2304: 4, 32: 2, 1792: 2}
"""Numbers per voxel of the multi-element NIfTI datatypes (RGB24, RGBA32, complex64/128)."""


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 29 else f"{n / 2 ** 20:.1f} MiB"


def is_nifti(path: Path) -> bool:
    """True for ``.nii`` and ``.nii.gz`` file names (case-insensitive)."""
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def nifti_layout(header: bytes, path: Path) -> tuple[np.dtype, int, int]:
    """``(stored dtype, data offset in bytes, number of stored numbers)`` from a NIfTI-1 or NIfTI-2 header.

    Raises :class:`InputError` when ``header`` (its first 540 bytes or fewer) is not a NIfTI header.
    """
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            code, = struct.unpack(endian + "h", header[70:72])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            offset = max(offset, 352) if not path.name.lower().endswith((".hdr", ".img")) else offset
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            code, = struct.unpack(endian + "h", header[12:14])
            offset, = struct.unpack(endian + "q", header[168:176])
            break
    else:
        raise InputError(f"{path} is not a NIfTI file (its header is missing or damaged)")
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1:ndim + 1]):
        raise InputError(f"{path} has an invalid NIfTI header: dimensions {list(dims[:ndim + 1])}")
    if code not in NIFTI_DTYPES:
        raise InputError(f"{path} has NIfTI datatype {code}, which LesionSeg does not read")
    count = int(np.prod([int(d) for d in dims[1:ndim + 1]], dtype=np.float64)) * ELEMENTS.get(code, 1)
    return np.dtype(endian + NIFTI_DTYPES[code]), int(offset), count


def check_nifti(path: os.PathLike | str, what: str = "") -> None:
    """Raise :class:`InputError` when a ``.nii``/``.nii.gz`` file's voxel data is shorter than its header
    says (a truncated or half-written file), its gzip stream is damaged, or it holds NaN/infinite floats.

    Reads the whole file once (about as long as decompressing it); float data is checked chunk by chunk
    without holding the volume in memory. ``what`` prefixes the message (e.g. "the written file").
    """
    path = Path(path)
    name = f"{what} {path}".strip()
    try:
        with _open(path) as fh:
            header = fh.read(540)
            dtype, offset, count = nifti_layout(header, path)
            need = offset + count * dtype.itemsize
            fh.seek(0)
            got, bad = _scan(fh, dtype, offset, count)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"cannot read {name}: the file is truncated or corrupt (its gzip stream ends early or "
                         f"fails its checksum: {exc})") from None
    if got < need:
        raise InputError(f"{name} is truncated: its header promises {count} values of {dtype.name} "
                         f"({need} bytes with the header) but the file holds {got} bytes")
    if bad:
        raise InputError(f"{name} holds {bad} NaN or infinite voxel(s) (NIfTI readers would silently turn them "
                         "into 0); fix or mask them first")


def quick_check_nifti(path: os.PathLike | str, what: str = "") -> None:
    """The instant part of :func:`check_nifti`: the file size (``.nii``) or the uncompressed size in the gzip
    trailer (``.nii.gz``, modulo 2**32) against what the header promises. A truncated file fails this almost
    surely; on a mismatch the full :func:`check_nifti` runs (a multi-member gzip file's trailer holds only its
    last member's size), which raises when the file is really short or damaged."""
    path = Path(path)
    try:
        with _open(path) as fh:
            dtype, offset, count = nifti_layout(fh.read(540), path)
    except (EOFError, gzip.BadGzipFile, zlib.error):
        return check_nifti(path, what)
    need = offset + count * dtype.itemsize
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            size = struct.unpack("<I", fh.read(4))[0]
        if size == need % 2 ** 32:
            return None
    elif path.stat().st_size >= need:
        return None
    return check_nifti(path, what)


def _scan(fh, dtype: np.dtype, offset: int, count: int) -> tuple[int, int]:
    """``(bytes read, non-finite values)`` of a stream positioned at 0: reads everything, counting NaN/inf
    among the ``count`` numbers after ``offset`` when ``dtype`` is a float."""
    is_float = dtype.kind == "f"
    total, bad, carry = 0, 0, b""
    end = offset + count * dtype.itemsize
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            return total, bad
        start = total
        total += len(chunk)
        if not is_float or total <= offset or start >= end:
            continue
        data = carry + chunk[max(offset - start, 0): max(min(end - start, len(chunk)), 0)]
        usable = len(data) - len(data) % dtype.itemsize
        values = np.frombuffer(data[:usable], dtype)
        bad += int(values.size - np.count_nonzero(np.isfinite(values)))
        carry = data[usable:]


def check_while(check, work):
    """Run ``check()`` in a thread while ``work()`` runs in this one (SimpleITK releases the GIL while it reads,
    so the two use both cores); raise what ``check`` raised (also when ``work`` failed too), else what
    ``work`` raised, else return what ``work`` returned."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            check()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="lesionseg-filecheck", daemon=True)
    thread.start()
    try:
        result = work()
    except Exception:
        thread.join()
        if failure:  # the check says more than ITK's failure to read the same file
            raise failure[0] from None
        raise
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return result


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (``MemAvailable`` of /proc/meminfo); None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(path: Path, size: tuple[int, ...], bytes_per_voxel: int, pixel: str,
                 copies: float = 2.0) -> None:
    """Raise :class:`InputError` when an image of ``size`` voxels (``bytes_per_voxel`` each) needs more than
    the memory available: reading holds it ``copies`` times (ITK's buffer and the numpy array)."""
    voxels = float(np.prod([float(s) for s in size]))
    need = voxels * bytes_per_voxel * copies
    free = available_memory()
    if free is not None and need > free:
        dims = "x".join(str(int(s)) for s in size)
        raise InputError(f"{path}: its header promises {dims} voxels of {pixel} ({_gib(voxels * bytes_per_voxel)}); "
                         f"reading it needs about {_gib(need)} but only {_gib(free)} of memory is available")


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send what C/C++ code writes to file descriptor 2 during the block to the debug log, not the terminal.

    ITK's readers and writers print multi-line warnings and errors there directly, bypassing Python; the
    errors they also raise are reported by the caller in one line. Only the main thread should use this.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("ITK said: %s", text)
