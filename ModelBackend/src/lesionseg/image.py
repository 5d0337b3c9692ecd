"""The one image type of the backend: voxels plus the geometry that places them in LPS space.

``Image.array`` is indexed ``[k, j, i]`` (slice, row, column), the numpy order of SimpleITK and of
Slicer's ``arrayFromVolume``. ``spacing`` and ``origin`` are given in ``(i, j, k)`` order, in millimetres,
and ``direction`` is the 3x3 matrix whose *columns* are the physical (LPS) directions of the i, j and k
axes. A voxel index ``(i, j, k)`` therefore sits at ``origin + direction @ (spacing * (i, j, k))``.
A 2D image is a 3D image with one slice. This module imports neither torch nor SimpleITK.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from .errors import InputError


def fmt_num(value: Any, digits: int = 4) -> str:
    """One number as plain text for a message: ``12.5``, ``3``, ``-0.25``, ``nan`` (numpy scalars too,
    never ``np.float64(12.5)``), rounded to ``digits`` decimals; anything else as its ``repr``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not np.isfinite(number):
            return str(number)
        text = np.format_float_positional(round(number, digits), trim="-")
        return "0" if text == "-0" else text
    return repr(value)


def fmt_vec(values: Any, digits: int = 4) -> str:
    """Numbers as a plain tuple for a message, e.g. ``(0, 12.5, 3)`` (see :func:`fmt_num`); a value that
    is not a sequence of numbers is shown as its ``repr`` (a numpy array as its list)."""
    try:
        items = np.asarray(values).tolist()
    except Exception:  # noqa: BLE001 - any object: show it as it is
        return repr(values)
    if not isinstance(items, list):
        return fmt_num(items, digits)
    if any(isinstance(v, list) for v in items):
        return "(" + "; ".join(fmt_vec(v, digits)[1:-1] for v in items) + ")"
    return "(" + ", ".join(fmt_num(v, digits) for v in items) + ")"


