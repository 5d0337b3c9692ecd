"""Synthetic mid-abdominal CT crop (portal venous phase) with small enhancing lesions at the small-bowel wall.

Built for the small-lesion-il method (arXiv 2207.14700: small-bowel carcinoid tumours of 8-1960 mm^3). The
field of view lies inside the body: anterior abdominal wall (air, subcutaneous fat, muscle) at the front,
vertebral body, psoas muscles, aorta and IVC at the back, the colon cut by the left and right edges, and
in between the mesentery: fat, lymph nodes, tapering enhancing mesenteric vessels and 6-10 small-bowel loops
(tubes along random walks with an enhancing wall and a lumen of water, positive oral contrast, chyme, or
gas over fluid). The lesion HU overlap the bowel wall, the blurred edge of a contrast-filled lumen, small
vessels and the IVC, so no HU threshold separates them. Anatomy, lesions and noise use three random streams
of the seed. Coordinates are grid mm (:mod:`.shapes`: +x patient left, +y posterior, +z superior); anatomy
positions scale with the field of view, bowel, vessel and lesion sizes are absolute (mm). No real data.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..image import Image
from .shapes import LESION_SHAPES, Canvas, Grid, Region, ellipsoid, tube
from .torso import HU, LONG_MM

log = logging.getLogger(__name__)

SMALLBOWEL_CENTRE_LPS = (-4.5, 12.0, -455.0)
"""LPS position (mm) of the grid centre when no origin is given (a table position at the umbilicus)."""
REFERENCE_HALF_MM = np.array([64.0, 64.0, 60.0])
"""Half field of view (x, y, z mm) the anatomy positions are written for (the default grid)."""
LESION_HU = (130.0, 15.0)
"""Mean and SD (HU) of the per-lesion enhancement (clipped to +-2.5 SD)."""
WALL_HU = (90.0, 15.0)
"""Mean and SD (HU) of the per-loop enhancing bowel-wall value (clipped to +-2.5 SD)."""
LUMEN = {"water": (0.4, (5.0, 25.0)), "contrast": (0.25, (180.0, 300.0)), "chyme": (0.15, (25.0, 50.0)),
         "gas": (0.2, (5.0, 25.0))}
"""Lumen kinds: (probability, HU range of the fluid); ``gas`` is gas (-950 HU) over fluid (supine level)."""
LABELS = {"background": 0, "lesion": 1}
GAP_MM = 3.0


def smallbowel_ct(seed: int = 0, shape: Sequence[int] = (80, 160, 160), spacing: Sequence[float] = (0.8, 0.8, 1.5),
                  origin: Optional[Sequence[float]] = None, direction: Optional[np.ndarray] = None,
                  n_lesions: Optional[int] = None, diameter_mm: tuple[float, float] = (2.0, 16.0),
                  noise_hu: float = 12.0, blur_sigma_mm: float = 0.7) -> tuple[Image, Image, dict]:
    """Seeded small-bowel CT phantom with 1-4 small enhancing lesions in or at the bowel wall.

    Args:
        seed: non-negative integer; the same arguments give identical arrays.
        shape: ``(K, J, I)`` voxels (K >= 8, J and I >= 32); default field of view 128 x 128 x 120 mm.
        spacing: voxel size along i, j, k in mm.
        origin: LPS mm of voxel (0, 0, 0); default puts the grid centre at :data:`SMALLBOWEL_CENTRE_LPS`.
        direction: 3x3 direction cosines (columns = LPS directions of i, j, k); default identity.
        n_lesions: number of lesions, 1..4 (default drawn from the seed).
        diameter_mm: range of lesion diameters, drawn log-uniformly; a lesion that does not fit shrinks by
            5 % per try, never below the range's lower end.
        noise_hu: SD of the added Gaussian noise (HU).
        blur_sigma_mm: Gaussian blur (partial volume) in mm, applied before the noise. 0.7 mm lies between a
            CT's in-plane PSF (sigma ~0.4 mm) and a 1.5 mm slice profile; at 1.0 mm the mean HU inside the
            labels of 2-16 mm lesions fell to ~75 for a drawn 130 (measured over 10 seeds), at 0.7 mm ~93.

    Returns:
        ``image``: int16 HU ``(K, J, I)``: fat about -100, muscle 50, bone, aorta 150-200, IVC 120-170,
        mesenteric vessels 140-210, bowel wall ~N(90, 15) per loop, lumen of water, contrast (180-300),
        chyme or gas over fluid, lymph nodes 35-60, lesions ~N(130, 15) per lesion.
        ``label``: uint8 on the same grid, 1 = lesion; each lesion is one 26-connected component.
        ``info``: JSON-ready: phantom, seed, shape, spacing, origin, direction, labels, ``hu`` (tissue values
        of the case), ``loops`` (lumen kind, radius, wall HU per loop) and ``lesions``: id, centre_lps (a
        voxel centre inside the lesion), diameter_mm, volume_mm3 (label voxels x voxel volume), hu (drawn
        value), mean_hu (of the output image inside the label), shape, box_ijk ``[[i0, j0, k0], [i1, j1, k1]]``.

    Raises:
        InputError: bad seed, lesion count, diameters, noise or grid, or no room for a single lesion.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if n_lesions is not None and (isinstance(n_lesions, bool) or not 1 <= n_lesions <= 4):
        raise InputError(f"n_lesions must be 1..4 (every case has a lesion), got {n_lesions!r}")
    if not 0 < diameter_mm[0] <= diameter_mm[1]:
        raise InputError(f"diameter_mm must be an increasing positive range, got {diameter_mm}")
    for name, value in (("noise_hu", noise_hu), ("blur_sigma_mm", blur_sigma_mm)):
        if not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value < 0:
            raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    if len(shape) == 3 and int(shape[0]) < 8:
        raise InputError(f"the small-bowel phantom needs at least 8 slices, got shape {tuple(shape)}")
    grid = Grid.create(shape, spacing, SMALLBOWEL_CENTRE_LPS, origin, direction)
    anatomy, lesion_rng, noise = (np.random.default_rng([int(seed), stream]) for stream in range(3))
    canvas = Canvas(grid, anatomy)
    scale = grid.half_mm / REFERENCE_HALF_MM
    hu = _case_values(anatomy)
    _draw_frame(canvas, scale, hu)
    loops = _draw_loops(canvas, anatomy, hu)
    _draw_mesentery(canvas, anatomy, scale, hu)
    count = int(lesion_rng.integers(1, 5)) if n_lesions is None else int(n_lesions)
    for n in range(count):
        diameter = float(np.exp(lesion_rng.uniform(*np.log(diameter_mm))))
        value = float(np.clip(lesion_rng.normal(*LESION_HU), LESION_HU[0] - 2.5 * LESION_HU[1],
                              LESION_HU[0] + 2.5 * LESION_HU[1]))
        if not _place_lesion(canvas, lesion_rng, diameter, float(diameter_mm[0]), value) and n == 0:
            raise InputError(f"no room for a lesion in the small-bowel phantom of shape {tuple(shape)}")
    canvas.rng = noise
    sigma = np.full(3, float(blur_sigma_mm)) if blur_sigma_mm > 0 else np.full(3, 1e-6)
    image, label, info = canvas.finish("smallbowel_ct", int(seed), dict(LABELS), sigma, noise_hu)
    parts, _ = ndimage.label(label.array, ndimage.generate_binary_structure(3, 3))
    for record in info["lesions"]:
        i, j, k = record["box_ijk"][2]
        record["mean_hu"] = round(float(image.array[parts == parts[k, j, i]].mean()), 1)
        record["box_ijk"] = record["box_ijk"][:2]
    info["hu"] = {name: round(v, 1) for name, v in hu.items()}
    info["loops"] = loops
    return image.with_array(image.array, units="HU", phantom="smallbowel_ct"), label, info


