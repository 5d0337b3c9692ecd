"""What the "Lesion GrabCut/CRF" effect computes (pure; no ``slicer``): strokes -> points -> refined mask.

The effect paints foreground / background strokes into two helper segments; their voxels become LPS
points (:func:`stroke_points`) and :func:`refine` calls the backend's
:func:`lesionseg.refiners.refine_with_scribbles` (the function behind ``lesionseg refine``) with the
selected segment as the initial mask and the panel's CRF settings (:class:`RefineSettings`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

from lesionseg import Image, InputError

MAX_STROKE_POINTS = 2000
"""Strokes are subsampled to at most this many points (every voxel is not needed; disks overlap)."""


@dataclass(frozen=True)
class RefineSettings:
    """The effect's sliders (defaults: the backend's). Widths in mm; ``bilateral_sintensity`` in grey levels."""

    iterations: int = 5
    stroke_radius_mm: float = 2.0
    band_mm: float = 5.0
    use_crf: bool = True
    crf_iterations: int = 5
    gaussian_sxy_mm: float = 1.0
    gaussian_compat: float = 1.0
    bilateral_sxy_mm: float = 3.0
    bilateral_sintensity: float = 15.0
    bilateral_compat: float = 3.0

    @classmethod
    def names(cls) -> list[str]:
        """Field names, used as the effect's parameter names."""
        return [f.name for f in fields(cls)]


def stroke_points(image: Image, strokes: np.ndarray, limit: int = MAX_STROKE_POINTS) -> Optional[np.ndarray]:
    """``(N, 3)`` LPS mm centres of the non-zero voxels of a ``(K, J, I)`` stroke array on ``image``'s grid
    (evenly subsampled to ``limit``), or None when nothing is painted."""
    from lesionseg.geometry import index_to_world

    arr = np.asarray(strokes)
    if arr.shape != image.shape:
        raise InputError(f"stroke array {arr.shape} is not on the image grid {image.shape}")
    kji = np.argwhere(arr > 0)
    if len(kji) == 0:
        return None
    if len(kji) > limit:
        kji = kji[np.linspace(0, len(kji) - 1, limit).round().astype(int)]
    return index_to_world(image, kji[:, ::-1].astype(np.float64))


def refine(image: Image, mask: np.ndarray, fg_strokes: Optional[np.ndarray], bg_strokes: Optional[np.ndarray],
           settings: RefineSettings = RefineSettings()) -> np.ndarray:
    """Refined ``(K, J, I)`` uint8 0/1 mask from the initial ``mask`` and the stroke arrays (same grid).

    Raises:
        InputError: arrays off the grid, or nothing to refine (empty mask and no foreground strokes).
    """
    from lesionseg import Points
    from lesionseg.refiners import DenseCRFRefiner, refine_with_scribbles

    current = np.asarray(mask) > 0
    if current.shape != image.shape:
        raise InputError(f"mask {current.shape} is not on the image grid {image.shape}")
    fg = stroke_points(image, fg_strokes) if fg_strokes is not None else None
    bg = stroke_points(image, bg_strokes) if bg_strokes is not None else None
    if not current.any() and fg is None:
        raise InputError("the selected segment is empty and no foreground stroke is painted")
    s = settings
    crf = DenseCRFRefiner(s.crf_iterations, s.gaussian_sxy_mm, s.gaussian_compat, s.bilateral_sxy_mm,
                          s.bilateral_sintensity, s.bilateral_compat, seed_radius_mm=s.stroke_radius_mm)
    out = refine_with_scribbles(image, image.with_array(current.astype(np.uint8)),
                                fg=None if fg is None else Points(fg, np.ones(len(fg))),
                                bg=None if bg is None else Points(bg, np.zeros(len(bg))),
                                radius_mm=s.stroke_radius_mm, band_mm=s.band_mm, iterations=s.iterations,
                                crf=crf, use_crf=s.use_crf)
    return (np.asarray(out.array) > 0).astype(np.uint8)
