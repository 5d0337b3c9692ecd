"""Torso parts shared by the phantoms: body outline, body wall, spine, ribs and random vessel trees.

Anatomy is scaled to the field of view in-plane (a 128 mm phantom holds a small torso) and to at least
120 mm along z, so a thin slab or a single slice shows the middle of a full-size organ. Lesion sizes are
absolute (mm). Coordinates are grid mm (see :mod:`.shapes`): +x patient left, +y posterior, +z superior.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import Canvas, Grid, Region, ellipsoid, tube

HU = {"air": -1000.0, "fat": -100.0, "muscle": 45.0, "cortical": 700.0, "marrow": 250.0, "csf": 15.0,
      "blood": 45.0, "lung": -850.0}
"""Typical unenhanced CT values (HU) used by the phantoms."""

LONG_MM = 1e6
"""A semi-axis (mm) that turns an ellipsoid into a cylinder along z (bounding boxes clip to the grid)."""


@dataclass(frozen=True)
class Torso:
    """Body semi-axes ``bx`` (left-right) and ``by`` (front-back) and anatomical half height ``hz``, mm."""

    bx: float
    by: float
    hz: float

    @classmethod
    def fit(cls, grid: Grid, width: float = 0.9, depth: float = 0.72) -> "Torso":
        """A body filling ``width`` and ``depth`` of the in-plane half field of view."""
        half = grid.half_mm
        return cls(width * half[0], depth * half[1], max(half[2], 60.0))

    def at(self, fx: float, fy: float, fz: float = 0.0) -> np.ndarray:
        """Grid-mm point at fractions of the body semi-axes (x, y) and of the half height (z)."""
        return np.array([fx * self.bx, fy * self.by, fz * self.hz])


def draw_body(canvas: Canvas, torso: Torso, wall: tuple[float, float] = (0.91, 0.88),
              wall_hu: float = HU["muscle"]) -> Region:
    """Body (subcutaneous fat, organ ``body``) and the soft tissue inside it (organ ``inner``)."""
    grid = canvas.grid
    canvas.paint(ellipsoid(grid, torso.at(0, 0), (torso.bx, torso.by, LONG_MM)), HU["fat"], "body")
    inner = ellipsoid(grid, torso.at(0, 0), (wall[0] * torso.bx, wall[1] * torso.by, LONG_MM))
    return canvas.paint(inner, wall_hu, "inner")


def draw_spine(canvas: Canvas, torso: Torso, fy: float = 0.55) -> None:
    """Vertebral body (cortical rim, marrow core) at ``fy`` of the depth, spinal canal behind it."""
    grid = canvas.grid
    r = 0.13 * torso.bx
    centre = torso.at(0, fy)
    canvas.paint(ellipsoid(grid, centre, (r, 0.9 * r, LONG_MM)), HU["cortical"], "bone")
    canvas.paint(ellipsoid(grid, centre, (0.75 * r, 0.65 * r, LONG_MM)), HU["marrow"], "bone")
    canal = ellipsoid(grid, centre + [0, 1.55 * r, 0], (0.45 * r, 0.45 * r, LONG_MM))
    canvas.paint(canal, HU["csf"])
    canvas.remove_from_organs(canal)


def draw_ribs(canvas: Canvas, torso: Torso, spacing_mm: float = 22.0,
              radius: tuple[float, float] = (0.82, 0.8)) -> None:
    """Ribs: tubes along half-ellipse arcs from the spine to the front, falling towards the front, every
    ``spacing_mm`` in z, on each side. They are drawn over (and taken out of) the other organs."""
    grid = canvas.grid
    thickness = max(2.0, 0.035 * torso.bx)
    phi = np.linspace(0.42 * np.pi, -0.3 * np.pi, 9)
    for z0 in np.arange(-torso.hz, torso.hz + spacing_mm, spacing_mm):
        for side in (-1.0, 1.0):
            path = np.column_stack([side * radius[0] * torso.bx * np.cos(phi), radius[1] * torso.by * np.sin(phi),
                                    z0 - 0.25 * spacing_mm * (0.42 * np.pi - phi)])
            rib = canvas.paint(tube(grid, path, thickness), HU["cortical"], "bone")
            canvas.remove_from_organs(rib, keep=("body", "inner", "bone"))


def vessel_tree(canvas: Canvas, organ: str, start: np.ndarray, n_vessels: int, length_mm: float,
                hu: float, radius: tuple[float, float] = (2.5, 0.8), steps: int = 6,
                outward: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
    """``n_vessels`` tapering tubes that random-walk from ``start`` (grid mm) through ``organ``, leaving in
    random directions biased by ``outward``; each step turns by about 20 degrees. Drawn only inside the
    organ, whose mask keeps them."""
    grid, rng = canvas.grid, canvas.rng
    allowed = canvas.organs[organ]
    for _ in range(n_vessels):
        direction = rng.normal(size=3) * [1.0, 1.0, 0.6] + outward
        points = [np.asarray(start, float)]
        for _ in range(steps):
            direction = direction / np.linalg.norm(direction) + rng.normal(scale=0.35, size=3)
            points.append(points[-1] + direction / np.linalg.norm(direction) * length_mm / steps)
        radii = np.linspace(radius[0], radius[1], steps + 1)
        region = tube(grid, np.array(points), radii)
        if region.mask.size:
            canvas.paint(region.within(allowed), hu)