def _case_values(rng: np.random.Generator) -> dict:
    """HU of the case's tissues (portal venous phase), each drawn once per case."""
    return {"fat": float(rng.uniform(-110.0, -90.0)), "muscle": float(rng.uniform(45.0, 60.0)),
            "aorta": float(rng.uniform(150.0, 200.0)), "ivc": float(rng.uniform(120.0, 170.0)),
            "vessel_lo": 140.0, "vessel_hi": 210.0, "node": float(rng.uniform(35.0, 60.0)),
            "colon_wall": float(rng.uniform(50.0, 80.0)), "stool": float(rng.uniform(-60.0, 20.0)),
            "gas": -950.0}


def _draw_frame(canvas: Canvas, scale: np.ndarray, hu: dict) -> None:
    """Abdominal wall, peritoneal fat (organ ``cavity``), spine, psoas, aorta, IVC and the colon cut by the
    left and right edges; organ ``blocked`` collects what lesions and bowel must not enter."""
    grid, rng = canvas.grid, canvas.rng
    s = float(np.sqrt(scale[0] * scale[1]))
    fat_mm, muscle_mm = rng.uniform(6.0, 14.0) * s, rng.uniform(6.0, 10.0) * s
    centre, semi = np.array([0.0, 45.0 * scale[1], 0.0]), np.array([150.0 * scale[0], 106.0 * scale[1]])
    canvas.paint(ellipsoid(grid, centre, (*semi, LONG_MM)), hu["fat"], "body")
    canvas.paint(ellipsoid(grid, centre, (*(semi - fat_mm), LONG_MM)), hu["muscle"], "blocked")
    cavity = ellipsoid(grid, centre, (*(semi - fat_mm - muscle_mm), LONG_MM))
    canvas.paint(cavity, hu["fat"], "cavity")
    canvas.remove_from_organs(cavity, keep=("body", "cavity"))
    canvas.organs["blocked"] |= ~canvas.organs["cavity"]
    parts = [((0.0, 62.0), (17.0, 15.0), HU["cortical"]), ((0.0, 62.0), (13.0, 11.5), HU["marrow"]),
             ((-27.0, 50.0), (12.0, 10.0), hu["muscle"]), ((27.0, 50.0), (12.0, 10.0), hu["muscle"]),
             ((6.0, 32.0), (10.0, 10.0), hu["aorta"]), ((-19.0, 33.0), (12.0, 8.0), hu["ivc"])]
    for (x, y), (a, b), value in parts:
        region = ellipsoid(grid, (x * scale[0], y * scale[1], 0.0), (a * s, b * s, LONG_MM))
        canvas.paint(region, value, "blocked")
        grown = ellipsoid(grid, (x * scale[0], y * scale[1], 0.0), (a * s + 3.0, b * s + 3.0, LONG_MM))
        canvas.organs["blocked"][grown.box] |= grown.mask  # a fat rim keeps the bowel off
    for side in (-1.0, 1.0):
        x = side * rng.uniform(0.9, 1.0) * grid.half_mm[0]
        path = np.array([[x + rng.normal(0.0, 4.0), rng.uniform(-15.0, 5.0) * scale[1], z]
                         for z in np.linspace(-grid.half_mm[2] - 10.0, grid.half_mm[2] + 10.0, 6)])
        radius = rng.uniform(15.0, 20.0)
        canvas.paint(tube(grid, path, radius + 2.5), hu["colon_wall"], "blocked")
        lumen = tube(grid, path, radius)
        canvas.paint(lumen, hu["stool"])
        level = path[:, 1].mean() - rng.uniform(0.0, 0.5) * radius
        _, y, _ = grid.coords(lumen.box)
        canvas.paint(Region(lumen.box, lumen.mask & (y < level)), hu["gas"])


