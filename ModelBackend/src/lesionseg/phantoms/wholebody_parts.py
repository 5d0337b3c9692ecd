"""Parts of the whole-body FDG-PET/CT phantom (:mod:`.wholebody`): arms, ureters, patchy bowel uptake, brown fat,
lesion sites and sizes, limb (sarcoma-like) lesions, lesion uptake (texture, necrotic cores), PET rendering.

Functions take the case being drawn (``body``, a :class:`lesionseg.phantoms.wholebody._Body`) and a random
generator; arrays are ``[k, j, i]``; lengths in reference mm (1.75 m body) unless they say grid mm.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
from scipy import ndimage

from .shapes import LESION_SHAPES, Grid, Region, blur_mm

if TYPE_CHECKING:
    from .wholebody import _Body

ARM = [(198, 5, 330), (212, 8, 470), (220, 10, 610), (220, 0, 720), (212, -15, 860), (205, -20, 1010)]
"""Reference path (x, y, s) of the left arm, shoulder to finger tips, and its outer radii below."""
ARM_RADII = [50, 45, 38, 36, 24, 20]
LESION_SITES = {"limb": 0.35, "node": 0.3, "liver": 0.13, "lung": 0.12, "bone": 0.1}
"""Odds of each lesion site: sarcoma-like limb lesion, lymph node (in a node station), liver, lung or bone-marrow
metastasis; a site is chosen among those whose :data:`SITE_MAX_MM` admits the lesion's diameter."""
DIAMETER_MM = (5.0, 150.0)
"""Lesion diameter range (log-uniform); a lesion that does not fit shrinks (to half at most)."""
SITE_MAX_MM = {"limb": 150.0, "node": 40.0, "liver": 100.0, "lung": 60.0, "bone": 45.0}
LIMBS = {"thigh_left": 0.33, "thigh_right": 0.33, "arm_left": 0.17, "arm_right": 0.17}
"""Odds of each limb for a limb lesion."""
SUV_MAX = (3.0, 22.0)
"""Range of a lesion's peak SUV before blur (log-uniform)."""
NECROSIS = (40.0, 0.75, (0.2, 0.7))
"""Lesions over ``[0]`` mm have a necrotic core with odds ``[1]``; its diameter is ``[2]`` of the lesion's."""
BONE_HU = 200.0
"""CT value above which a voxel counts as bone (limb lesions wrap around bone, never into it)."""


def smooth_field(rng: np.random.Generator, shape: tuple, spacing: np.ndarray, cell_mm: float) -> np.ndarray:
    """Smooth random ``shape`` ``(K, J, I)`` field scaled to 0..1: uniform noise on a lattice of about ``cell_mm``
    (``spacing`` is along ``(i, j, k)``), cubic-interpolated. Cheaper than blurring white noise of the box."""
    coarse = np.maximum(np.ceil(np.array(shape) * np.asarray(spacing)[::-1] / cell_mm).astype(int) + 1, 2)
    field = ndimage.zoom(rng.random(tuple(coarse)), np.array(shape) / coarse, order=3)
    field = np.pad(field, [(0, max(s - f, 0)) for s, f in zip(shape, field.shape)], mode="edge")
    field = field[tuple(slice(0, s) for s in shape)]
    return (field - field.min()) / max(float(np.ptp(field)), 1e-9)


