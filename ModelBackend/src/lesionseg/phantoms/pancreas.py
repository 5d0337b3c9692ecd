"""Synthetic dual-phase (arterial and venous) abdominal CT at the pancreas level, for S4C screening.

The anatomy is painted once with *tissue codes* (sentinels <= -2000, outside the CT range) that each phase
maps to its own HU (:data:`TISSUE_HU`, +-12 % per case) before blur and noise; what :mod:`.torso` paints in
plain HU (subcutaneous fat, bone) is the same in both phases. Anatomy, lesions and noise use three random
streams of the seed, so a seed gives the same anatomy whatever the kind (a dilated duct thickens the pancreas).
Coordinates are grid mm (:mod:`.shapes`: +x patient left, +y posterior, +z superior); anatomy is written in
*reference mm* for a torso of 100 x 72 mm semi-axes (the default 216 x 180 mm field of view) and scales with
it; lesion and duct sizes are absolute. ``style="randomised"`` renders the same anatomy with SynthSeg-style
domain randomisation (:mod:`.randomise`, from a fourth stream of the seed). No real data is used.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..image import Image
from .randomise import CODE_BASE, render, tissue_values, tumour_contrast, tumour_sizes
from .shapes import LESION_SHAPES, Canvas, Grid, Region, ellipsoid, random_rotation, tube, union
from .torso import HU, LONG_MM, Torso, draw_body, draw_spine, vessel_tree

log = logging.getLogger(__name__)

KINDS = ("normal", "tumour", "duct", "tumour+duct")
"""Case kinds: no lesion, hypervascular tumour(s), dilated main duct, tumour with the duct dilated upstream."""

KIND_SHARES = {"normal": 0.5, "tumour": 0.3, "duct": 0.1, "tumour+duct": 0.1}
"""Share of each kind in a :func:`cohort` (and the odds of a kind drawn from the seed)."""

LABELS = {"background": 0, "pancreas": 1, "tumour": 2, "duct": 3}
PHASES = ("arterial", "venous")

PANCREAS_CENTRE_LPS = (2.5, 30.0, -420.0)
"""LPS position (mm) of the grid centre when no origin is given (a table position at the pancreas)."""

TISSUE_HU = {"fat": (-100.0, -100.0), "muscle": (55.0, 60.0), "liver": (70.0, 110.0), "spleen": (130.0, 120.0),
             "cortex": (180.0, 150.0), "medulla": (90.0, 150.0), "pancreas": (120.0, 95.0), "artery": (300.0, 150.0),
             "vein": (120.0, 170.0), "ivc": (100.0, 160.0), "renal_vein": (170.0, 160.0), "gut_wall": (95.0, 100.0),
             "fluid": (8.0, 10.0), "bile": (10.0, 12.0)}
"""Typical (arterial, venous) HU of each enhancing tissue; each value is scaled by U(0.88, 1.12) per case."""

VARIATION = 0.12
REFERENCE_TORSO = np.array([100.0, 72.0, 60.0])
TUMOUR_MM = (5.0, 20.0)
DUCT_MM = (4.0, 8.0)


@dataclass
class _Scene:
    """A case being drawn: the canvas (codes in ``hu``), reference-to-grid ``scale`` (x, y, z), the bool
    ``(K, J, I)`` mask of still unclaimed abdominal fat, the case's tissue HU and its pancreas shift (mm)."""

    canvas: Canvas
    grid: Grid
    scale: np.ndarray
    free: np.ndarray
    values: dict
    shift: np.ndarray

    def at(self, points: Sequence, move: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
        """Grid mm of reference-mm ``(..., 3)`` points moved by the pancreas shift times ``move``."""
        return (np.asarray(points, float) + self.shift * np.asarray(move)) * self.scale

    def mm(self, *lengths: float) -> float | np.ndarray:
        """Reference in-plane lengths in grid mm: a float for one length, else an array."""
        out = np.asarray(lengths, float) * np.sqrt(self.scale[0] * self.scale[1])
        return float(out[0]) if len(lengths) == 1 else out

    def code(self, tissue: str) -> float:
        """Canvas value (code) of ``tissue``, a key of ``values``."""
        return CODE_BASE - list(self.values).index(tissue)

    def claim(self, region: Region, tissue: str, organ: Optional[str] = None, margin_mm: float = 0.0,
              over: bool = False) -> Region:
        """Paint ``region`` (only its free part unless ``over``) and take it and a ``margin_mm`` fat rim
        around it out of the free space; returns the painted region."""
        if not over:
            region = region.within(self.free)
        self.canvas.paint(region, self.code(tissue), organ)
        if region.mask.size:
            grown = _resized(self.grid, region, margin_mm)
            self.free[grown.box] &= ~grown.mask
        return region


def pancreas_ct(seed: int = 0, kind: Optional[str] = None, shape: Sequence[int] = (60, 200, 240),
                spacing: Sequence[float] = (0.9, 0.9, 2.0), origin: Optional[Sequence[float]] = None,
                direction: Optional[np.ndarray] = None, noise_hu: float = 12.0, style: str = "plain",
                tumour_mm: Optional[tuple[float, float]] = None) -> tuple[Image, Image, Image, dict]:
    """Seeded dual-phase CT phantom of the upper abdomen with a pancreas and, by ``kind``, lesions.

    Args:
        seed: non-negative integer; the same arguments give identical arrays.
        kind: one of :data:`KINDS`; None draws it from the seed with the :data:`KIND_SHARES` odds. A tumour
            with no room (a thin slab) is left out and logged.
        shape: ``(K, J, I)`` voxels (K >= 1, J and I >= 32).
        spacing: voxel size along i, j, k in mm (default field of view 216 x 180 x 120 mm).
        origin: LPS mm of voxel (0, 0, 0); default puts the grid centre at :data:`PANCREAS_CENTRE_LPS`.
        direction: 3x3 direction cosines (columns = LPS directions of i, j, k); default identity.
        noise_hu: standard deviation of the Gaussian noise added to each phase independently (HU; plain only).
        style: ``"plain"`` or ``"randomised"``: the same anatomy and labels (same ``tumour_mm``), domain-
            randomised look and tumour contrast from stream ``[seed, 3]`` (:mod:`.randomise`).
        tumour_mm: ``(min, max)`` tumour diameter (mm); default :data:`TUMOUR_MM`, randomised (5, 40).

    Returns:
        ``(arterial, venous, label, info)``: two int16 HU images ``(K, J, I)`` of one anatomy on one grid
        (arterial: aorta ~300, pancreas ~120, veins ~120, liver ~70, renal cortex ~180 over a darker medulla;
        venous: aorta ~150, veins ~170, pancreas ~95, liver ~110, kidneys ~150), blurred by half a voxel; a
        uint8 label image on that grid (:data:`LABELS`; tumour over duct over pancreas); ``info``: phantom,
        seed, kind, shape, spacing, origin, direction, labels, ``tumours`` (id, centre_lps (a voxel centre in
        it), diameter_mm, shape, hu_arterial, hu_venous, conspicuous_phase, volume_mm3, box_ijk ``[[i0, j0,
        k0], [i1, j1, k1]]``), ``duct`` (None or diameter_mm, hu, volume_mm3), pancreas_mm3 (label 1),
        organ_mm3 (labels 1-3), pancreas_length_mm (120-180 mm), ``hu`` (tissue HU per phase), ``positive``;
        randomised only: ``render`` (style, dose factors, :class:`~.randomise.RenderParams`) and each
        tumour's ``contrast``.

    Raises:
        InputError: unknown ``kind`` or ``style``, bad seed, negative noise, bad ``tumour_mm``, or a bad grid.
    """
    if kind is not None and kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS} or None, got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(noise_hu, (int, float, np.number)) or not np.isfinite(noise_hu) or noise_hu < 0:
        raise InputError(f"noise_hu must be a finite number >= 0, got {noise_hu!r}")
    sizes = tumour_sizes(style, tumour_mm, TUMOUR_MM)
    grid = Grid.create(shape, spacing, PANCREAS_CENTRE_LPS, origin, direction)
    anatomy, lesions, noise = (np.random.default_rng([int(seed), stream]) for stream in range(3))
    drawn = KINDS[int(lesions.choice(len(KINDS), p=[KIND_SHARES[k] for k in KINDS]))]
    kind = drawn if kind is None else kind
    duct_mm = float(lesions.uniform(*DUCT_MM)) if "duct" in kind else 0.0
    canvas = Canvas(grid, anatomy)
    torso = Torso.fit(grid, width=anatomy.uniform(0.9, 0.95), depth=anatomy.uniform(0.76, 0.82))
    values = {name: tuple(float(v * anatomy.uniform(1 - VARIATION, 1 + VARIATION)) for v in pair)
              for name, pair in TISSUE_HU.items()}
    styler = np.random.default_rng([int(seed), 3]) if style == "randomised" else None
    values, render_record = tissue_values(styler, TISSUE_HU) if styler else (values, {})
    scale = np.array([torso.bx, torso.by, torso.hz]) / REFERENCE_TORSO
    scene = _Scene(canvas, grid, scale, np.zeros(grid.shape, bool), values, np.zeros(3))
    path, radii, knots, shape_region = _pancreas(scene, min_radius=duct_mm / 2 + 2.5)
    _draw_frame(scene, torso, path, radii, knots)
    pancreas = scene.claim(shape_region, "pancreas", "pancreas")
    tumours, records, indices = _draw_tumours(scene, lesions, path, radii, kind, knots, sizes, styler)
    duct = _draw_duct(scene, lesions, path, indices[0] if indices else None, duct_mm) if duct_mm else None
    grown = _resized(grid, union(grid, [pancreas, *tumours]), 2.0)
    scene.free[grown.box] &= ~grown.mask
    _draw_viscera(scene)
    label = canvas.label  # pancreas, then duct, then tumour: the later wins
    for name in ("pancreas", "duct", "tumour"):
        label[canvas.organs.get(name, np.zeros(grid.shape, bool))] = LABELS[name]
    voxel_mm3 = float(np.prod(grid.spacing))
    if duct is not None:
        duct["volume_mm3"] = round(float(np.count_nonzero(label == LABELS["duct"])) * voxel_mm3, 3)
    arterial, venous = render(canvas.hu, scene.values, grid.spacing, noise, noise_hu, styler, render_record)
    info = {
        "phantom": "pancreas_ct", "seed": int(seed), "kind": kind, "shape": list(grid.shape),
        "spacing": grid.spacing.tolist(), "origin": grid.origin.tolist(), "direction": grid.direction.tolist(),
        "labels": dict(LABELS), "tumours": records, "duct": duct,
        "pancreas_mm3": round(float(np.count_nonzero(label == LABELS["pancreas"])) * voxel_mm3, 3),
        "organ_mm3": round(float(np.count_nonzero(label)) * voxel_mm3, 3),
        "pancreas_length_mm": round(float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()), 1),
        "hu": {phase: {name: round(pair[p], 1) for name, pair in scene.values.items()}
               for p, phase in enumerate(PHASES)},
        "positive": bool(records or duct is not None),
        **({"render": {"style": style, **render_record}} if styler else {}),
    }
    meta = {"units": "HU", "phantom": "pancreas_ct"}
    return (grid.image(arterial, phase="arterial", **meta), grid.image(venous, phase="venous", **meta),
            grid.image(label.copy()), info)


