"""From a RECIST prompt to a square lesion crop and a GrabCut initial mask (Cai et al., MICCAI 2018).

Everything the co-segmentation method does happens in one *crop frame*: a square, axis-aligned window
of ``size x size`` pixels centred on the middle of the long axis, ``context`` times the long-axis
length wide (in mm, at least ``min_side_mm``), sampled bilinearly from the axial slice. The window is
square in millimetres, so crop pixels are square even when the slice's pixels are not ("pad to
square, resize to 128 x 128" of the paper, done in one resampling). :class:`CropFrame` holds the
affine map between crop pixels ``(u, v)`` and slice pixels ``(i, j)`` and applies it both ways with
``cv2.warpAffine``.

GrabCut seeding (:func:`recist_classes`), in crop pixels:

- sure foreground: the two axes drawn with a thickness of ``fg_fraction`` of the short axis (at least
  1 pixel), their end points pulled in by ``end_trim`` of their length so the stroke stays inside;
- probable foreground: the ellipse spanned by the axes (long axis as major axis, short-axis length as
  minor axis, centred on the long axis' middle) together with the quadrilateral of the four end points;
- probable background: the rest of a rectangle oriented along the long axis, enlarged by ``margin``
  (fraction of each axis length) on every side;
- sure background: everything else.

With only a long axis the short axis is taken as ``assumed_ratio`` of it for the ellipse, and the
rectangle's half-width becomes half the long axis (a circle's box): the box is derived from the long axis.

Also here, because training, evaluation and the segmenter all need them without importing one another:
:func:`slice_axes` (RECIST axes measured on a mask slice) and :func:`network_input` (a crop's two HU windows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...geometry import RecistIndex, world_to_index
from ...image import Image
from ...metrics import recist_axes
from ...refiners import grabcut_slice, window_to_uint8

CROP_SIZE = 128
CONTEXT = 2.0
MIN_SIDE_MM = 12.0
LUNG_WINDOW_HU = (-1000.0, 400.0)
SOFT_TISSUE_WINDOW_HU = (-175.0, 275.0)
"""The network's two input channels: these HU windows of the crop, each scaled to 0..1 (the soft-tissue window
is also the one the DeepLesion sub-volumes were stored in)."""


@dataclass(frozen=True)
class CropFrame:
    """Affine map between a ``(size, size)`` crop and an axial slice.

    ``matrix`` is 2x3 and maps crop pixel ``(u, v)`` (column, row) to slice pixel ``(i, j)``;
    ``pixel_mm`` is the crop's (square) pixel size in mm; ``slice_shape`` is the slice's ``(J, I)``.
    """

    matrix: np.ndarray
    pixel_mm: float
    size: int
    slice_shape: tuple[int, int]

    def to_crop(self, ij: np.ndarray) -> np.ndarray:
        """``(N, 2)`` slice pixels ``(i, j)`` -> ``(N, 2)`` crop pixels ``(u, v)``."""
        full = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        pts = np.c_[np.asarray(ij, float).reshape(-1, 2), np.ones(len(np.asarray(ij).reshape(-1, 2)))]
        return (pts @ np.linalg.inv(full).T)[:, :2]

    def sample(self, slices: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Resample ``(C, J, I)`` (or ``(J, I)``) slice data into ``(C, size, size)`` float32 crop data.

        Pixels outside the slice take the nearest edge value (``BORDER_REPLICATE``).
        """
        arr = np.asarray(slices, np.float32)
        flat = arr[np.newaxis] if arr.ndim == 2 else arr
        out = [cv2.warpAffine(ch, self.matrix, (self.size, self.size), flags=interpolation | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE) for ch in flat]
        return np.stack(out)

    def paste(self, crop: np.ndarray) -> np.ndarray:
        """Map a ``(size, size)`` float crop map back onto the slice: ``(J, I)`` float32, 0 outside the crop."""
        rows, cols = self.slice_shape
        return cv2.warpAffine(np.asarray(crop, np.float32), self.matrix, (cols, rows), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def crop_frame(recist: RecistIndex, spacing: np.ndarray, slice_shape: tuple[int, int], size: int = CROP_SIZE,
               context: float = CONTEXT, min_side_mm: float = MIN_SIDE_MM) -> CropFrame:
    """The crop frame of a RECIST prompt.

    Args:
        recist: axes in slice pixels (from :func:`lesionseg.geometry.recist_to_index`).
        spacing: image spacing ``(i, j, k)`` mm (only ``i`` and ``j`` are used).
        slice_shape: ``(J, I)`` of the slice.
        size: crop size in pixels. context: crop side / long-axis length. min_side_mm: smallest side.
    """
    sx, sy = float(spacing[0]), float(spacing[1])
    long_mm = float(np.linalg.norm((recist.long[1] - recist.long[0]) * [sx, sy]))
    side = max(context * long_mm, min_side_mm)
    pixel = side / size
    centre = recist.long.mean(axis=0)
    half = (size - 1) / 2.0
    matrix = np.array([[pixel / sx, 0.0, centre[0] - half * pixel / sx],
                       [0.0, pixel / sy, centre[1] - half * pixel / sy]])
    return CropFrame(matrix, pixel, size, (int(slice_shape[0]), int(slice_shape[1])))


def recist_classes(size: int, long_uv: np.ndarray, short_uv: Optional[np.ndarray], fg_fraction: float = 0.15,
                   end_trim: float = 0.1, margin: float = 0.3, assumed_ratio: float = 0.6) -> np.ndarray:
    """``(size, size)`` uint8 GrabCut classes (``cv2.GC_*``) from the axes in crop pixels ``(u, v)``.

    Args:
        long_uv: ``(2, 2)`` long-axis end points. short_uv: ``(2, 2)`` short-axis end points or None.
        fg_fraction: stroke thickness as a fraction of the short axis. end_trim: fraction of each axis
            removed at both ends before drawing the sure-foreground stroke. margin: rectangle enlargement
            as a fraction of each axis length. assumed_ratio: short/long ratio used without a short axis.
    """
    long_uv = np.asarray(long_uv, float)
    vec = long_uv[1] - long_uv[0]
    length = float(np.linalg.norm(vec))
    if length < 1e-6:
        raise InputError("the RECIST long axis has zero length on the slice")
    along = vec / length
    across = np.array([-along[1], along[0]])
    centre = long_uv.mean(axis=0)
    if short_uv is not None:
        short_uv = np.asarray(short_uv, float)
        short_len = float(np.linalg.norm(short_uv[1] - short_uv[0]))
        half_width = max(float(np.abs((short_uv - centre) @ across).max()), short_len / 2)
    else:
        short_len = assumed_ratio * length
        half_width = length / 2
    classes = np.full((size, size), cv2.GC_BGD, np.uint8)
    half_long = length / 2 * (1 + margin)
    half_wide = half_width + margin * max(short_len, 0.5 * length)
    rect = np.array([centre + a * half_long * along + b * half_wide * across
                     for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    cv2.fillConvexPoly(classes, np.round(rect).astype(np.int32), int(cv2.GC_PR_BGD))
    angle = float(np.degrees(np.arctan2(along[1], along[0])))
    ellipse = np.zeros_like(classes)
    cv2.ellipse(ellipse, (int(round(centre[0])), int(round(centre[1]))),
                (max(int(round(length / 2)), 1), max(int(round(short_len / 2)), 1)), angle, 0, 360, 1, -1)
    if short_uv is not None:
        quad = np.array([long_uv[0], short_uv[0], long_uv[1], short_uv[1]])
        hull = cv2.convexHull(np.round(quad).astype(np.int32))
        cv2.fillConvexPoly(ellipse, hull, 1)
    classes[ellipse > 0] = cv2.GC_PR_FGD
    thickness = max(1, int(round(fg_fraction * short_len)))
    for axis in (long_uv, short_uv):
        if axis is None:
            continue
        a, b = axis[0] + end_trim * (axis[1] - axis[0]), axis[1] - end_trim * (axis[1] - axis[0])
        cv2.line(classes, tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b)),
                 int(cv2.GC_FGD), thickness)
    return classes


def grabcut_from_recist(crop_hu: np.ndarray, long_uv: np.ndarray, short_uv: Optional[np.ndarray],
                        iterations: int = 5, window: Optional[tuple[float, float]] = None) -> np.ndarray:
    """GrabCut initial mask in the crop frame.

    Args:
        crop_hu: ``(3, size, size)`` crop of slices ``k-1, k, k+1`` (image units, HU for CT); the three
            slices become GrabCut's colour channels as in :class:`lesionseg.refiners.GrabCutRefiner`.
        long_uv, short_uv: axes in crop pixels (see :func:`recist_classes`).
        iterations: GrabCut iterations. window: intensity window; default 1st-99th percentile of the crop.

    Returns:
        ``(size, size)`` bool mask: GrabCut's foreground, restricted to the connected component that
        touches the sure-foreground strokes, holes filled. Falls back to the strokes if GrabCut empties it.
        OpenCV's global RNG (GrabCut's k-means start) is reseeded first, so the mask does not depend on
        earlier calls.
    """
    crop = np.asarray(crop_hu)
    if crop.ndim != 3 or crop.shape[0] != 3 or crop.shape[1] != crop.shape[2]:
        raise InputError(f"crop_hu must be (3, size, size), got {crop.shape}")
    classes = recist_classes(crop.shape[1], long_uv, short_uv)
    colour = np.moveaxis(window_to_uint8(crop, window), 0, -1)
    cv2.setRNGSeed(0)
    fg = grabcut_slice(colour, classes, iterations)
    sure = classes == cv2.GC_FGD
    components, _ = ndimage.label(fg)
    keep = np.unique(components[sure & fg])
    fg = np.isin(components, keep[keep > 0])
    fg = ndimage.binary_fill_holes(fg | sure)
    return fg


def slice_axes(mask: Image, k: int) -> Optional[tuple[np.ndarray, Optional[np.ndarray]]]:
    """RECIST axes of slice ``k`` of a ``(K, J, I)`` label image, measured by
    :func:`lesionseg.metrics.recist_axes` (longest in-plane diameter, longest perpendicular chord):
    ``(long, short)``, each ``(2, 2)`` slice pixels ``(i, j)`` (``short`` None for a zero-length chord).
    Returns None when the slice is empty."""
    size = mask.size_ijk
    plane = mask.crop((0, 0, k), (size[0] - 1, size[1] - 1, k))
    if not np.any(plane.array):
        return None
    axes = recist_axes(plane)
    long_ij = world_to_index(mask, axes.long_endpoints_lps)[:, :2]
    short_ij = world_to_index(mask, axes.short_endpoints_lps)[:, :2]
    return long_ij, (short_ij if axes.short_mm > 0 else None)


def network_input(crop_hu: np.ndarray) -> np.ndarray:
    """``(2, S, S)`` float32 network input from a ``(S, S)`` (or ``(3, S, S)``: the middle is used) HU crop:
    :data:`LUNG_WINDOW_HU` and :data:`SOFT_TISSUE_WINDOW_HU`, each scaled to 0..1."""
    centre = crop_hu[1] if crop_hu.ndim == 3 else crop_hu
    channels = [np.clip((centre - lo) / (hi - lo), 0.0, 1.0) for lo, hi in (LUNG_WINDOW_HU, SOFT_TISSUE_WINDOW_HU)]
    return np.stack(channels).astype(np.float32)