def _walk(rng: np.random.Generator, allowed: np.ndarray, grid: Grid, start: np.ndarray, steps: int,
          step_mm: float, margin_mm: float) -> np.ndarray:
    """``(steps + 1, 3)`` grid-mm points of a smooth random walk from ``start`` that turns back (up to 12
    tries per step) whenever the next point leaves ``allowed`` or comes within ``margin_mm`` of the grid edge."""
    points = [np.asarray(start, float)]
    heading = rng.normal(size=3) * [1.0, 1.0, 0.7]
    limit = grid.half_mm - margin_mm
    for _ in range(steps):
        for _ in range(12):
            heading = heading / np.linalg.norm(heading) + rng.normal(scale=0.45, size=3)
            nxt = points[-1] + heading / np.linalg.norm(heading) * step_mm
            kji = np.rint(grid.index(nxt)[::-1]).astype(int)
            inside = np.all(np.abs(nxt) <= limit) and np.all((kji >= 0) & (kji < grid.shape))
            if inside and allowed[tuple(kji)]:
                break
            heading = -heading + rng.normal(scale=0.5, size=3)
        else:
            break
        points.append(nxt)
    return np.array(points)


def _draw_loops(canvas: Canvas, rng: np.random.Generator, hu: dict) -> list[dict]:
    """6-10 small-bowel loops in the free peritoneal fat: organs ``wall`` and ``lumen``; returns their records."""
    grid = canvas.grid
    free = canvas.organs["cavity"] & ~canvas.organs["blocked"]
    canvas.organs["wall"] = np.zeros(grid.shape, bool)
    canvas.organs["lumen"] = np.zeros(grid.shape, bool)
    kinds = list(LUMEN)
    records = []
    for _ in range(int(rng.integers(6, 11))):
        candidates = np.flatnonzero(free)
        if candidates.size == 0:
            break
        kji = np.array(np.unravel_index(rng.choice(candidates), grid.shape))
        start = (kji[::-1] - (np.array(grid.shape[::-1]) - 1) / 2) * grid.spacing
        radius, wall_mm = float(rng.uniform(7.0, 12.0)), float(rng.uniform(1.5, 3.0))
        path = _walk(rng, free, grid, start, int(rng.integers(15, 40)), 5.0, radius)
        if len(path) < 2:
            continue
        kind = kinds[int(rng.choice(len(kinds), p=[LUMEN[k][0] for k in kinds]))]
        wall_hu = float(np.clip(rng.normal(*WALL_HU), WALL_HU[0] - 2.5 * WALL_HU[1], WALL_HU[0] + 2.5 * WALL_HU[1]))
        fluid = float(rng.uniform(*LUMEN[kind][1]))
        outer = canvas.paint(tube(grid, path, radius).within(free), wall_hu, "wall")
        if not outer.mask.any():
            continue
        lumen = tube(grid, path, radius - wall_mm).within(outer.full(grid.shape))
        canvas.paint(lumen, fluid, "lumen")
        canvas.organs["wall"][lumen.box] &= ~lumen.mask
        if kind == "gas" and lumen.mask.any():
            _, y, _ = grid.coords(lumen.box)
            level = float(np.median(np.broadcast_to(y, lumen.mask.shape)[lumen.mask]))
            canvas.paint(Region(lumen.box, lumen.mask & (y < level)), hu["gas"])
        free[outer.box] &= ~outer.mask
        records.append({"lumen": kind, "radius_mm": round(radius, 2), "wall_mm": round(wall_mm, 2),
                        "wall_hu": round(wall_hu, 1), "lumen_hu": round(fluid, 1)})
    return records