def cohort(n_cases: int, seed: int = 0) -> list[dict]:
    """Deterministic case specifications ``[{"case": "s4c_000", "seed": int, "kind": str}, ...]``: kinds in
    the :data:`KIND_SHARES` proportions (largest remainders; every kind appears when ``n_cases >= 10``),
    shuffled with ``seed``; each case has its own seed derived from ``(seed, index)``."""
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise InputError(f"n_cases must be a positive integer, got {n_cases!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    shares = np.array([KIND_SHARES[k] for k in KINDS]) * n_cases
    counts = np.floor(shares).astype(int)
    counts[np.argsort(-(shares - counts), kind="stable")[: n_cases - counts.sum()]] += 1
    kinds = np.repeat(np.array(KINDS), counts)[np.random.default_rng(seed).permutation(n_cases)]
    width = max(3, len(str(n_cases - 1)))
    return [{"case": f"s4c_{i:0{width}d}", "seed": int(np.random.SeedSequence([seed, i]).generate_state(1)[0]),
             "kind": str(kinds[i])} for i in range(n_cases)]


def _resized(grid: Grid, region: Region, mm: float) -> Region:
    """``region`` grown (``mm`` > 0) or shrunk (``mm`` < 0) by an ellipsoidal footprint of ``|mm|`` mm."""
    spacing = grid.spacing[::-1]
    reach = np.floor(abs(mm) / spacing + 1e-9).astype(int)
    if not region.mask.size or not reach.any():
        return region
    kk, jj, ii = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    foot = (kk * spacing[0]) ** 2 + (jj * spacing[1]) ** 2 + (ii * spacing[2]) ** 2 <= mm ** 2 + 1e-9
    if mm < 0:
        return Region(region.box, ndimage.binary_erosion(region.mask, foot))
    box = tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, r, n in zip(region.box, reach, grid.shape))
    mask = np.zeros(tuple(b.stop - b.start for b in box), bool)
    mask[tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(region.box, box))] = region.mask
    return Region(box, ndimage.binary_dilation(mask, foot))  # type: ignore[arg-type]


