"""What the "Lesion GrabCut/CRF" Segment Editor effect computes (pure; no ``slicer``): strokes -> points -> mask.

The effect paints foreground / background strokes into two helper segments; their voxels become LPS
points (:func:`stroke_points`) and :func:`refine` calls the backend's
:func:`lesionseg.refiners.refine_with_scribbles` (the function behind ``lesionseg refine``) with the
selected segment as the initial mask and the panel's CRF settings (:class:`RefineSettings`).

This module lives in ``LesionSegLib`` and not beside the effect: Slicer loads the effect file
(``SegmentEditorLesionRefineLib/SegmentEditorEffect.py``) as a module named after its folder, so that folder is
not importable as a package from inside the effect. Nothing here imports the backend at module level: the
effect reads :class:`RefineSettings` to build its options frame before the backend may be installed.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

import numpy as np

MAX_STROKE_POINTS = 2000
"""Strokes are subsampled to at most this many points (every voxel is not needed; disks overlap)."""

SLIDERS = (
    ("iterations", "GrabCut iterations", 1, 20, 1, "GrabCut iterations per slice"),
    ("stroke_radius_mm", "Stroke radius (mm)", 0.5, 10, 0.5, "radius of the disks painted at stroke voxels"),
    ("band_mm", "Background band (mm)", 1, 30, 1, "probable-background band outside the mask"),
    ("crf_iterations", "CRF iterations", 1, 20, 1, "DenseCRF mean-field iterations"),
    ("gaussian_sxy_mm", "CRF smoothness width (mm)", 0.5, 20, 0.5, "Gaussian kernel width"),
    ("gaussian_compat", "CRF smoothness weight", 0, 20, 0.5, "Gaussian kernel weight"),
    ("bilateral_sxy_mm", "CRF appearance width (mm)", 1, 50, 1, "bilateral kernel spatial width"),
    ("bilateral_sintensity", "CRF intensity width", 1, 100, 1, "bilateral kernel intensity width (grey levels)"),
    ("bilateral_compat", "CRF appearance weight", 0, 20, 0.5, "bilateral kernel weight"),
)
"""The effect's sliders: ``(setting name, label, minimum, maximum, step, tooltip)`` (every setting but ``use_crf``)."""

NO_CRF_NOTE = ("DenseCRF (pydensecrf2) is not installed, so only GrabCut ran; see the LesionSeg README for "
               "the platforms pydensecrf2 installs on")
"""Why a refinement asked for DenseCRF ran without it."""


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

    @classmethod
    def from_parameters(cls, value: Callable[[str], float]) -> "RefineSettings":
        """The settings stored in the effect's parameters (``value(name)``: a number; iterations are rounded,
        ``use_crf`` is true when non-zero)."""
        found: dict[str, Any] = {}
        for f in fields(cls):
            number = float(value(f.name))
            found[f.name] = bool(number) if f.name == "use_crf" else (
                int(round(number)) if f.name.endswith("iterations") else number)
        return cls(**found)


def stroke_points(image: Any, strokes: np.ndarray, limit: int = MAX_STROKE_POINTS) -> Optional[np.ndarray]:
    """``(N, 3)`` LPS mm centres of the non-zero voxels of a ``(K, J, I)`` stroke array on ``image``'s grid
    (a ``lesionseg.Image``; evenly subsampled to ``limit``), or None when nothing is painted."""
    from lesionseg import InputError
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


def refine(image: Any, mask: np.ndarray, fg_strokes: Optional[np.ndarray], bg_strokes: Optional[np.ndarray],
           settings: RefineSettings = RefineSettings()) -> np.ndarray:
    """Refined ``(K, J, I)`` uint8 0/1 mask from the initial ``mask`` and the stroke arrays (same grid as the
    ``lesionseg.Image`` ``image``).

    Raises:
        lesionseg.InputError: arrays off the grid, or nothing to refine (empty mask and no foreground strokes).
    """
    from lesionseg import InputError, Points
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


@dataclass(frozen=True)
class RefineResult:
    """What one Preview computed: the ``(K, J, I)`` uint8 mask and notes for the user (e.g. no DenseCRF)."""

    mask: np.ndarray
    notes: tuple[str, ...] = ()


def refine_job(report: Callable[[str], None], image: Any, mask: np.ndarray, fg_strokes: Optional[np.ndarray],
               bg_strokes: Optional[np.ndarray], settings: RefineSettings, crf_available: bool) -> RefineResult:
    """:func:`refine` as a worker task (:mod:`LesionSegLib.interactive`): DenseCRF is skipped, with a note, when
    it was asked for but ``crf_available`` is false (pydensecrf2 could not be installed on this platform). With "Run
    on" a server, the refinement runs there (:func:`LesionSegLib.remote.refine_on_server`)."""
    from . import remote

    target = remote.current()
    if target.server:
        report(f"GrabCut{' + DenseCRF' if settings.use_crf else ''} on {target.url}...")
        fg = stroke_points(image, fg_strokes) if fg_strokes is not None else None
        bg = stroke_points(image, bg_strokes) if bg_strokes is not None else None
        return RefineResult(*remote.refine_on_server(image, mask, fg, bg, settings, target))
    notes: tuple[str, ...] = ()
    if settings.use_crf and not crf_available:
        settings = RefineSettings(**{**vars(settings), "use_crf": False})
        notes = (NO_CRF_NOTE,)
    report("GrabCut + DenseCRF..." if settings.use_crf else "GrabCut...")
    return RefineResult(refine(image, mask, fg_strokes, bg_strokes, settings), notes)