def _draw_mesentery(canvas: Canvas, rng: np.random.Generator, scale: np.ndarray, hu: dict) -> None:
    """Mesenteric vessels (tapering tubes from the root in front of the aorta; organ ``vessel``) and lymph
    nodes, in the fat the bowel left free."""
    grid = canvas.grid
    fat = canvas.organs["cavity"] & ~canvas.organs["blocked"] & ~canvas.organs["wall"] & ~canvas.organs["lumen"]
    canvas.organs["vessel"] = np.zeros(grid.shape, bool)
    root = np.array([2.0 * scale[0], 14.0 * scale[1], 0.0])
    for _ in range(int(rng.integers(8, 14))):
        start = root + rng.normal(0.0, 4.0, 3) * [1.0, 1.0, 6.0]
        path = _walk(rng, np.ones(grid.shape, bool), grid, start, 6, float(rng.uniform(8.0, 14.0)), 0.0)
        radii = np.linspace(rng.uniform(1.5, 3.0), rng.uniform(0.6, 1.0), len(path))
        value = float(rng.uniform(hu["vessel_lo"], hu["vessel_hi"]))
        canvas.paint(tube(grid, path, radii).within(fat), value, "vessel")
    for _ in range(int(rng.integers(2, 6))):
        candidates = np.flatnonzero(fat & ~canvas.organs["vessel"])
        kji = np.array(np.unravel_index(rng.choice(candidates), grid.shape))
        centre = (kji[::-1] - (np.array(grid.shape[::-1]) - 1) / 2) * grid.spacing
        node = ellipsoid(grid, centre, rng.uniform(2.0, 5.0, 3) * [1.0, 0.8, 1.2])
        canvas.paint(node.within(fat), hu["node"])