def _pancreas(scene: _Scene, min_radius: float) -> tuple[np.ndarray, np.ndarray, list[int], Region]:
    """Pancreas centreline from uncinate process through head, neck and body to tail tip (``(N, 3)`` grid mm,
    about 1 mm apart), its radius (mm, >= ``min_radius``) at each point, the path indices of the 8 control
    points (uncinate, head x2, neck, body, body/tail, tail, tip), and the lobulated organ: a tube plus a
    turned ellipsoidal lobule (70-105 % of the radius) every 6 mm. Sets ``scene.shift`` (reference mm)."""
    rng = scene.canvas.rng
    ctrl = np.array([[-22, 2, -26], [-36, 0, -16], [-36, -6, -2], [-14, -20, 4], [12, -22, 8],
                     [40, -12, 14], [56, 0, 18], [62, 10, 22]], float)
    radii = np.array([7.0, 12.5, 12.0, 9.0, 10.5, 9.5, 8.5, 6.5])
    ctrl[:, [0, 2]] = [10.0, 0.0] + (ctrl[:, [0, 2]] - [10.0, 0.0]) * rng.uniform([0.78, 0.65], [1.05, 1.25])
    ctrl[2:6, 1] += rng.uniform(-6.0, 2.0)
    scene.shift = rng.uniform([-8.0, -6.0, -12.0], [8.0, 2.0, 12.0])
    ctrl += rng.normal(0.0, 2.0, ctrl.shape)
    radii *= rng.uniform(0.9, 1.15) * rng.uniform(0.9, 1.1, radii.shape)
    radii[1:3] *= rng.uniform(0.9, 1.1)
    ctrl = scene.at(ctrl, move=(1.0, 1.0, 1.0))
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
    u = np.linspace(0.0, chord[-1], 600)
    dense = CubicSpline(chord, ctrl, axis=0, bc_type="natural")(u)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    every_mm = np.unique(np.r_[np.searchsorted(arc, np.arange(0.0, arc[-1], 1.0)), len(u) - 1])
    path, radius = dense[every_mm], np.maximum(np.interp(u[every_mm], chord, radii) * scene.mm(1.0), min_radius)
    knots = [int(np.argmin(np.linalg.norm(path - c, axis=1))) for c in ctrl]
    every3 = np.unique(np.r_[np.arange(0, len(path), 3), len(path) - 1])
    parts = [tube(scene.grid, path[every3], radius[every3])]
    for i in range(0, len(path), 6):
        centre = path[i] + rng.normal(0.0, 0.2 * radius[i], 3)
        parts.append(ellipsoid(scene.grid, centre, radius[i] * rng.uniform(0.7, 1.05, 3), random_rotation(rng)))
    return path, radius, knots, union(scene.grid, parts)


