"""Synthetic chest CT with lung nodules."""
from __future__ import annotations

import itertools
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..image import Image
from .shapes import Canvas, Grid, ellipsoid, tube
from .torso import LONG_MM, HU, Torso, draw_body, draw_ribs, draw_spine, vessel_tree

CHEST_CENTRE_LPS = (4.5, 22.0, -185.0)
"""LPS position (mm) of the grid centre when no origin is given (a mid-chest table position)."""


def chest_ct(seed: int = 0, shape: Sequence[int] = (40, 160, 160), spacing: Sequence[float] = (0.8, 0.8, 2.5),
             origin: Optional[Sequence[float]] = None, direction: Optional[np.ndarray] = None,
             n_nodules: Optional[int] = None, diameter_mm: tuple[float, float] = (6.0, 25.0),
             noise_hu: float = 15.0) -> tuple[Image, Image, dict]:
    """Seeded chest CT phantom with 1-3 lung nodules.

    Args:
        seed: seed of ``numpy.random.default_rng``; the same arguments give identical arrays.
        shape: ``(K, J, I)`` voxels (K >= 1, J and I >= 32); one slice gives a 2D phantom.
        spacing: voxel size along i, j, k in mm.
        origin: LPS mm of voxel (0, 0, 0); default puts the grid centre at :data:`CHEST_CENTRE_LPS`.
        direction: 3x3 direction cosines (columns = LPS directions of i, j, k); default identity.
        n_nodules: number of nodules (default: 1-3 drawn from the seed).
        diameter_mm: range of nodule diameters; a nodule that does not fit shrinks (to half at most).
        noise_hu: standard deviation of the added Gaussian noise in HU.

    Returns:
        ``image``: int16 HU ``(K, J, I)`` with air -1000, fat about -100, soft tissue about 45, lungs about
        -850 with vessels, bone 250-700, nodules 0-80 HU; blurred by half a voxel (partial volume).
        ``label``: uint8 on the same grid, 1 = nodule.
        ``info``: JSON-ready dict; ``info["lesions"]`` holds for each nodule its ``centre_lps`` (inside
        the nodule), ``box_lps`` (``[lo, hi]`` LPS mm around its voxel centres), ``box_ijk``,
        ``diameter_mm``, ``volume_ml``, ``hu``, ``shape`` and ``organ`` (``lung_left``/``lung_right``).
    """
    if n_nodules is not None and not 0 <= n_nodules <= 10:
        raise InputError(f"n_nodules must be 0..10, got {n_nodules}")
    if not 0 < diameter_mm[0] <= diameter_mm[1]:
        raise InputError(f"diameter_mm must be an increasing positive range, got {diameter_mm}")
    rng = np.random.default_rng(seed)
    grid = Grid.create(shape, spacing, CHEST_CENTRE_LPS, origin, direction)
    canvas = Canvas(grid, rng)
    torso = Torso.fit(grid)
    draw_body(canvas, torso)
    _draw_lungs(canvas, torso)
    draw_spine(canvas, torso)
    draw_ribs(canvas, torso)
    for (side, name), fz in itertools.product(((-1, "lung_right"), (1, "lung_left")), (-0.35, 0.15)):
        vessel_tree(canvas, name, torso.at(side * 0.2, -0.02, fz), n_vessels=8, length_mm=0.9 * torso.bx,
                    hu=35.0, radius=(2.0, 0.7), outward=(1.2 * side, 0.0, 0.0))
    count = int(rng.integers(1, 4)) if n_nodules is None else n_nodules
    for _ in range(count):
        organ = ("lung_right", "lung_left")[int(rng.integers(0, 2))]
        canvas.place_lesion(organ, float(rng.uniform(*diameter_mm)), float(rng.uniform(0.0, 80.0)),
                            kind="nodule", shape=("lobulated", "spheroid")[int(rng.integers(0, 2))])
    sigma = 0.5 * grid.spacing
    return canvas.finish("chest_ct", seed, {"background": 0, "nodule": 1}, sigma, noise_hu)


def _draw_lungs(canvas: Canvas, torso: Torso) -> None:
    """Two lungs (apex near the top of the anatomical range), the heart and aorta between them, trachea."""
    grid = canvas.grid
    for side, name in ((-1, "lung_right"), (1, "lung_left")):
        lung = ellipsoid(grid, torso.at(side * 0.42, -0.03, -0.35), (0.34 * torso.bx, 0.72 * torso.by, 1.3 * torso.hz))
        canvas.paint(lung.within(canvas.organs["inner"]), HU["lung"], name)
    heart = ellipsoid(grid, torso.at(0.12, -0.3, -0.55), (0.3 * torso.bx, 0.33 * torso.by, 0.6 * torso.hz))
    aorta = ellipsoid(grid, torso.at(0.1, 0.28), (0.09 * torso.bx, 0.09 * torso.bx, LONG_MM))
    for part in (heart, aorta):
        canvas.paint(part, HU["blood"], "mediastinum")
        canvas.remove_from_organs(part, keep=("body", "inner", "mediastinum"))
    top = torso.hz + grid.half_mm[2]
    trachea = [torso.at(0, -0.05, 0.1), np.array([0.0, -0.05 * torso.by, top])]
    wall = tube(grid, trachea, 0.075 * torso.bx + 1.5)
    canvas.paint(wall, HU["muscle"], "mediastinum")
    canvas.remove_from_organs(wall, keep=("body", "inner", "mediastinum"))
    canvas.paint(tube(grid, trachea, 0.075 * torso.bx), HU["air"])
