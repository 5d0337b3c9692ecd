"""Typed prompts in physical space (LPS millimetres, as SimpleITK and DICOM use).

Slicer's RAS coordinates are converted to LPS at the Slicer edge (``LesionSegLib``), nowhere else.
World <-> voxel conversion of prompts lives in :mod:`lesionseg.geometry`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .errors import InputError
from .image import as_vector3


def _point(value: object, name: str) -> np.ndarray:
    return as_vector3(value, f"{name} (LPS mm)")


@dataclass(frozen=True, eq=False)
class Box:
    """Axis-aligned box given by two opposite corners ``(x, y, z)`` in LPS mm (any order)."""

    corner_a: np.ndarray
    corner_b: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "corner_a", _point(self.corner_a, "box corner"))
        object.__setattr__(self, "corner_b", _point(self.corner_b, "box corner"))

    @property
    def lo(self) -> np.ndarray:
        """Smallest LPS coordinate on each axis."""
        return np.minimum(self.corner_a, self.corner_b)

    @property
    def hi(self) -> np.ndarray:
        """Largest LPS coordinate on each axis."""
        return np.maximum(self.corner_a, self.corner_b)

    @property
    def corners(self) -> np.ndarray:
        """The eight corners, ``(8, 3)`` LPS mm."""
        lo, hi = self.lo, self.hi
        return np.array([[(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]]
                         for a in (0, 1) for b in (0, 1) for c in (0, 1)])

    def to_dict(self) -> dict:
        return {"kind": "box", "corner_a": self.corner_a.tolist(), "corner_b": self.corner_b.tolist()}


@dataclass(frozen=True, eq=False)
class RecistLine:
    """RECIST long axis (two end points, LPS mm) and optional short axis (two end points)."""

    long_start: np.ndarray
    long_end: np.ndarray
    short_start: Optional[np.ndarray] = None
    short_end: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "long_start", _point(self.long_start, "long-axis end point"))
        object.__setattr__(self, "long_end", _point(self.long_end, "long-axis end point"))
        if (self.short_start is None) != (self.short_end is None):
            raise InputError("the short axis needs both end points")
        if self.short_start is not None:
            object.__setattr__(self, "short_start", _point(self.short_start, "short-axis end point"))
            object.__setattr__(self, "short_end", _point(self.short_end, "short-axis end point"))
        if self.long_length_mm <= 1e-6:
            raise InputError("the RECIST long axis has zero length")
        if self.short_start is not None and self.short_length_mm <= 1e-6:
            raise InputError("the RECIST short axis has zero length")

    @property
    def long_length_mm(self) -> float:
        return float(np.linalg.norm(self.long_end - self.long_start))

    @property
    def short_length_mm(self) -> float:
        if self.short_start is None:
            return 0.0
        return float(np.linalg.norm(self.short_end - self.short_start))

    def to_dict(self) -> dict:
        out = {"kind": "recist", "long": [self.long_start.tolist(), self.long_end.tolist()]}
        if self.short_start is not None:
            out["short"] = [self.short_start.tolist(), self.short_end.tolist()]
        return out


@dataclass(frozen=True, eq=False)
class Points:
    """Click points, ``(N, 3)`` LPS mm, with labels ``(N,)``: 1 foreground, 0 background."""

    points: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(pts) == 0 or len(pts) != len(labels):
            raise InputError("points need at least one point and one label per point")
        if not np.all(np.isfinite(pts)):
            raise InputError("points must be finite")
        if not np.all(np.isin(labels, (0, 1))):
            raise InputError("point labels must be 0 (background) or 1 (foreground)")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "labels", labels)

    def to_dict(self) -> dict:
        return {"kind": "points", "points": self.points.tolist(), "labels": self.labels.tolist()}


Prompt = Union[Box, RecistLine, Points, None]
"""Any prompt; ``None`` is the empty prompt of the automatic methods."""


def prompt_from_dict(data: Optional[dict]) -> Prompt:
    """Inverse of the prompts' ``to_dict`` (``None`` stays ``None``)."""
    if data is None:
        return None
    kind = data.get("kind")
    if kind == "box":
        return Box(data["corner_a"], data["corner_b"])
    if kind == "recist":
        short = data.get("short") or (None, None)
        return RecistLine(data["long"][0], data["long"][1], short[0], short[1])
    if kind == "points":
        return Points(data["points"], data["labels"])
    raise InputError(f"unknown prompt kind {kind!r}")