def _draw_frame(scene: _Scene, torso: Torso, path: np.ndarray, radii: np.ndarray, knots: list[int]) -> None:
    """Body wall, abdominal cavity (fat; sets ``free``), paraspinal and psoas muscles, spine, and vessels: aorta,
    IVC, celiac trunk with hepatic and splenic arteries, SMA (fat collar), renal veins, SMV, portal vein and
    the splenic vein along the posterior surface of the pancreas body and tail."""
    canvas, grid, at, mm, rng = scene.canvas, scene.grid, scene.at, scene.mm, scene.canvas.rng
    draw_body(canvas, torso, wall=(0.92, 0.9), wall_hu=scene.code("muscle"))
    canvas.paint(ellipsoid(grid, (0, 0, 0), (0.84 * torso.bx, 0.8 * torso.by, LONG_MM)), scene.code("fat"), "cavity")
    for side in (-1, 1):
        for fx, fy, semi in ((0.2, 0.76, (0.14, 0.12)), (0.2, 0.6, (0.07, 0.09))):
            muscle = ellipsoid(grid, torso.at(side * fx, fy), (semi[0] * torso.bx, semi[1] * torso.by, LONG_MM))
            canvas.paint(muscle, scene.code("muscle"), "muscle")
    draw_spine(canvas, torso, fy=0.62)
    scene.free = canvas.organs["cavity"] & ~canvas.organs["muscle"] & ~canvas.organs["bone"]
    tangent = np.gradient(path, axis=0)
    back = np.column_stack([-tangent[:, 1], tangent[:, 0], np.zeros(len(path))])
    back /= np.maximum(np.linalg.norm(back, axis=1, keepdims=True), 1e-9)
    scene.claim(ellipsoid(grid, at([8, 23, 0]), (*mm(9.5, 9.5), LONG_MM)), "artery", "aorta", 1.0, over=True)
    scene.claim(ellipsoid(grid, at([-20, 21, 0]), (*mm(11, 8), LONG_MM)), "ivc", "ivc", 1.0, over=True)
    arteries = [([[8, 16, 26], [6, 6, 16], [5, 3, 2], [4, 3, -80]], 4.0, 3.0),
                ([[8, 16, 38], [7, 2, 37], [6, -6, 35]], 3.5, 1.0),
                ([[6, -6, 35], [-20, -9, 33], [-40, -4, 36]], 2.5, 1.0)]
    for points, radius, margin in arteries:
        scene.claim(tube(grid, at(points), mm(radius)), "artery", "artery", margin, over=True)
    body = np.arange(knots[4], len(path), 6)
    wiggle = np.sin(np.arange(body.size) * rng.uniform(0.8, 1.3)) * mm(3.0)
    top = path[body] + np.column_stack([np.zeros(body.size), wiggle, radii[body] + 3.0])
    splenic_artery = np.vstack([at([6, -6, 35]), top])
    scene.claim(tube(grid, splenic_artery, mm(2.5)), "artery", "artery", 1.0, over=True)
    for points in ([[40, 26, -6], [20, 14, -6], [7, 10.5, -6], [-14, 18, -6]], [[-36, 27, -10], [-24, 22, -10]]):
        scene.claim(tube(grid, at(points), mm(3.5)), "renal_vein", "vein", 1.0, over=True)
    neck = knots[3]
    confluence = path[neck] + back[neck] * (0.9 * radii[neck] + mm(4.0)) - [0.0, 0.0, 2.0]
    for offsets, radius in (([[0, 0, 0], [1, -1, -30], [2, -2, -90]], 5.5),  # SMV, then portal vein
                            ([[0, 0, 0], [-15, 0, 14], [-30, 2, 32]], 6.5)):
        scene.claim(tube(grid, confluence + at(offsets, move=(0, 0, 0)), mm(radius)), "vein", "vein", over=True)
    rim = path[neck::5] + back[neck::5] * (0.9 * radii[neck::5] + mm(2.5))[:, None]
    hilum = at([68 - 10 * np.cos(0.75), 30 - 10 * np.sin(0.75), 22])
    scene.claim(tube(grid, np.vstack([confluence, *rim, hilum]), mm(4.2)), "vein", "vein", over=True)