def draw_arms(body: "_Body", rng: np.random.Generator, fat_mm: float) -> None:
    """Both arms hanging beside the trunk (randomly abducted, forearms forward): fat over muscle outside the trunk
    outline, humerus (cortex over yellow marrow), radius and ulna. Marks ``body.limbs["arm_<side>"]``."""
    path = np.asarray(ARM, float)
    reach = np.linspace(0.0, 1.0, len(path))
    path[:, 0] += rng.uniform(0.0, 30.0) * reach
    path[:, 1] -= rng.uniform(0.0, 40.0) * np.clip(2.0 * reach - 0.8, 0.0, None)
    radii = np.asarray(ARM_RADII, float) * rng.uniform(0.85, 1.15)
    trunk = body.limbs["trunk"]
    for side, name in ((1.0, "arm_left"), (-1.0, "arm_right")):
        arm = body.tube(path, radii, side).within(~trunk)
        body.limbs[name] = arm.full(trunk.shape)
        body.paint(arm, "fat")
        body.paint(body.tube(path, np.maximum(radii - fat_mm, 0.4 * radii), side).within(~trunk), "muscle")
        body.paint(body.ellipsoid((side * (path[0, 0] - 12), 12, path[0, 2] + 5), (24, 24, 26)), "cortical")
        body.pair(path[:3] - [8.0, 0.0, 0.0], ([13, 11, 14], [8, 6, 8]), ("cortical", "shaft"), None, side)
        for dy in (-10.0, 10.0):  # radius and ulna
            bone = path[2:5] + [0.0, dy, 0.0]
            body.pair(bone, ([9, 7, 8], [4, 3, 4]), ("cortical", "shaft"), None, side)


def draw_ureters(body: "_Body", rng: np.random.Generator) -> None:
    """Ureters from the renal pelves down the psoas to the bladder: thin tubes whose urine comes in boluses
    (patches at 20-100 % of the bladder's SUV, elsewhere the ``ureter`` tissue's own SUV)."""
    urine = body.values["urine"][1]
    for side in (-1.0, 1.0):
        s0 = 720.0 + (15.0 if side < 0 else 0.0)
        path = [(55, 45, s0), (50, 40, s0 + 40), (45, 32, 830), (58, 12, 880), (25, -20, 905)]
        region = body.paint(body.tube(path, 4.0, side), "ureter")
        if not region.mask.size:
            continue
        z = body.canvas.grid.coords(region.box)[2]
        knots = np.linspace(z.min() - 1.0, z.max() + 1.0, 8)
        bolus = (rng.random(8) < 0.45) * rng.uniform(0.2, 1.0, 8) * urine
        level = np.broadcast_to(np.interp(z, knots, bolus), region.mask.shape)
        hot = region.mask & (level > body.values["ureter"][1])
        body.suv[region.box][hot] = level[hot]


def patchy_bowel(body: "_Body", rng: np.random.Generator) -> None:
    """Patchy uptake of the bowel wall: the ``bowel`` tissue's SUV plus up to 0-5 more in smooth patches."""
    wall = body.mask("bowel") & (body.suv == body.values["bowel"][1])
    where = np.argwhere(wall)
    if not where.size:
        return
    box = tuple(slice(a, b + 1) for a, b in zip(where.min(axis=0), where.max(axis=0)))
    extra = rng.uniform(0.0, 5.0) * body.scale_suv
    field = smooth_field(rng, wall[box].shape, body.canvas.grid.spacing, 35.0) ** 2
    body.suv[box][wall[box]] += (extra * field)[wall[box]]


def brown_fat(body: "_Body", rng: np.random.Generator, odds: float = 0.15) -> bool:
    """With ``odds``, FDG-avid brown fat: the (subcutaneous or mediastinal) fat of the neck, supraclavicular
    fossae and paravertebral gutters gets SUV 2-10 (times the SUV scale) in smooth patches; the CT is unchanged. Returns whether it was drawn."""
    if rng.random() >= odds:
        return False
    peak = rng.uniform(2.0, 10.0) * body.scale_suv
    fat, mediastinal = body.values["fat"][1], body.values["mediastinum"][1]
    for side in (-1.0, 1.0):
        for region in (body.ellipsoid((side * 65, 5, 285), (60, 55, 55)),
                       body.tube([(30, 45, 330), (30, 45, 560)], 20, side)):
            if not region.mask.size:
                continue
            suv = body.suv[region.box]
            hot = region.mask & ((suv == fat) | (suv == mediastinal))
            field = smooth_field(rng, hot.shape, body.canvas.grid.spacing, 20.0)
            suv[hot] = np.maximum(fat, peak * field[hot])
    return True


