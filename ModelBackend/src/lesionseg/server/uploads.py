"""Receiving an upload: a streamed multipart body written straight into the session's private folder.

Nothing a client sends is used as a path. Parts are stored under names the server chooses (``part-0``, ...), then
recognised by their first bytes (:func:`sniff`): gzip'd or plain NIfTI-1/2, NRRD, MHA, or a zip taken as one DICOM
series and unpacked flat under numbered names (no member name is used, so no ``../`` can escape). NRRD and MHA
headers naming a detached data file are refused, since ITK would open that path on the server. The size limit
is checked on the declared length, on the bytes received and on what a zip unpacks to; a body that stalls is
dropped. The images are then read by :func:`lesionseg.io.read_image`, so every check of the CLI applies
(truncated files, NaN, DICOM gaps). No fastapi here; :func:`receive` takes a Starlette ``Request``.

python-multipart's streaming parser is used rather than Starlette's ``request.form()``, which spools file parts
to the system temporary folder before the handler can check anything.
"""
from __future__ import annotations

import asyncio
import gzip
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Optional

from ..errors import InputError
from .errors import TooLarge

FIELDS = ("method", "options", "series", "meta", "prepared")
"""Text fields of ``POST /v1/sessions`` besides the ``image`` parts."""
MAX_FIELD_BYTES = 1 << 20
STALL_S = 120.0
"""An upload that sends nothing for this long is dropped."""
ZIP_FACTOR = 4
"""A zipped DICOM series may unpack to this many times the upload limit."""
_META_KEY = re.compile(rb"^[A-Za-z][A-Za-z0-9_]* *= ")


def too_large(limit_bytes: int) -> TooLarge:
    """The error of an upload over the limit (the client checks with the same words before sending)."""
    return TooLarge(f"the upload is larger than the server's limit of {limit_bytes / (1 << 20):g} MB "
                    "(lesionseg serve --max-upload-mb)")


@dataclass
class Upload:
    """What a multipart body held: the image parts (files in the session folder, in order, with the names the
    client gave them, for messages only) and the text fields."""

    files: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)
    nbytes: int = 0

    def value(self, name: str) -> Optional[str]:
        """The last value of text field ``name`` (None when absent or empty)."""
        values = self.fields.get(name) or [""]
        return values[-1] or None


class _Parts:
    """python-multipart callbacks writing image parts to files and keeping text fields."""

    def __init__(self, folder: Path, upload: Upload) -> None:
        self.folder, self.upload = folder, upload
        self._header_field, self._header_value = bytearray(), bytearray()
        self._disposition = b""
        self._file: Optional[BinaryIO] = None
        self._name = ""
        self._text: Optional[bytearray] = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end}

    def on_part_begin(self) -> None:
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self._name == "image" or filename is not None:
            if self._name != "image":
                raise InputError(f"unexpected file part {self._name!r}; send each image as a part named 'image'")
            n = len(self.upload.files)
            self.upload.files.append(self.folder / f"part-{n}")
            self.upload.names.append((filename or b"").decode("utf-8", "replace") or f"image {n + 1}")
            self._file = open(self.upload.files[-1], "wb")
        elif self._name in FIELDS:
            self._text = bytearray()
        else:
            raise InputError(f"unknown field {self._name!r}; the fields are image, {', '.join(FIELDS)}")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
        elif self._text is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise InputError(f"the field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._text is not None:
            self.upload.fields.setdefault(self._name, []).append(self._text.decode("utf-8", "replace"))
            self._text = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive(request: Any, folder: Path, limit_bytes: int, stall_s: float = STALL_S) -> Upload:
    """Stream a ``multipart/form-data`` body into ``folder`` (see the module docstring).

    Raises:
        InputError: not multipart, an unknown field, a stalled body. TooLarge: over ``limit_bytes``.
        starlette.requests.ClientDisconnect: the client went away (the caller removes ``folder``).
    """
    from python_multipart.exceptions import ParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise InputError("upload the image(s) as multipart/form-data, one part named 'image' per image")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes + (1 << 16):
        raise too_large(limit_bytes)
    upload = Upload()
    parts = _Parts(folder, upload)
    parser = MultipartParser(params[b"boundary"], parts.callbacks())
    stream = request.stream().__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), stall_s)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise InputError(f"the upload stalled (nothing received for {stall_s:g} s)") from None
            upload.nbytes += len(chunk)
            if upload.nbytes > limit_bytes + (1 << 16):
                raise too_large(limit_bytes)
            parser.write(chunk)
        parser.finalize()
    except ParseError as exc:
        raise InputError(f"the upload is not a well-formed multipart/form-data body ({exc})") from None
    finally:
        parts.close()
    if not upload.files:
        raise InputError("the upload holds no image: send each image as a part named 'image'")
    return upload