def _draw_tumours(scene: _Scene, rng: np.random.Generator, path: np.ndarray, radii: np.ndarray, kind: str,
                  knots: list[int], sizes: tuple[float, float] = TUMOUR_MM,
                  styler: Optional[np.random.Generator] = None) -> tuple[list[Region], list[dict], list[int]]:
    """1 (25 %: 2) tumours of ``sizes`` mm centred inside the pancreas (they may bulge into the fat around it),
    at least 3 mm apart; with a dilated duct the first one sits in the head or neck, where it blocks the duct.
    Each has its own tissue code: 75 % bright in the arterial phase (pancreas +40..90 HU) and nearly iso in the
    venous (+0..20), 25 % iso in the arterial (-10..10) and hypodense in the venous (-30..-50); ``styler``
    redraws the contrast (:func:`.randomise.tumour_contrast`). Returns the regions, records and path indices."""
    if "tumour" not in kind:
        return [], [], []
    grid, canvas = scene.grid, scene.canvas
    pancreas, taken = canvas.organs["pancreas"], np.zeros(grid.shape, bool)
    allowed = pancreas | scene.free
    regions, records, indices = [], [], []
    for number in range(1, 3 if rng.random() < 0.25 else 2):
        span = (knots[1], knots[4]) if "duct" in kind and number == 1 else (3, len(path) - 4)
        diameter, shape = float(rng.uniform(*sizes)), ("lobulated", "spheroid")[int(rng.integers(0, 2))]
        for _ in range(60):
            index = int(rng.integers(*span))
            offset = rng.normal(size=3)
            offset *= 0.35 * radii[index] * rng.random() / np.linalg.norm(offset)
            kji = np.rint(grid.index(path[index] + offset)).astype(int)[::-1]
            if np.any(kji < 0) or np.any(kji >= grid.shape) or not pancreas[tuple(kji)]:
                continue
            centre = (kji[::-1] - (np.array(grid.shape[::-1]) - 1) / 2) * grid.spacing
            blob = LESION_SHAPES[shape](grid, centre, diameter / 2, rng).within(allowed)
            parts, _ = ndimage.label(blob.mask, ndimage.generate_binary_structure(3, 2))
            region = Region(blob.box, parts == parts[tuple(kji - [s.start for s in blob.box])])
            near = _resized(grid, region, 3.0)
            if not taken[near.box][near.mask].any():
                break
        else:
            log.warning("pancreas phantom: no room for tumour %d", number)
            continue
        pancreas_a, pancreas_v = scene.values["pancreas"]
        if rng.random() < 0.75:
            phase, hu = "arterial", (pancreas_a + rng.uniform(40, 90), pancreas_v + rng.uniform(0, 20))
        else:
            phase, hu = "venous", (pancreas_a + rng.uniform(-10, 10), pancreas_v - rng.uniform(30, 50))
        contrast, phase, hu = tumour_contrast(styler, (pancreas_a, pancreas_v)) if styler else (None, phase, hu)
        scene.values[f"tumour{number}"] = hu = (float(hu[0]), float(hu[1]))
        canvas.paint(region, scene.code(f"tumour{number}"), "tumour")
        taken[region.box] |= region.mask
        where = np.argwhere(region.mask) + [s.start for s in region.box]
        regions.append(region)
        indices.append(index)
        records.append({
            "id": number, "centre_lps": grid.to_lps(centre)[0].round(3).tolist(), "diameter_mm": round(diameter, 2),
            "shape": shape, "hu_arterial": round(hu[0], 1), "hu_venous": round(hu[1], 1),
            "conspicuous_phase": phase, "volume_mm3": round(len(where) * float(np.prod(grid.spacing)), 3),
            "box_ijk": [where.min(axis=0)[::-1].tolist(), where.max(axis=0)[::-1].tolist()],
            **({"contrast": contrast} if contrast else {})})
    return regions, records, indices