def place_limb_lesion(body: "_Body", limb: str, diameter: float, hu: float, shape: str, rng: np.random.Generator,
                      gap_mm: float = 3.0, tries: int = 40) -> Optional[dict]:
    """A sarcoma-like lesion centred in the fat or muscle of ``limb`` (``arm_left``, ``thigh_right``...), on
    that side of the body and outside the trunk (arms) or below the groin (thighs); it wraps around bone
    (never enters it), may bulge out of the skin and, like the limb, may be cut by the first or last slice.
    The diameter shrinks by 5 % per failed try (to half).
    Returns the record (kind ``sarcoma``), or None when it does not fit."""
    canvas, grid = body.canvas, body.canvas.grid
    if limb not in body.limbs:
        return None
    candidates = np.flatnonzero(body.limbs[limb] & body.soft)
    if candidates.size == 0:
        return None
    gap = np.ceil(gap_mm / grid.spacing[::-1]).astype(int)
    eighteen = ndimage.generate_binary_structure(3, 2)
    for attempt in range(tries):
        d = diameter * max(0.95 ** attempt, 0.5)
        kji = np.array(np.unravel_index(rng.choice(candidates), grid.shape))
        centre = (kji[::-1] - (np.array(grid.shape[::-1]) - 1) / 2) * grid.spacing
        region = LESION_SHAPES[shape](grid, centre, d / 2, rng)
        if not region.mask.size or region.touches_border(grid.shape, (1, 2)):
            continue
        mask = region.mask & _territory(body, limb, region.box)
        local = tuple(kji - [s.start for s in region.box])
        if min(local) < 0 or np.any(np.array(local) >= mask.shape) or not mask[local]:
            continue
        parts, _ = ndimage.label(mask, eighteen)
        mask = parts == parts[local]
        near = tuple(slice(max(s.start - g, 0), s.stop + g) for s, g in zip(region.box, gap))
        if mask.sum() < 0.6 * region.mask.sum() or canvas.label[near].any():
            continue
        lesion = Region(region.box, mask)
        canvas.paint(lesion, hu)
        canvas.label[lesion.box][mask] = 1
        return canvas._record(lesion, centre, d, hu, "sarcoma", shape, limb)
    return None


def _territory(body: "_Body", limb: str, box: tuple) -> np.ndarray:
    """Where a lesion of ``limb`` may extend within ``box``: its side of the body, outside the trunk (arm) or
    below the groin (thigh), not in bladder or bowel, and one voxel clear of bone."""
    x, _, z = body.canvas.grid.coords(box)
    shape = tuple(s.stop - s.start for s in box)
    side = 1.0 if limb.endswith("left") else -1.0
    ok = np.broadcast_to(x * side > 0, shape).copy()
    if limb.startswith("thigh"):
        ok &= np.broadcast_to(z < body.top - 900.0 * body.scale[2], shape)
    else:
        ok &= ~body.limbs["trunk"][box]
    for organ in ("bladder", "bowel"):
        if organ in body.canvas.organs:
            ok &= ~body.canvas.organs[organ][box]
    return ok & ~ndimage.binary_dilation(body.canvas.hu[box] > BONE_HU, ndimage.generate_binary_structure(3, 1))


