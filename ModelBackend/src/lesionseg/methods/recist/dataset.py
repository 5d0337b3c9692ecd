"""Training / evaluation samples for ``recist-coseg``: lesion slices with RECIST axes derived from masks.

A *sample* is one axial slice of one lesion: the RECIST axes measured on its mask (longest in-plane
diameter and the longest chord perpendicular to it), the crop frame of those axes, the ``(3, S, S)``
HU crop of slices ``k-1, k, k+1``, the GrabCut mask made from the axes (the only training target: weak
supervision) and the true mask (for evaluation only). The *key* slice of a lesion is its slice of
largest area, where RECIST would be measured.

Data layouts found under ``--data DIR`` (searched recursively):

- ``.../image/NAME.nii.gz`` with ``.../nodule_mask/NAME.nii.gz`` or ``.../mask/NAME.nii.gz``
  (the LIDC nodule VOIs; patient = the name before ``_R_``);
- ``NAME_img_uint8win.nii.gz`` with ``NAME_lesion_mask.nii.gz`` (DeepLesion sub-volumes windowed to
  uint8; converted back to HU with the window ``[-175, 275]``; patient = the DeepLesion patient number).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...geometry import RecistIndex, world_to_index
from ...image import Image
from ...io import read_image
from ...metrics import recist_axes
from .initial_mask import CropFrame, crop_frame, grabcut_from_recist

log = logging.getLogger(__name__)

UINT8_WINDOW_HU = (-175.0, 275.0)
"""The DeepLesion sub-volumes map this HU window linearly to 0..255."""
MIN_AREA_FRACTION = 0.4
MIN_LONG_MM = 3.0


@dataclass
class Sample:
    """One lesion slice. ``crop_hu``: ``(3, S, S)`` float32 HU; ``grabcut``/``truth_crop``: ``(S, S)`` bool;
    ``truth_slice``: ``(J, I)`` bool true mask on the native slice; ``spacing``: ``(i, j)`` mm."""

    name: str
    patient: str
    k: int
    key: bool
    recist: RecistIndex
    frame: CropFrame
    crop_hu: np.ndarray
    grabcut: np.ndarray
    truth_crop: np.ndarray
    truth_slice: np.ndarray
    spacing: np.ndarray


def find_cases(root: Path) -> list[tuple[Path, Path, str, bool]]:
    """``(image, mask, patient, is_uint8_window)`` of every case under ``root``, sorted by image path."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder {root} does not exist")
    cases = []
    for img in sorted(root.rglob("*.nii.gz")):
        if img.parent.name == "image":
            for mask_dir in ("nodule_mask", "mask"):
                mask = img.parent.parent / mask_dir / img.name
                if mask.is_file():
                    cases.append((img, mask, img.name.split("_R_")[0].replace(".nii.gz", ""), False))
                    break
        elif img.name.endswith("_img_uint8win.nii.gz"):
            mask = img.with_name(img.name.replace("_img_uint8win", "_lesion_mask"))
            match = re.search(r"Lesion_(\d+)_", img.name)
            if mask.is_file():
                cases.append((img, mask, "DL" + (match.group(1) if match else img.name), True))
    if not cases:
        raise InputError(f"no image/mask pairs found under {root} (see lesionseg.methods.recist.dataset)")
    return cases