def _draw_duct(scene: _Scene, rng: np.random.Generator, path: np.ndarray, start: Optional[int],
               diameter: float) -> dict:
    """Dilated main duct (0-20 HU in both phases) along the centreline inside the pancreas, out of the tumours,
    from path index ``start`` (the blocking tumour; None: the head) to near the tail tip; its ``info`` entry."""
    start = int(rng.uniform(0.1, 0.2) * len(path)) if start is None else start
    stop = int(rng.uniform(0.86, 0.94) * len(path))
    hu = float(rng.uniform(0.0, 20.0))
    scene.values["duct"] = (hu, hu)
    organs = scene.canvas.organs
    allowed = organs["pancreas"] & ~organs.get("tumour", np.zeros(scene.grid.shape, bool))
    scene.canvas.paint(tube(scene.grid, path[start:stop:2], diameter / 2).within(allowed), scene.code("duct"), "duct")
    return {"diameter_mm": round(diameter, 2), "hu": round(hu, 1)}


def _hollow(scene: _Scene, outer: Region, wall_mm: float, gas_y: float, organ: str) -> None:
    """Gut segment in the free space: a ``wall_mm`` enhancing wall around fluid, with gas anterior to grid-mm
    ``y = gas_y`` (-inf: no gas, +inf: all gas)."""
    outer = scene.claim(outer, "gut_wall", organ, margin_mm=1.0)
    inner = _resized(scene.grid, outer, -wall_mm)
    gas = inner.mask & (scene.grid.coords(inner.box)[1] < gas_y)
    scene.canvas.paint(Region(inner.box, inner.mask & ~gas), scene.code("fluid"))
    scene.canvas.paint(Region(inner.box, gas), HU["air"])