def _place_lesion(canvas: Canvas, rng: np.random.Generator, diameter: float, smallest: float,
                  value: float, tries: int = 80) -> bool:
    """Draw one lesion centred on a bowel-wall voxel, away from blocked anatomy, vessels and the grid edges,
    at least :data:`GAP_MM` from other lesions; label it 1 and record it in ``canvas.lesions``."""
    grid = canvas.grid
    candidates = np.flatnonzero(canvas.organs["wall"])
    if candidates.size == 0:
        return False
    blocked = canvas.organs["blocked"] | canvas.organs["vessel"]
    gap = np.ceil(GAP_MM / grid.spacing[::-1]).astype(int)
    for attempt in range(tries):
        d = max(diameter * 0.95 ** attempt, smallest)
        kji = np.array(np.unravel_index(rng.choice(candidates), grid.shape))
        centre = (kji[::-1] - (np.array(grid.shape[::-1]) - 1) / 2) * grid.spacing
        shape = ("lobulated", "spheroid")[int(rng.integers(0, 2))]
        region = LESION_SHAPES[shape](grid, centre, d / 2, rng)
        local = kji - [s.start for s in region.box]
        if np.any(local < 0) or np.any(local >= region.mask.shape) or not region.mask[tuple(local)]:
            continue
        parts, _ = ndimage.label(region.mask, ndimage.generate_binary_structure(3, 3))
        region = Region(region.box, parts == parts[tuple(local)])
        if region.touches_border(grid.shape) or (blocked[region.box] & region.mask).any():
            continue
        near = tuple(slice(max(s.start - g, 0), s.stop + g) for s, g in zip(region.box, gap))
        if canvas.label[near].any():
            continue
        canvas.paint(region, value)
        canvas.label[region.box][region.mask] = 1
        where = np.argwhere(region.mask) + [s.start for s in region.box]
        canvas.lesions.append({
            "id": len(canvas.lesions) + 1, "centre_lps": grid.to_lps(centre)[0].round(3).tolist(),
            "diameter_mm": round(float(d), 2), "shape": shape, "hu": round(value, 1),
            "volume_mm3": round(float(region.mask.sum() * np.prod(grid.spacing)), 3),
            "box_ijk": [where.min(axis=0)[::-1].tolist(), where.max(axis=0)[::-1].tolist(), kji[::-1].tolist()],
        })
        return True
    log.warning("smallbowel phantom: no room for a %.1f mm lesion", diameter)
    return False