def lesion_uptake(body: "_Body", record: dict, suv_max: float, rng: np.random.Generator) -> None:
    """Paint the SUV of the lesion just placed (``record``): ``suv_max`` at its centre falling to 65 % at the rim,
    times a smooth texture (20-60 % deep dips, 6-15 mm patches). With :data:`NECROSIS` odds a large lesion gets
    an irregular necrotic core (SUV 0.4-1.2 times the case's SUV scale, 10-25 HU) that stays in the label.
    Adds ``suv_max_true``, ``necrotic`` and ``necrotic_fraction`` (core diameter / lesion diameter)."""
    canvas = body.canvas
    lo, hi = np.array(record["box_ijk"][0])[::-1], np.array(record["box_ijk"][1])[::-1]
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
    mask = canvas.label[box] == 1  # nothing else is labelled within a lesion's box when it is placed
    r = np.sqrt(sum((c - c[mask].mean()) ** 2 for c in np.broadcast_arrays(*canvas.grid.coords(box))))
    rn = r / (r[mask].max() + 0.5 * float(canvas.grid.spacing.min()))
    texture = smooth_field(rng, mask.shape, canvas.grid.spacing, float(rng.uniform(6.0, 15.0)))
    values = suv_max * (1.0 - 0.35 * rn ** 2) * (1.0 - rng.uniform(0.2, 0.6) * texture)
    limit, odds, fraction = NECROSIS
    necrotic, core_fraction = bool(record["diameter_mm"] > limit and rng.random() < odds), 0.0
    if necrotic:
        core_fraction = float(rng.uniform(*fraction))
        wobble = 0.3 * core_fraction * (smooth_field(rng, mask.shape, canvas.grid.spacing, 12.0) - 0.5)
        core = ndimage.binary_erosion(mask, iterations=2) & (rn + wobble < core_fraction)
        necrotic = bool(core.any())
        values[core] = rng.uniform(0.4, 1.2) * body.scale_suv * (0.8 + 0.4 * texture[core])
        canvas.hu[box][core] = float(rng.uniform(10.0, 25.0))
    body.suv[box][mask] = values[mask]
    record.update(suv_max_true=round(float(values[mask].max()), 4), necrotic=necrotic,
                  necrotic_fraction=round(core_fraction if necrotic else 0.0, 3))


def render_pet(suv: np.ndarray, grid: Grid, fwhm_mm: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Blur the ``(K, J, I)`` SUV map by the PSF, add noise of std ``noise * sqrt(SUV)`` correlated over about
    a voxel (white noise smoothed by a 0.7-voxel Gaussian, rescaled to unit variance), clip at 0, float32."""
    pet = blur_mm(suv, grid.spacing, fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0)))) if fwhm_mm > 0 else suv.copy()
    if noise > 0:
        correlated = ndimage.gaussian_filter(rng.standard_normal(pet.shape, dtype=np.float32), 0.7)
        correlated /= max(float(correlated.std()), 1e-12)
        pet = pet + noise * np.sqrt(np.clip(pet, 0.0, None)) * correlated
    return np.clip(pet, 0.0, None).astype(np.float32)


def place_lesion(body: "_Body", rng: np.random.Generator, stations: list) -> None:
    """One lesion: a diameter log-uniform in :data:`DIAMETER_MM`, a site among those admitting it with
    :data:`LESION_SITES` odds (up to three draws tried; nodes go to one of the ``stations``, organ names); its
    uptake by :func:`lesion_uptake` with a peak SUV log-uniform in :data:`SUV_MAX` (times the case's SUV scale).
    Soft-tissue lesions are 25-50 HU; bone metastases lytic (25-50 HU) or, 30 %, sclerotic (500-900 HU)."""
    canvas = body.canvas
    for _ in range(3):
        diameter = float(np.exp(rng.uniform(*np.log(DIAMETER_MM))))
        sites = [site for site in LESION_SITES if SITE_MAX_MM[site] >= diameter]
        odds = np.array([LESION_SITES[site] for site in sites])
        site = sites[int(rng.choice(len(sites), p=odds / odds.sum()))]
        hu = float(rng.uniform(500, 900) if site == "bone" and rng.random() < 0.3 else rng.uniform(25, 50))
        shape = "spheroid" if site == "node" else ("lobulated", "spheroid")[int(rng.integers(2))]
        if site == "limb":
            limb = list(LIMBS)[int(rng.choice(len(LIMBS), p=list(LIMBS.values())))]
            record = place_limb_lesion(body, limb, diameter, hu, shape, rng)
        else:
            organ = {"node": stations[int(rng.integers(len(stations)))], "liver": "liver",
                     "lung": ("lung_right", "lung_left")[int(rng.integers(2))], "bone": "marrow"}[site]
            record = canvas.place_lesion(organ, diameter, hu, "lymph_node" if site == "node" else "metastasis", shape)
        if record is not None:
            break
    else:
        return
    lesion_uptake(body, record, body.scale_suv * float(np.exp(rng.uniform(*np.log(SUV_MAX)))), rng)