def _draw_viscera(scene: _Scene) -> None:
    """Kidneys (cortex, medulla, sinus fat), spleen, duodenum, stomach, gallbladder, colon and small bowel
    loops, and the liver (last, in what is left, with portal branches), all moving with the pancreas in z."""
    grid, at, mm, rng, organs = scene.grid, scene.at, scene.mm, scene.canvas.rng, scene.canvas.organs
    for side in (-1, 1):
        centre = at([side * 50, 33, -12 + 5 * (side > 0)])
        turn = Rotation.from_euler("z", side * 30, degrees=True).as_matrix()
        kidney = scene.claim(ellipsoid(grid, centre, (*mm(13, 19), 42), turn), "cortex", "kidney", 2.5)
        for tissue, inward, semi in (("medulla", (2, 1), (7, 11, 32)), ("fat", (9, 4), (5, 6, 18))):  # + sinus
            part = ellipsoid(grid, centre - [*mm(side * inward[0], inward[1]), 0], (*mm(*semi[:2]), semi[2]), turn)
            scene.claim(part.within(kidney.full(grid.shape)), tissue, over=True)
    spleen_turn = Rotation.from_euler("z", 43, degrees=True).as_matrix()
    scene.claim(ellipsoid(grid, at([68, 30, 22]), (*mm(14, 30), 48), spleen_turn), "spleen", "spleen", 2.0)
    duodenum = at([[-8, -38, 22], [-34, -30, 20], [-56, -14, 10], [-60, -4, -8], [-54, 4, -28], [-28, 10, -40],
                   [0, 9, -44], [22, 2, -36]], move=(1, 1, 1))
    _hollow(scene, tube(grid, duodenum, mm(9)), 2.0, duodenum[:, 1].mean() - mm(rng.uniform(0, 12)), "duodenum")
    stomach = at([30, -36, 28])
    turn = Rotation.from_euler("z", -20, degrees=True).as_matrix()
    _hollow(scene, ellipsoid(grid, stomach, (*mm(32, 17), 38), turn), 3.5, stomach[1] - mm(17) * rng.uniform(0.1, 0.6),
            "stomach")
    scene.claim(ellipsoid(grid, at([-46, -36, 2]), (*mm(11, 13), 25), random_rotation(rng)), "bile", "gallbladder")
    colon = at([[-62, 0, -70], [-64, -10, -20], [-55, -30, -8], [-30, -46, -16], [0, -50, -20], [30, -48, -14],
                [60, -28, 0], [68, 5, -10], [66, 10, -70]])
    _hollow(scene, tube(grid, colon, mm(12)), 2.0, colon[:, 1].max(), "colon")
    for _ in range(12):
        steps = [at([rng.uniform(-45, 45), rng.uniform(-45, 0), rng.uniform(-62, -20)])]
        for _ in range(6):
            steps.append(steps[-1] + rng.normal(size=3) * scene.scale * [16, 10, 6])
        gas = (-np.inf, np.inf, float(np.mean(np.array(steps)[:, 1])))[int(rng.integers(0, 3))]
        _hollow(scene, tube(grid, np.array(steps), mm(9)), 2.0, gas, "bowel")
    liver = union(grid, [ellipsoid(grid, at([-54, -8, 40]), (*mm(36, 48), 72)),
                         ellipsoid(grid, at([-8, -40, 46]), (*mm(30, 16), 34))])
    scene.claim(liver, "liver", "liver")
    if "liver" in organs:
        vessel_tree(scene.canvas, "liver", at([-40, -4, 36], move=(1, 1, 1)), n_vessels=6, length_mm=mm(55),
                    hu=scene.code("vein"), radius=(mm(3.0), mm(1.2)), outward=(-1.0, 0.0, 0.5))