def slice_axes(mask: Image, k: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """RECIST axes of slice ``k`` of a ``(K, J, I)`` label image, measured by
    :func:`lesionseg.metrics.recist_axes`: ``(long, short)``, each ``(2, 2)`` pixel ``(i, j)`` end points.
    Returns None when the slice is empty."""
    size = mask.size_ijk
    plane = mask.crop((0, 0, k), (size[0] - 1, size[1] - 1, k))
    if not np.any(plane.array):
        return None
    axes = recist_axes(plane)
    long_ij = world_to_index(mask, axes.long_endpoints_lps)[:, :2]
    short_ij = world_to_index(mask, axes.short_endpoints_lps)[:, :2]
    return long_ij, (short_ij if axes.short_mm > 0 else None)


def load_case(img_path: Path, mask_path: Path, uint8_window: bool) -> tuple[Image, np.ndarray]:
    """The case's image in HU (float32) and its ``(K, J, I)`` bool mask."""
    image = read_image(img_path)
    arr = image.array.astype(np.float32)
    if uint8_window:
        lo, hi = UINT8_WINDOW_HU
        arr = lo + arr * (hi - lo) / 255.0
    mask = read_image(mask_path)
    if mask.shape != image.shape:
        raise InputError(f"{mask_path} does not match {img_path} in shape")
    return image.with_array(arr), np.asarray(mask.array) > 0


def lesion_samples(name: str, patient: str, image: Image, mask: np.ndarray, all_slices: bool = True,
                   grabcut: bool = True) -> Iterator[Sample]:
    """Samples of one lesion volume: its key slice and (``all_slices``) every slice whose area is at least
    :data:`MIN_AREA_FRACTION` of the key slice's and whose long axis is at least :data:`MIN_LONG_MM`."""
    areas = mask.reshape(len(mask), -1).sum(axis=1)
    if areas.max() == 0:
        return
    key = int(np.argmax(areas))
    mask_image = image.with_array(mask.astype(np.uint8))
    slices = [k for k in range(len(mask)) if areas[k] >= MIN_AREA_FRACTION * areas[key]] if all_slices else [key]
    for k in slices:
        axes = slice_axes(mask_image, k)
        if axes is None:
            continue
        long_px, short_px = axes
        if np.linalg.norm((long_px[1] - long_px[0]) * image.spacing[:2]) < MIN_LONG_MM:
            continue
        recist = RecistIndex(k, long_px, short_px)
        frame = crop_frame(recist, image.spacing, image.shape[1:])
        neighbours = image.array[[max(k - 1, 0), k, min(k + 1, len(mask) - 1)]]
        crop = frame.sample(neighbours)
        long_uv, short_uv = frame.to_crop(long_px), (frame.to_crop(short_px) if short_px is not None else None)
        gc = grabcut_from_recist(crop, long_uv, short_uv) if grabcut else np.zeros(crop.shape[1:], bool)
        truth_crop = frame.sample(mask[k].astype(np.float32))[0] >= 0.5
        yield Sample(name, patient, k, k == key, recist, frame, crop, gc, truth_crop, mask[k].copy(),
                     image.spacing.copy())


def load_samples(root: Path, all_slices: bool = True) -> list[Sample]:
    """Samples of every case under ``root`` (see :func:`find_cases`)."""
    out: list[Sample] = []
    for img, msk, patient, uint8 in find_cases(root):
        image, mask = load_case(img, msk, uint8)
        labels, n = ndimage.label(mask, ndimage.generate_binary_structure(3, 2))
        for lesion in range(1, n + 1):
            name = img.name.replace(".nii.gz", "") + (f"#{lesion}" if n > 1 else "")
            out.extend(lesion_samples(name, patient, image, labels == lesion, all_slices))
    log.info("recist-coseg: %d samples (%d key slices)", len(out), sum(s.key for s in out))
    return out


def network_input(crop_hu: np.ndarray) -> np.ndarray:
    """``(2, S, S)`` float32 network input from a ``(S, S)`` (or ``(3, S, S)``: the middle is used) HU crop:
    a lung window ``[-1000, 400]`` and a soft-tissue window ``[-175, 275]``, each scaled to 0..1."""
    centre = crop_hu[1] if crop_hu.ndim == 3 else crop_hu
    lung = np.clip((centre + 1000.0) / 1400.0, 0.0, 1.0)
    soft = np.clip((centre - UINT8_WINDOW_HU[0]) / (UINT8_WINDOW_HU[1] - UINT8_WINDOW_HU[0]), 0.0, 1.0)
    return np.stack([lung, soft]).astype(np.float32)
