"""Slicer geometry (RAS) <-> backend geometry (LPS); pure numpy, no ``slicer`` import.

Slicer keeps every coordinate in RAS (+x right, +y anterior, +z superior); the backend, like DICOM and
SimpleITK, uses LPS. The two differ by the sign of the first two axes, ``diag(-1, -1, 1)``. This module is
the ONLY place where that flip happens; :mod:`LesionSegLib.nodes` reads numbers out of MRML nodes and hands
them here unchanged.

Conventions:

* ``ijk_to_ras``: 4x4 homogeneous matrix mapping a voxel index ``(i, j, k, 1)`` to RAS mm, as
  ``vtkMRMLVolumeNode.GetIJKToRASMatrix`` fills it (columns = RAS direction of i, j, k scaled by spacing;
  last column = RAS position of voxel ``(0, 0, 0)``).
* Arrays are indexed ``[k, j, i]`` as ``slicer.util.arrayFromVolume`` returns them.
* Points are ``(3,)`` or ``(N, 3)`` arrays of mm.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from lesionseg import Box, Image, InputError, LesionSegWarning, RecistLine

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""4x4 homogeneous RAS -> LPS matrix; it is its own inverse."""

_ORTHO_TOL = 1e-4


def ras_to_lps(points: np.ndarray) -> np.ndarray:
    """Flip ``(3,)`` or ``(N, 3)`` RAS mm points to LPS mm (same shape, new array)."""
    pts = np.array(points, dtype=np.float64)
    if pts.shape[-1:] != (3,) or pts.ndim > 2:
        raise InputError(f"expected (3,) or (N, 3) points, got shape {pts.shape}")
    pts[..., :2] *= -1.0
    return pts


lps_to_ras = ras_to_lps
"""LPS -> RAS is the same flip."""


