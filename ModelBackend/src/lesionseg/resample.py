"""Resampling in physical space (SimpleITK) and overlap checks between images of one patient.

Every function keeps the LPS geometry exact: a new grid is described by spacing, origin and direction, and
values are interpolated at the physical positions of its voxel centres (``sitk.Resample``). Used by methods
that work on a fixed grid (S4C's 1.5 mm working grid) and by multi-image inputs (PET/CT, arterial/venous).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .image import Image, as_vector3
from .io import from_sitk, to_sitk

INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


def _interpolator(name: str) -> int:
    if name not in INTERPOLATORS:
        raise InputError(f"interpolator must be one of {sorted(INTERPOLATORS)}, not {name!r}")
    return INTERPOLATORS[name]


def resample_to_grid(image: Image, reference: Image, interpolator: str = "linear",
                     default: float = 0.0) -> Image:
    """``image`` resampled onto the grid of ``reference`` (its array is ignored); outside = ``default``.

    The result keeps ``image``'s dtype (values rounded for integer types) and ``image.meta``.
    """
    ref = sitk.Image([int(s) for s in reference.size_ijk], sitk.sitkUInt8)
    ref.SetSpacing([float(v) for v in reference.spacing])
    ref.SetOrigin([float(v) for v in reference.origin])
    ref.SetDirection([float(v) for v in np.asarray(reference.direction).ravel()])
    src = to_sitk(image.with_array(image.array.astype(np.float32)))
    out = sitk.Resample(src, ref, sitk.Transform(), _interpolator(interpolator), float(default), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(out)
    if np.issubdtype(image.array.dtype, np.integer):
        info = np.iinfo(image.array.dtype)
        arr = np.clip(np.rint(arr), info.min, info.max)
    result = from_sitk(out).with_array(arr.astype(image.array.dtype), **image.meta)
    return result


def resample_to_spacing(image: Image, spacing: float | tuple[float, float, float], interpolator: str = "linear",
                        default: float = 0.0) -> Image:
    """``image`` on a grid of the same origin and direction with voxel size ``spacing`` (mm, i/j/k).

    The new grid covers the old extent: ``ceil(size * old_spacing / new_spacing)`` voxels per axis.
    """
    new = as_vector3(np.broadcast_to(np.asarray(spacing, float), (3,)) if np.ndim(spacing) == 0 else spacing,
                     "spacing")
    if np.any(new <= 0):
        raise InputError(f"spacing must be positive, got {new.tolist()}")
    size = np.maximum(np.ceil(image.size_ijk * np.asarray(image.spacing) / new - 1e-6), 1).astype(int)
    reference = Image(np.zeros(tuple(size[::-1]), np.uint8), tuple(new), image.origin, image.direction)
    return resample_to_grid(image, reference, interpolator, default)


def world_bounds(image: Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounding box (lo, hi) of the image's voxel extent (centres +- half a voxel), mm."""
    size = image.size_ijk
    corners = np.array([[a, b, c] for a in (-0.5, size[0] - 0.5) for b in (-0.5, size[1] - 0.5)
                        for c in (-0.5, size[2] - 0.5)])
    world = corners @ (np.asarray(image.direction) * np.asarray(image.spacing)).T + np.asarray(image.origin)
    return world.min(axis=0), world.max(axis=0)


def overlap_fraction(a: Image, b: Image) -> float:
    """Volume of the intersection of the two LPS bounding boxes over the smaller box's volume (0..1)."""
    lo_a, hi_a = world_bounds(a)
    lo_b, hi_b = world_bounds(b)
    inter = np.prod(np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None))
    smaller = min(np.prod(hi_a - lo_a), np.prod(hi_b - lo_b))
    return float(inter / smaller) if smaller > 0 else 0.0


def check_overlap(a: Image, b: Image, names: tuple[str, str] = ("first image", "second image"),
                  minimum: float = 0.1) -> float:
    """Raise :class:`InputError` when the two images' physical extents overlap by less than ``minimum``
    (fraction of the smaller one); return the overlap fraction otherwise."""
    frac = overlap_fraction(a, b)
    if frac < minimum:
        lo_a, hi_a = world_bounds(a)
        lo_b, hi_b = world_bounds(b)
        raise InputError(
            f"the {names[0]} and the {names[1]} do not overlap in physical space ({100 * frac:.0f} % of the "
            f"smaller one; LPS mm {np.round(lo_a, 1).tolist()}..{np.round(hi_a, 1).tolist()} vs "
            f"{np.round(lo_b, 1).tolist()}..{np.round(hi_b, 1).tolist()}); are they scans of the same patient "
            "and session?")
    return frac