def as_vector3(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 3-vector; :class:`InputError` naming ``name`` unless three finite numbers."""
    try:
        vec = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be three finite numbers, got {value!r}") from None
    if vec.shape != (3,) or not np.all(np.isfinite(vec)):
        raise InputError(f"{name} must be three finite numbers, got {fmt_vec(value)}")
    return vec


@dataclass(frozen=True, eq=False)
class Image:
    """Voxel array with its physical geometry.

    Args:
        array: ``(K, J, I)`` array; a ``(J, I)`` array is promoted to one slice.
        spacing: voxel size along i, j, k in mm (all > 0).
        origin: LPS position in mm of voxel (0, 0, 0).
        direction: 3x3 matrix, columns are the unit LPS directions of the i, j, k axes.
        meta: free-form metadata (e.g. ``{"units": "SUV"}``); copied, never interpreted here.
    """

    array: np.ndarray
    spacing: np.ndarray = field(default_factory=lambda: np.ones(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim == 2:
            arr = arr[np.newaxis]
        if arr.ndim != 3:
            raise InputError(
                f"expected a 2D or 3D scalar image, got an array of shape {arr.shape} "
                "(4D and vector images are not supported; pick one volume or component first)"
            )
        if arr.size == 0:
            raise InputError(f"the image is empty (shape {arr.shape})")
        spacing = as_vector3(self.spacing, "spacing")
        if np.any(spacing <= 0):
            raise InputError(f"spacing must be positive, got {fmt_vec(spacing)} mm")
        direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
            raise InputError("direction must be an invertible 3x3 matrix")
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", as_vector3(self.origin, "origin"))
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(K, J, I)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def size_ijk(self) -> np.ndarray:
        """Number of voxels along i, j, k."""
        return np.array(self.array.shape[::-1])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.spacing) / 1000.0)

    @property
    def index_to_world(self) -> np.ndarray:
        """4x4 homogeneous matrix mapping ``(i, j, k, 1)`` to LPS mm."""
        mat = np.eye(4)
        mat[:3, :3] = self.direction * self.spacing[np.newaxis, :]
        mat[:3, 3] = self.origin
        return mat

    def with_array(self, array: np.ndarray, **meta: Any) -> "Image":
        """A new image on the same grid holding ``array`` (same ``(K, J, I)`` shape)."""
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[np.newaxis]
        if array.shape != self.array.shape:
            raise InputError(f"array shape {array.shape} does not match the grid {self.array.shape}")
        return Image(array, self.spacing, self.origin, self.direction, {**self.meta, **meta})

    def same_grid(self, other: "Image", tol: float = 1e-4) -> bool:
        """True when ``other`` has the same shape, spacing, origin and direction (within ``tol``)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def crop(self, lo_ijk: Any, hi_ijk: Any) -> "Image":
        """Sub-image of voxels ``lo..hi`` inclusive (i, j, k order), geometry kept exact."""
        lo = np.asarray(lo_ijk, dtype=int)
        hi = np.asarray(hi_ijk, dtype=int)
        if np.any(lo < 0) or np.any(hi >= self.size_ijk) or np.any(hi < lo):
            raise InputError(f"crop {fmt_vec(lo)}..{fmt_vec(hi)} (i, j, k) is not inside the image of "
                             f"{fmt_vec(self.size_ijk)} voxels")
        sub = self.array[lo[2] : hi[2] + 1, lo[1] : hi[1] + 1, lo[0] : hi[0] + 1]
        origin = self.origin + self.direction @ (self.spacing * lo)
        return Image(sub.copy(), self.spacing, origin, self.direction, self.meta)

    def check_finite(self) -> None:
        """Raise :class:`InputError` when the image holds NaN or infinite voxels."""
        if np.issubdtype(self.array.dtype, np.floating) and not np.all(np.isfinite(self.array)):
            bad = int(np.count_nonzero(~np.isfinite(self.array)))
            raise InputError(f"the image holds {bad} NaN or infinite voxel(s); fix or mask them first")

    def __repr__(self) -> str:
        return (
            f"Image(shape={self.shape}, dtype={self.array.dtype}, spacing={np.round(self.spacing, 4).tolist()}, "
            f"origin={np.round(self.origin, 3).tolist()})"
        )


def type_name(value: Any) -> str:
    """The type of ``value`` as a user reads it: ``numpy.ndarray``, ``str``, ``SimpleITK.Image``."""
    kind = type(value)
    module = kind.__module__.split(".")[0]
    return kind.__name__ if module == "builtins" else f"{module}.{kind.__name__}"


def require_image(value: Any, what: str) -> Image:
    """``value`` when it is an :class:`Image`; else :class:`InputError` saying what ``what`` (e.g.
    ``"set_image"``, ``"write_image"``) expects and how to get one from a path or an array."""
    if isinstance(value, Image):
        return value
    got = type_name(value)
    if isinstance(value, (str, PurePath)):
        got += f" {str(value)!r}"
    elif isinstance(value, np.ndarray):
        got += f" of shape {fmt_vec(value.shape)}"
    raise InputError(f"{what} expects a lesionseg.Image (read one with lesionseg.read_image(path), or wrap an array: "
                     f"lesionseg.Image(array, spacing, origin, direction)); got {got}")


def describe_grid(image: Image) -> str:
    """``shape (K, J, I) (12, 24, 28), spacing (1.5, 1.5, 2) mm, origin (-20, 10, -300) mm`` (and the
    direction when it is not the identity), for messages."""
    text = (f"shape (K, J, I) {fmt_vec(image.shape)}, spacing {fmt_vec(image.spacing)} mm, "
            f"origin {fmt_vec(image.origin)} mm")
    if not np.allclose(image.direction, np.eye(3)):
        text += f", direction {fmt_vec(image.direction)}"
    return text


def grid_mismatch(image: Image, reference: Image, tol: float = 1e-4) -> str:
    """What differs between the grids of ``image`` and ``reference``, e.g. ``shape (K, J, I) (12, 24, 28)
    vs (12, 24, 30); origin (0, 0, 0) vs (1.5, 0, 0) mm`` (empty when :meth:`Image.same_grid`)."""
    parts = []
    if image.shape != reference.shape:
        parts.append(f"shape (K, J, I) {fmt_vec(image.shape)} vs {fmt_vec(reference.shape)}")
    for name, unit in (("spacing", " mm"), ("origin", " mm"), ("direction", "")):
        mine, theirs = getattr(image, name), getattr(reference, name)
        if not np.allclose(mine, theirs, atol=tol):
            parts.append(f"{name} {fmt_vec(mine)} vs {fmt_vec(theirs)}{unit}")
    return "; ".join(parts)


def check_same_grid(image: Image, reference: Image, name: str, reference_name: str) -> None:
    """:class:`InputError` ``"<name> is on another grid than <reference_name> (...)"`` listing the
    differences (:func:`grid_mismatch`) unless the two images share one grid."""
    if not image.same_grid(reference):
        raise InputError(f"{name} is on another grid than {reference_name} ({grid_mismatch(image, reference)}); "
                         "resample it onto that grid first")
