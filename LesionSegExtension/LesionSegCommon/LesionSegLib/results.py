"""How a LesionSeg result is stored in a segmentation (pure numpy; no ``slicer`` import).

A result is a NEW segment named ``lesion N`` with the standard terminology "Morphologically altered
structure / Mass", a colour from a fixed palette, and tags recording what produced it (``LesionSeg.method``,
``LesionSeg.prompt`` = JSON of the prompt's ``to_dict()`` in LPS mm, ``LesionSeg.version``). Only the changed
region is written: :class:`LabelPatch` is the bounding box of the non-zero voxels.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from lesionseg import Image, InputError, Prompt

TERMINOLOGY_MASS = (
    "Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^49755003^Morphologically Altered Structure"
    "~SCT^4147007^Mass"
    "~^^"
    "~Anatomic codes - DICOM master list"
    "~^^~^^"
)
"""Slicer's serialized terminology entry (``context~category~type~type modifier~anatomic context~region~region
modifier``; each code ``scheme^value^meaning``) for SNOMED CT 49755003 / 4147007."""

METHOD_TAG = "LesionSeg.method"
PROMPT_TAG = "LesionSeg.prompt"
VERSION_TAG = "LesionSeg.version"
SEGMENT_NAME_PREFIX = "lesion"

LESION_COLORS = (
    (0.90, 0.20, 0.20), (0.95, 0.65, 0.10), (0.20, 0.70, 0.90), (0.55, 0.85, 0.25),
    (0.80, 0.35, 0.85), (0.95, 0.85, 0.20), (0.25, 0.45, 0.95), (0.95, 0.45, 0.65),
)
"""RGB in 0..1, cycled by lesion number."""


def next_lesion_name(existing: Iterable[str]) -> str:
    """``"lesion N"`` with N one more than the largest ``lesion <number>`` among ``existing`` names."""
    pattern = re.compile(rf"^{SEGMENT_NAME_PREFIX} (\d+)$")
    numbers = [int(m.group(1)) for name in existing if (m := pattern.match(name or ""))]
    return f"{SEGMENT_NAME_PREFIX} {max(numbers, default=0) + 1}"


def lesion_color(name: str) -> tuple[float, float, float]:
    """Palette colour of ``"lesion N"`` (the first colour for any other name)."""
    match = re.match(rf"^{SEGMENT_NAME_PREFIX} (\d+)$", name)
    number = int(match.group(1)) if match else 1
    return LESION_COLORS[(number - 1) % len(LESION_COLORS)]


def segment_tags(method: str, prompt: Prompt, version: str = "") -> dict[str, str]:
    """The tags stored on a result segment; the prompt is JSON in LPS mm (``null`` for no prompt)."""
    if not method:
        raise InputError("a result needs the name of the method that produced it")
    data = None if prompt is None else prompt.to_dict()
    return {METHOD_TAG: method, PROMPT_TAG: json.dumps(data, separators=(",", ":")), VERSION_TAG: version}


@dataclass(frozen=True)
class LabelPatch:
    """The changed region of a result: a binary block and where it sits in the volume.

    Attributes:
        array: ``(K, J, I)`` uint8 of 0/1, the block of voxels to write.
        lo: ``(3,)`` int, ``(i, j, k)`` index in the volume of ``array[0, 0, 0]``.
    """

    array: np.ndarray
    lo: np.ndarray

    @property
    def hi(self) -> np.ndarray:
        """Inclusive ``(i, j, k)`` index of the last voxel of the block."""
        return self.lo + np.array(self.array.shape[::-1]) - 1

    @property
    def extent(self) -> tuple[int, int, int, int, int, int]:
        """VTK extent ``(i0, i1, j0, j1, k0, k1)``, inclusive."""
        lo, hi = self.lo, self.hi
        return (int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]))

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.array))


def label_patch(label: np.ndarray) -> Optional[LabelPatch]:
    """Crop a ``(K, J, I)`` label array to the bounding box of its non-zero voxels (``None`` when empty)."""
    arr = np.asarray(label)
    if arr.ndim != 3:
        raise InputError(f"expected a (K, J, I) label array, got shape {arr.shape}")
    nonzero = np.nonzero(arr)
    if len(nonzero[0]) == 0:
        return None
    lo_kji = np.array([ax.min() for ax in nonzero])
    hi_kji = np.array([ax.max() for ax in nonzero])
    block = arr[lo_kji[0]:hi_kji[0] + 1, lo_kji[1]:hi_kji[1] + 1, lo_kji[2]:hi_kji[2] + 1]
    return LabelPatch((block > 0).astype(np.uint8), lo_kji[::-1].astype(int))


def paste(patch: LabelPatch, shape_kji: tuple[int, int, int]) -> np.ndarray:
    """The full ``(K, J, I)`` uint8 array holding ``patch`` (inverse of :func:`label_patch`)."""
    out = np.zeros(shape_kji, dtype=np.uint8)
    lo, hi = patch.lo, patch.hi
    if np.any(lo < 0) or np.any(hi >= np.array(shape_kji[::-1])):
        raise InputError(f"patch {lo.tolist()}..{hi.tolist()} does not fit in {list(shape_kji[::-1])}")
    out[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = patch.array
    return out


def slice_index(image: Image, point_lps: np.ndarray) -> int:
    """The k index of the slice of ``image`` nearest to an LPS point (raises when outside the image)."""
    from lesionseg.geometry import world_to_index

    k = int(np.round(world_to_index(image, np.asarray(point_lps, dtype=np.float64))[0, 2]))
    if not 0 <= k < image.shape[0]:
        raise InputError(f"the current slice (k = {k}) is outside the volume (0..{image.shape[0] - 1})")
    return k


def keep_slice(label: Image, k: int) -> Image:
    """``label`` with every slice but ``k`` set to 0 (same grid)."""
    arr = np.zeros_like(label.array)
    arr[k] = label.array[k]
    return label.with_array(arr)