def sniff(head: bytes) -> Optional[str]:
    """What the first bytes (512 or more) of a file are: ``".nii.gz"``, ``".nii"``, ``".nrrd"``, ``".mha"``,
    ``"zip"`` or ``"img"`` (a NIfTI header whose voxels are in a separate file); None when none of these."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=_Bytes(head)) as gz:
                inner = gz.read(540)
        except (OSError, EOFError):
            inner = b""
        kind = sniff(inner) if inner else None
        return ".nii.gz" if kind == ".nii" else ("img" if kind == "img" else None)
    if head[344:348] == b"n+1\x00" or head[4:8] == b"n+2\x00":
        return ".nii"
    if head[344:348] == b"ni1\x00" or head[4:8] == b"ni2\x00":
        return "img"
    if head.startswith(b"NRRD"):
        return ".nrrd"
    if _META_KEY.match(head):
        return ".mha"
    return None


class _Bytes:
    """A minimal read-only file over bytes (gzip needs one; a truncated stream just ends)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n is None or n < 0 else self._pos + n
        out, self._pos = self._data[self._pos:end], min(end, len(self._data))
        return out


def _check_attached(path: Path, kind: str, shown: str) -> None:
    """Refuse an NRRD or MHA header whose voxels lie in another file (ITK would open it on the server)."""
    with open(path, "rb") as fh:
        header = fh.read(1 << 16)
    lines = header.split(b"\n")
    if kind == ".nrrd":
        lines = lines[:lines.index(b"") if b"" in lines else len(lines)]
        detached = any(re.match(rb"^\s*data ?file\s*:", line, re.IGNORECASE) for line in lines)
    else:
        found = [line for line in lines if line.split(b"=")[0].strip().lower() == b"elementdatafile"]
        detached = not found or found[0].split(b"=", 1)[1].strip() != b"LOCAL"
    if detached:
        raise InputError(f"{shown}: its header names a separate data file; send a single-file image "
                         "(.nii.gz, .nrrd or .mha with the voxels inside)")


def unzip_series(archive: Path, folder: Path, limit_bytes: int, shown: str) -> Path:
    """Unpack the files of a zip flat into ``folder`` as ``00000.dcm``, ``00001.dcm``, ... (member names are
    never used; folders, ``__MACOSX`` and hidden files are skipped).

    Raises:
        InputError: not a readable zip, no file in it. TooLarge: it unpacks to more than ``limit_bytes``.
    """
    folder.mkdir()
    total = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")
                       and not Path(m.filename).name.startswith(".")]
            if not members:
                raise InputError(f"{shown}: the zip holds no file (zip the files of one DICOM series)")
            for n, member in enumerate(members):
                with zf.open(member) as src, open(folder / f"{n:05d}.dcm", "wb") as dst:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > limit_bytes:
                            raise TooLarge(f"{shown}: the zip unpacks to more than {limit_bytes / (1 << 20):g} MB, "
                                           "the server's limit for a DICOM series")
                        dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError) as exc:
        raise InputError(f"{shown}: not a readable zip file ({exc})") from None
    return folder


def prepare_files(upload: Upload, limit_bytes: int) -> list[Path]:
    """Rename each image part after what it is (or unpack a zip into a folder); returns the paths to read.

    Raises:
        InputError: a part that is none of the formats, or a header naming a separate data file.
    """
    out = []
    for n, (part, shown) in enumerate(zip(upload.files, upload.names)):
        with open(part, "rb") as fh:
            kind = sniff(fh.read(1024))
        if kind == "zip":
            out.append(unzip_series(part, part.parent / f"image{n}-dicom", limit_bytes * ZIP_FACTOR, shown))
            part.unlink()
            continue
        if kind == "img":
            raise InputError(f"{shown}: a NIfTI header whose voxels are in a separate .img file; send a single "
                             "file (.nii or .nii.gz)")
        if kind is None:
            raise InputError(f"{shown}: not a NIfTI, NRRD or MHA image, nor a zip of a DICOM series")
        if kind in (".nrrd", ".mha"):
            _check_attached(part, kind, shown)
        target = part.parent / f"image{n}{kind}"
        part.rename(target)
        out.append(target)
    return out
