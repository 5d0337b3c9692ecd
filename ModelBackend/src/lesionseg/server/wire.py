"""The wire format shared by the server and :mod:`lesionseg.client`: images as MHA bytes (uploads), labels as
NIfTI bytes (answers), multipart bodies, and the content hash by which equal images share one session.

MHA carries the geometry as 17-digit decimals, so an upload arrives on exactly the caller's grid; NIfTI (what the
issue's API returns) keeps it in float32, so a label is checked against and put back on the caller's own grid.
SimpleITK writes files only: both go through a private temporary file. No fastapi, no torch here.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..image import Image


class GridError(Exception):
    """A label that does not lie on the expected grid (the client raises its ServerError for it)."""


def multipart(fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """``(body, content type)`` of a multipart/form-data body: text ``fields`` ``(name, value)`` and ``files``
    ``(name, file name, bytes)``."""
    boundary = "lesionseg-" + secrets.token_hex(16)
    chunks = []
    for name, value in fields:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                      + value.encode("utf-8") + b"\r\n")
    for name, filename, data in files:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                      "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def encode_image(image: Image, level: int = 1) -> bytes:
    """``image`` as MHA bytes (geometry written with 17 digits, so it arrives exactly; zlib ``level``)."""
    import SimpleITK as sitk

    from ..filecheck import quiet_native_stderr
    from ..io import to_sitk

    with tempfile.TemporaryDirectory(prefix="lesionseg-client-") as folder:
        path = os.path.join(folder, "image.mha")
        with quiet_native_stderr():
            sitk.WriteImage(to_sitk(image), path, level > 0, level)
        return Path(path).read_bytes()


def decode_label(data: bytes, reference: Image) -> Image:
    """The NIfTI label bytes as an image on ``reference``'s grid (checked: NIfTI keeps geometry in float32).

    Read with SimpleITK directly, not :func:`lesionseg.io.read_image`: the bytes are the server's own answer (its
    gzip checksum is verified on reading), and the full input checks would cost a 512 x 512 x 64 label ~0.1 s.

    Raises:
        GridError: an unreadable label, or one on another grid.
    """
    import SimpleITK as sitk

    from ..filecheck import quiet_native_stderr
    from ..image import grid_mismatch
    from ..io import from_sitk

    with tempfile.TemporaryDirectory(prefix="lesionseg-client-") as folder:
        path = Path(folder) / "label.nii.gz"
        path.write_bytes(data)
        try:
            with quiet_native_stderr():
                label = from_sitk(sitk.ReadImage(str(path)))
        except RuntimeError:
            raise GridError(f"the server's answer is not a readable NIfTI label ({len(data)} bytes)") from None
    if label.shape != reference.shape or grid_mismatch(label, reference, tol=1e-3):
        raise GridError(f"the server returned a label on another grid ({grid_mismatch(label, reference, 1e-3)})")
    return reference.with_array(np.asarray(label.array))


def image_digest(images: Sequence[Image]) -> str:
    """Content hash of images (voxels, dtype, geometry, metadata): equal images share a server session."""
    h = hashlib.blake2b(digest_size=20)
    for image in images:
        h.update(str((image.array.dtype.str, image.shape, image.spacing.tolist(), image.origin.tolist(),
                      image.direction.tolist(), sorted(json_meta(image.meta).items()))).encode())
        h.update(np.ascontiguousarray(image.array).data)
    return h.hexdigest()


def json_meta(meta: Mapping[str, Any]) -> dict:
    """The JSON-serialisable entries of an image's metadata (others are not sent)."""
    out = {}
    for key, value in meta.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[str(key)] = value
    return out




def encode_label(label: Image, folder: Path) -> bytes:
    """The label as gzip'd NIfTI bytes (written through SimpleITK to a temporary file in ``folder``)."""
    import SimpleITK as sitk

    from ..filecheck import quiet_native_stderr
    from ..io import to_sitk

    fd, name = tempfile.mkstemp(suffix=".nii.gz", prefix=".label-", dir=folder)
    os.close(fd)
    try:
        with quiet_native_stderr():
            sitk.WriteImage(to_sitk(label), name, True, 1)  # zlib level 1: a label is mostly zeros
        return Path(name).read_bytes()
    finally:
        os.unlink(name)
