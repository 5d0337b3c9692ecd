"""The TotalSegmentator example CT (Apache-2.0; ``../shared/data/totalseg-example-ct``) with its label on the
full CT's grid.

The folder holds ``example_ct.nii.gz`` (112 slices at 3 mm), ``example_ct_sm.nii.gz`` (a run of 30 of those
slices, 82-111) and ``example_seg.nii.gz``, the 117-class label of **the small CT** (a TotalSegmentator model's
output, not an expert's). Both CT headers carry the same origin, so the run's start is not in the files; it is
found by matching the slices (:func:`place_label`). No torch here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..image import Image
from ..io import read_image

CT = "example_ct.nii.gz"
SMALL_CT = "example_ct_sm.nii.gz"
SEG = "example_seg.nii.gz"
PANCREAS = 7
SMALL_BOWEL = 18


def place_label(ct: Image, small: Image, seg: Image) -> Image:
    """``seg`` (the label of ``small``, on its grid) placed onto ``ct``'s grid, zeros outside.

    ``small`` must be a run of consecutive slices (the last array axis pair ``(J, I)`` equal) of ``ct``; its
    start ``k`` is the one with the least mean absolute difference ``|ct[k:k + n] - small|`` (HU) over the
    possible starts.

    Returns:
        a uint8 (the label's own integer type when it has one) ``(K, J, I)`` label image with ``ct``'s geometry.

    Raises:
        InputError: ``seg`` not on ``small``'s array shape, the slices of ``small`` differing in size from
            ``ct``'s, or ``small`` holding more slices than ``ct``.
    """
    a, b = ct.array, small.array
    if seg.shape != small.shape:
        raise InputError(f"the label ({seg.shape}) is not on the small CT's grid ({small.shape})")
    if a.shape[1:] != b.shape[1:] or len(b) > len(a):
        raise InputError(f"the small CT {b.shape} is not a run of slices of the CT {a.shape} (K, J, I)")
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    errors = [float(np.abs(a32[k:k + len(b)] - b32).mean()) for k in range(len(a) - len(b) + 1)]
    start = int(np.argmin(errors))
    dtype = seg.array.dtype if np.issubdtype(seg.array.dtype, np.integer) else np.dtype(np.uint8)
    out = np.zeros(a.shape, dtype)
    out[start:start + len(b)] = seg.array.astype(dtype)
    return ct.with_array(out)


def read_example(folder: Path) -> tuple[Image, Image]:
    """``(CT, label)``: ``example_ct.nii.gz`` (HU) and the 117-class ``example_seg.nii.gz`` placed on its grid
    (:func:`place_label`; :data:`PANCREAS` = 7, :data:`SMALL_BOWEL` = 18; 0 on the slices the label does not
    cover).

    Raises:
        InputError: a file missing from ``folder`` (one message naming them), or see :func:`place_label`.
    """
    folder = Path(folder)
    missing = [name for name in (CT, SMALL_CT, SEG) if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder} does not hold {', '.join(missing)} (the TotalSegmentator example CT, "
                         f"../shared/data/totalseg-example-ct)")
    ct = read_image(folder / CT)
    return ct, place_label(ct, read_image(folder / SMALL_CT), read_image(folder / SEG))