def _matrix4(matrix: np.ndarray, name: str) -> np.ndarray:
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.shape != (4, 4) or not np.all(np.isfinite(mat)):
        raise InputError(f"{name} must be a finite 4x4 matrix, got shape {mat.shape}")
    if not np.allclose(mat[3], (0.0, 0.0, 0.0, 1.0)):
        raise InputError(f"{name} is not an affine matrix (last row {mat[3].tolist()})")
    return mat


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split an IJKToRAS matrix into the backend's ``(spacing, origin, direction)``.

    Returns:
        spacing ``(3,)`` mm along i, j, k; origin ``(3,)`` LPS mm of voxel ``(0, 0, 0)``; direction 3x3 whose
        columns are the unit LPS directions of i, j, k.

    Raises:
        InputError: the matrix is not affine, has a zero-length axis, or its axes are not orthogonal
            (a sheared or non-uniformly scaled parent transform; harden or remove it first).
    """
    lps = RAS_TO_LPS @ _matrix4(ijk_to_ras, "IJKToRAS")
    axes = lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 1e-9):
        raise InputError(f"the volume has a zero voxel size ({spacing.tolist()})")
    direction = axes / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=_ORTHO_TOL):
        raise InputError("the volume's voxel axes are not orthogonal in world space (sheared transform); "
                         "harden or remove its parent transform first")
    return spacing, lps[:3, 3].copy(), direction


def ijk_to_ras_from_image(image: Image) -> np.ndarray:
    """The 4x4 IJKToRAS matrix of a backend image (inverse of :func:`geometry_from_ijk_to_ras`)."""
    return RAS_TO_LPS @ image.index_to_world


def image_from_volume_array(array_kji: np.ndarray, ijk_to_ras: np.ndarray,
                            to_world: Optional[np.ndarray] = None, meta: Optional[dict] = None) -> Image:
    """A backend :class:`Image` from a volume's voxels and geometry.

    Args:
        array_kji: voxels ``(K, J, I)`` as ``slicer.util.arrayFromVolume`` returns them.
        ijk_to_ras: the volume node's own IJKToRAS matrix (node coordinates).
        to_world: 4x4 node-to-world RAS matrix of a linear parent transform (``None``: no transform).
        meta: copied into ``Image.meta``.
    """
    world = _matrix4(ijk_to_ras, "IJKToRAS")
    if to_world is not None:
        world = _matrix4(to_world, "node-to-world transform") @ world
    spacing, origin, direction = geometry_from_ijk_to_ras(world)
    return Image(np.asarray(array_kji), spacing, origin, direction, meta or {})


def roi_corners_ras(centre: np.ndarray, size: np.ndarray, axes: Optional[np.ndarray] = None) -> np.ndarray:
    """The eight ``(8, 3)`` RAS corners of a box ROI.

    Args:
        centre: ``(3,)`` RAS mm.
        size: ``(3,)`` full side lengths in mm along the ROI's own x, y, z axes.
        axes: 3x3, columns = RAS directions of the ROI's x, y, z axes (normalised here); ``None`` = RAS axes.
    """
    centre = np.asarray(centre, dtype=np.float64).reshape(3)
    half = np.asarray(size, dtype=np.float64).reshape(3) / 2.0
    rot = np.eye(3) if axes is None else np.asarray(axes, dtype=np.float64).reshape(3, 3)
    norms = np.linalg.norm(rot, axis=0)
    if np.any(norms <= 1e-9):
        raise InputError("the ROI has a zero-length axis")
    rot = rot / norms
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return centre + (signs * half) @ rot.T


def is_axis_aligned(axes: np.ndarray, tol: float = 1e-3) -> bool:
    """True when every column of ``axes`` is (up to sign and length) a coordinate axis."""
    rot = np.asarray(axes, dtype=np.float64).reshape(3, 3)
    rot = rot / np.linalg.norm(rot, axis=0)
    return bool(np.all(np.abs(np.abs(rot).max(axis=0) - 1.0) <= tol))


def roi_to_box(centre: np.ndarray, size: np.ndarray, axes: Optional[np.ndarray] = None) -> Box:
    """A markups ROI (RAS centre, side lengths, axes) as an LPS :class:`lesionseg.Box`.

    The backend box is axis-aligned in LPS; a rotated ROI becomes the bounding box of its corners and a
    :class:`lesionseg.LesionSegWarning` says so.

    Raises:
        InputError: the ROI has no extent on two or more axes (not placed yet) or non-finite numbers.
    """
    size = np.asarray(size, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(size)) or not np.all(np.isfinite(np.asarray(centre, dtype=np.float64))):
        raise InputError("the ROI position or size is not finite")
    if np.any(size < 0) or np.count_nonzero(size <= 1e-6) >= 2:
        raise InputError(f"the ROI has no extent (size {np.round(size, 3).tolist()} mm); place or resize it first")
    if axes is not None and not is_axis_aligned(axes):
        warnings.warn("the ROI is rotated; its axis-aligned bounding box is used as the prompt",
                      LesionSegWarning, stacklevel=2)
    corners = ras_to_lps(roi_corners_ras(centre, size, axes))
    return Box(corners.min(axis=0), corners.max(axis=0))


def box_to_roi(box: Box) -> tuple[np.ndarray, np.ndarray]:
    """An LPS box as an axis-aligned RAS ROI ``(centre, size)`` (inverse of :func:`roi_to_box`)."""
    return lps_to_ras((box.lo + box.hi) / 2.0), box.hi - box.lo


def line_to_recist(long_ras: np.ndarray, short_ras: Optional[np.ndarray] = None) -> RecistLine:
    """RECIST axes from markups line end points.

    Args:
        long_ras: ``(2, 3)`` RAS mm end points of the long axis.
        short_ras: ``(2, 3)`` RAS mm end points of the short axis, or ``None``.
    """
    long_pts = np.asarray(long_ras, dtype=np.float64)
    if long_pts.shape != (2, 3):
        raise InputError(f"the long axis needs two 3D end points, got shape {long_pts.shape}")
    long_lps = ras_to_lps(long_pts)
    if short_ras is None:
        return RecistLine(long_lps[0], long_lps[1])
    short_pts = np.asarray(short_ras, dtype=np.float64)
    if short_pts.shape != (2, 3):
        raise InputError(f"the short axis needs two 3D end points, got shape {short_pts.shape}")
    short_lps = ras_to_lps(short_pts)
    return RecistLine(long_lps[0], long_lps[1], short_lps[0], short_lps[1])


def roi_for_slice_view(slice_to_ras: np.ndarray, field_of_view: np.ndarray, ijk_to_ras: np.ndarray,
                       slices: int = 3, fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An ROI centred in a slice view, aligned with the volume's voxel axes.

    Args:
        slice_to_ras: the slice node's SliceToRAS 4x4 (translation = RAS centre of the view; third column =
            the slice normal).
        field_of_view: ``(>=2,)`` width and height of the view in mm.
        ijk_to_ras: the volume's IJKToRAS 4x4 (same coordinate frame as ``slice_to_ras``).
        slices: ROI thickness in voxels along the volume axis closest to the slice normal.
        fraction: in-plane side length as a fraction of the smaller field-of-view side (at least 3 voxels).

    Returns:
        ``(centre (3,), size (3,), axes 3x3)`` in RAS; ``axes`` columns are the volume's i, j, k directions,
        made right-handed (k flipped when needed), ready for ``SetAndObserveObjectToNodeMatrix``.
    """
    view = _matrix4(slice_to_ras, "SliceToRAS")
    ijk = _matrix4(ijk_to_ras, "IJKToRAS")
    fov = np.asarray(field_of_view, dtype=np.float64).reshape(-1)
    if fov.size < 2 or np.any(fov[:2] <= 0) or slices < 1 or not 0 < fraction <= 1:
        raise InputError("the slice view has no size, or slices/fraction are out of range")
    spacing = np.linalg.norm(ijk[:3, :3], axis=0)
    axes = ijk[:3, :3] / spacing
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1.0
    normal = view[:3, 2] / np.linalg.norm(view[:3, 2])
    through = int(np.argmax(np.abs(axes.T @ normal)))
    in_plane = fraction * float(min(fov[0], fov[1]))
    size = np.maximum(np.full(3, in_plane), 3.0 * spacing)
    size[through] = slices * spacing[through]
    return view[:3, 3].copy(), size, axes
