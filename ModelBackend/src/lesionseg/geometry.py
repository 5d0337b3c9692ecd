"""World <-> voxel mapping for images and prompts (the only place that does it).

Voxel coordinates here are continuous ``(i, j, k)`` indices (column, row, slice), voxel centres at
integers. World coordinates are LPS millimetres. Prompts are mapped together with the image they refer
to; nothing in this module imports torch.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import InputError, LesionSegWarning
from .image import Image, as_vector3, fmt_vec
from .prompts import Box, RecistLine


def world_to_index(image: Image, points_lps: np.ndarray) -> np.ndarray:
    """Map ``(N, 3)`` LPS mm points to continuous ``(N, 3)`` ``(i, j, k)`` indices of ``image``."""
    pts = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    inv = np.linalg.inv(image.direction * image.spacing[np.newaxis, :])
    return (pts - image.origin) @ inv.T


def index_to_world(image: Image, ijk: np.ndarray) -> np.ndarray:
    """Map ``(N, 3)`` continuous ``(i, j, k)`` indices to ``(N, 3)`` LPS mm points."""
    idx = np.asarray(ijk, dtype=np.float64).reshape(-1, 3)
    return idx @ (image.direction * image.spacing[np.newaxis, :]).T + image.origin


@dataclass(frozen=True)
class IndexBox:
    """Inclusive voxel range ``lo..hi`` in ``(i, j, k)`` order, inside the image."""

    lo: np.ndarray
    hi: np.ndarray

    @property
    def size(self) -> np.ndarray:
        return self.hi - self.lo + 1

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Numpy slices for an array indexed ``[k, j, i]``."""
        return (slice(self.lo[2], self.hi[2] + 1), slice(self.lo[1], self.hi[1] + 1),
                slice(self.lo[0], self.hi[0] + 1))


def box_to_index(image: Image, box: Box) -> IndexBox:
    """Voxels of ``image`` whose centres lie in ``box`` (the box's bounding box in voxel space).

    Raises :class:`InputError` when the box has zero size or lies entirely outside the image; warns
    (:class:`LesionSegWarning`) and clips when it lies partly outside. A box thinner than one voxel on an
    axis selects the nearest voxel on that axis, so a box drawn on one slice selects that slice.
    """
    extent = box.hi - box.lo
    if np.count_nonzero(extent <= 1e-6) >= 2:
        raise InputError(f"the box has zero size (extent {fmt_vec(extent, 3)} mm along x, y, z)")
    idx = world_to_index(image, box.corners)
    lo_f, hi_f = idx.min(axis=0), idx.max(axis=0)
    lo = np.ceil(lo_f - 1e-6).astype(int)
    hi = np.floor(hi_f + 1e-6).astype(int)
    thin = hi < lo  # thinner than a voxel between centres: take the nearest voxel
    centre = np.round((lo_f + hi_f) / 2).astype(int)
    lo = np.where(thin, centre, lo)
    hi = np.where(thin, centre, hi)
    size = image.size_ijk
    if np.any(hi < 0) or np.any(lo > size - 1):
        raise InputError(
            f"the box lies entirely outside the image (voxel range {lo.tolist()}..{hi.tolist()}, "
            f"image size {size.tolist()})"
        )
    clo, chi = np.clip(lo, 0, size - 1), np.clip(hi, 0, size - 1)
    if np.any(clo != lo) or np.any(chi != hi):
        warnings.warn(
            f"the box lies partly outside the image; clipped to voxels {clo.tolist()}..{chi.tolist()}",
            LesionSegWarning, stacklevel=2,
        )
    return IndexBox(clo, chi)


def index_box_to_world(image: Image, lo_ijk: np.ndarray, hi_ijk: np.ndarray) -> Box:
    """The LPS box covering voxels ``lo..hi`` (inclusive ``(i, j, k)`` indices, ``lo <= hi``): the
    axis-aligned bounding box of the voxels themselves, i.e. of the index range ``lo - 0.5 .. hi + 0.5``.

    So one voxel (``lo == hi``) is a box of one voxel's size, not a point, and on an axis-aligned grid
    :func:`box_to_index` of the result gives back exactly ``lo..hi`` (voxel centres lie half a voxel
    inside the box's faces). On an oblique grid the LPS box is larger than the voxels and selects at
    least them.

    Raises:
        InputError: ``lo`` or ``hi`` not three finite numbers, or ``hi < lo`` on some axis.
    """
    lo = as_vector3(lo_ijk, "the box's first voxel index (i, j, k)")
    hi = as_vector3(hi_ijk, "the box's last voxel index (i, j, k)")
    if np.any(hi < lo):
        raise InputError(f"the voxel box {fmt_vec(lo)}..{fmt_vec(hi)} (i, j, k) ends before it starts")
    lo, hi = lo - 0.5, hi + 0.5
    corners = index_to_world(image, np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                                              for c in (lo[2], hi[2])]))
    return Box(corners.min(axis=0), corners.max(axis=0))


@dataclass(frozen=True)
class RecistIndex:
    """A RECIST prompt in voxel space on one axial slice ``k``: end points as ``(i, j)`` pairs."""

    k: int
    long: np.ndarray
    short: np.ndarray | None


def recist_to_index(image: Image, line: RecistLine) -> RecistIndex:
    """Project a RECIST prompt onto one axial slice of ``image``.

    Raises when an end point lies outside the image or the axes lie on different slices; warns when the
    line is not on an axial slice (it is projected) or the short axis does not cross the long one.
    """
    pts = [line.long_start, line.long_end]
    if line.short_start is not None:
        pts += [line.short_start, line.short_end]
    idx = world_to_index(image, np.array(pts))
    size = image.size_ijk
    if np.any(idx < -0.5) or np.any(idx > size - 0.5):
        raise InputError("a RECIST end point lies outside the image")
    long_k = idx[:2, 2]
    if abs(long_k[0] - long_k[1]) > 0.5:
        warnings.warn("the long axis is not on an axial slice; it was projected onto its middle slice",
                      LesionSegWarning, stacklevel=2)
    k = int(np.round(long_k.mean()))
    short = None
    if line.short_start is not None:
        if np.any(np.abs(idx[2:, 2] - k) > 0.5 + abs(long_k[0] - long_k[1]) / 2):
            raise InputError("the long and short axes lie on different slices")
        short = idx[2:, :2]
        if not _segments_cross(idx[:2, :2], short):
            warnings.warn("the short axis does not cross the long axis", LesionSegWarning, stacklevel=2)
    return RecistIndex(k, idx[:2, :2], short)


def _segments_cross(a: np.ndarray, b: np.ndarray) -> bool:
    """True when 2D segments ``a`` and ``b`` (each ``(2, 2)``) intersect."""
    def orient(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))
    o1, o2 = orient(a[0], a[1], b[0]), orient(a[0], a[1], b[1])
    o3, o4 = orient(b[0], b[1], a[0]), orient(b[0], b[1], a[1])
    return bool(o1 != o2 and o3 != o4)
