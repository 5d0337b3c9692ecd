"""Synthetic abdominal CT (unenhanced) with liver lesions."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..image import Image
from .shapes import Canvas, Grid, ellipsoid, tube, union
from .torso import LONG_MM, HU, Torso, draw_body, draw_spine, vessel_tree

ABDOMEN_CENTRE_LPS = (2.5, 28.0, -390.0)
"""LPS position (mm) of the grid centre when no origin is given (an upper-abdomen table position)."""

ORGAN_HU = {"liver": 60.0, "spleen": 50.0, "kidney": 35.0, "bowel": 30.0, "hepatic_vessel": 42.0}
"""Unenhanced organ values (HU) of the abdomen phantom."""


def abdomen_ct(seed: int = 0, shape: Sequence[int] = (40, 160, 160), spacing: Sequence[float] = (0.8, 0.8, 2.5),
               origin: Optional[Sequence[float]] = None, direction: Optional[np.ndarray] = None,
               n_lesions: Optional[int] = None, diameter_mm: tuple[float, float] = (5.0, 30.0),
               noise_hu: float = 15.0) -> tuple[Image, Image, dict]:
    """Seeded upper-abdomen CT phantom with 2-4 hypo- or hyperdense liver lesions.

    Args:
        seed: seed of ``numpy.random.default_rng``; the same arguments give identical arrays.
        shape: ``(K, J, I)`` voxels (K >= 1, J and I >= 32); one slice gives a 2D phantom.
        spacing: voxel size along i, j, k in mm.
        origin: LPS mm of voxel (0, 0, 0); default puts the grid centre at :data:`ABDOMEN_CENTRE_LPS`.
        direction: 3x3 direction cosines (columns = LPS directions of i, j, k); default identity.
        n_lesions: number of liver lesions (default: 2-4 drawn from the seed).
        diameter_mm: range of lesion diameters; a lesion that does not fit shrinks (to half at most).
        noise_hu: standard deviation of the added Gaussian noise in HU.

    Returns:
        ``image``: int16 HU ``(K, J, I)``: fat about -100, muscle 45, liver 60 with hepatic vessels, spleen
        50, kidneys 35, aorta and IVC 45, bowel loops with gas or fluid, spine; lesions 10-40 HU
        (hypodense) or 90-130 HU (hyperdense); blurred by half a voxel (partial volume).
        ``label``: uint8 on the same grid, 1 = liver lesion.
        ``info``: JSON-ready dict as for :func:`~lesionseg.phantoms.chest_ct` (``organ`` is ``liver``,
        ``kind`` ``hypodense``/``hyperdense``).
    """
    if n_lesions is not None and not 0 <= n_lesions <= 10:
        raise InputError(f"n_lesions must be 0..10, got {n_lesions}")
    if not 0 < diameter_mm[0] <= diameter_mm[1]:
        raise InputError(f"diameter_mm must be an increasing positive range, got {diameter_mm}")
    rng = np.random.default_rng(seed)
    grid = Grid.create(shape, spacing, ABDOMEN_CENTRE_LPS, origin, direction)
    canvas = Canvas(grid, rng)
    torso = Torso.fit(grid, width=0.92, depth=0.75)
    draw_body(canvas, torso, wall=(0.9, 0.87))
    cavity = ellipsoid(grid, torso.at(0, -0.03), (0.82 * torso.bx, 0.76 * torso.by, LONG_MM))
    canvas.paint(cavity, HU["fat"] + 10.0, "cavity")
    _draw_organs(canvas, torso)
    draw_spine(canvas, torso, fy=0.6)
    vessel_tree(canvas, "liver", torso.at(-0.2, 0.1, 0.1), n_vessels=5, length_mm=0.6 * torso.bx,
                hu=ORGAN_HU["hepatic_vessel"], radius=(2.5, 1.0))
    count = int(rng.integers(2, 5)) if n_lesions is None else n_lesions
    for _ in range(count):
        dense = bool(rng.integers(0, 2))
        hu = float(rng.uniform(90.0, 130.0) if dense else rng.uniform(10.0, 40.0))
        canvas.place_lesion("liver", float(rng.uniform(*diameter_mm)), hu,
                            kind="hyperdense" if dense else "hypodense",
                            shape=("lobulated", "spheroid")[int(rng.integers(0, 2))])
    sigma = 0.5 * grid.spacing
    return canvas.finish("abdomen_ct", seed, {"background": 0, "liver_lesion": 1}, sigma, noise_hu)


def _draw_organs(canvas: Canvas, torso: Torso) -> None:
    """Liver (right), spleen (left), kidneys, muscles, great vessels and bowel loops, inside the cavity."""
    grid, rng = canvas.grid, canvas.rng
    cavity = canvas.organs["cavity"]
    liver = union(grid, [
        ellipsoid(grid, torso.at(-0.38, -0.05, 0.1), (0.42 * torso.bx, 0.6 * torso.by, 1.1 * torso.hz)),
        ellipsoid(grid, torso.at(0.05, -0.38, 0.3), (0.32 * torso.bx, 0.26 * torso.by, 0.7 * torso.hz)),
    ])
    canvas.paint(liver.within(cavity), ORGAN_HU["liver"], "liver")
    spleen = ellipsoid(grid, torso.at(0.58, 0.3, 0.2), (0.16 * torso.bx, 0.28 * torso.by, 0.6 * torso.hz))
    canvas.paint(spleen.within(cavity), ORGAN_HU["spleen"], "spleen")
    parts = [(ellipsoid(grid, torso.at(side * 0.36, 0.52, -0.3), (0.12 * torso.bx, 0.17 * torso.by, 0.55 * torso.hz)),
              ORGAN_HU["kidney"], "kidney") for side in (-1, 1)]
    for side in (-1, 1):
        parts.append((ellipsoid(grid, torso.at(side * 0.17, 0.42), (0.08 * torso.bx, 0.09 * torso.by, LONG_MM)),
                      HU["muscle"], "muscle"))
        parts.append((ellipsoid(grid, torso.at(side * 0.24, 0.8), (0.16 * torso.bx, 0.12 * torso.by, LONG_MM)),
                      HU["muscle"], "muscle"))
    for name, fx, fy, semi in (("aorta", 0.08, 0.32, (0.07, 0.07)), ("ivc", -0.13, 0.3, (0.08, 0.06))):
        region = ellipsoid(grid, torso.at(fx, fy), (semi[0] * torso.bx, semi[1] * torso.bx, LONG_MM))
        parts.append((region, HU["blood"], name))
    for region, hu, name in parts:
        canvas.paint(region, hu, name)
        canvas.remove_from_organs(region, keep=("body", "inner", "cavity", name))
    taken = np.zeros(grid.shape, bool)
    for name in ("liver", "spleen", "kidney", "muscle", "aorta", "ivc"):
        taken |= canvas.organs[name]
    free = cavity & ~taken
    for _ in range(4):
        start = torso.at(rng.uniform(-0.2, 0.5), rng.uniform(-0.6, 0.0), rng.uniform(-0.8, 0.4))
        steps = [start]
        for _ in range(5):
            steps.append(steps[-1] + rng.normal(size=3) * [0.15 * torso.bx, 0.12 * torso.by, 0.2 * torso.hz])
        radius = 0.07 * torso.bx + 1.5
        loop = tube(grid, np.array(steps), radius).within(free)
        canvas.paint(loop, ORGAN_HU["bowel"], "bowel")
        content = tube(grid, np.array(steps), 0.6 * radius).within(free)
        canvas.paint(content, HU["air"] if rng.random() < 0.5 else 10.0)
