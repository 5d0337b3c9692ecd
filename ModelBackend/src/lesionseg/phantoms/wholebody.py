"""Synthetic whole-body FDG-PET/CT (head to mid thigh, arms at the sides) with sarcoma-, node- and metastasis-like
lesions.

Everything is synthetic; no real data is used. The body is a seeded adult of 1.60-1.90 m, drawn in *reference mm*
for a 1.75 m body (``(x, y, s)``: x to the patient's left, y posterior, s measured down from the vertex) and
scaled per case by height (s) and girth (x, y); lesion sizes are absolute. The default grid, ``(K, J, I) =
(256, 64, 160)`` at 4 mm (the method's working resolution), is a 640 x 256 x 1024 mm field like an autoPET scan:
the vertex sits 8-30 mm below its top, the arms hang beside the trunk (humerus, radius and ulna in muscle and
fat) and the thighs leave it at the bottom. Each structure is painted once with a *tissue* (:data:`TISSUES`)
that sets both its CT value and its SUV, so PET and CT share one anatomy on one grid.

Drawn per case: physiological uptake (:data:`TISSUES`: brain grey matter SUV 5-14, myocardium 1-15 from no to
very high uptake, liver 1.5-3, kidneys 2.5-6 with renal pelves 5-30, bladder 10-60, ureters with patchy hot
boluses, bowel wall 1-2 plus patches up to 5 more, brown fat SUV 2-10 in 15 % of cases), a global SUV scale
0.7-1.4, the PSF (FWHM 4-9 mm) and the PET noise factor 0.08-0.3. Lesions (:mod:`.wholebody_parts`): diameters
5-150 mm log-uniform, in the limbs (thighs and arms, sarcoma-like, up to 150 mm), lymph-node stations (neck to
groin, up to 40 mm), liver (100 mm), lung (60 mm) and bone marrow (45 mm); a lesion that does not fit shrinks
(to half at most). Peak SUV 3-22 with a smooth heterogeneous texture; 75 % of lesions over 40 mm have an
irregular necrotic core (20-70 % of the diameter, SUV near background) that the label includes, as expert
GTVs do.

Anatomy, lesions, noise and acquisition (PSF, noise factor, SUV scale) use four random streams of the seed:
a seed gives the same body with or without lesions. Coordinates follow :mod:`.shapes` (grid mm); the parts
(arms, ureters, bowel and brown-fat uptake, limb lesions, lesion uptake, PET rendering) are in :mod:`.wholebody_parts`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..image import Image
from .shapes import Canvas, Grid, Region, ellipsoid, tube
from .torso import vessel_tree
from .wholebody_parts import brown_fat, draw_arms, draw_ureters, patchy_bowel, place_lesion, render_pet

WHOLEBODY_CENTRE_LPS = (0.0, 20.0, -512.0)
"""LPS position (mm) of the grid centre when no origin is given (vertex near z = 0, like many PET scanners)."""

LABELS = {"background": 0, "lesion": 1}
REFERENCE_HEIGHT_MM = 1750.0
SOFT = ("fat", "visceral_fat", "mediastinum", "muscle")
"""Tissues a lymph node may displace (node stations are restricted to them)."""

TISSUES = {
    "air": (-1000.0, (0.0, 0.0)), "fat": (-100.0, (0.25, 0.35)), "visceral_fat": (-90.0, (0.25, 0.35)),
    "mediastinum": (-70.0, (0.3, 0.4)), "muscle": (45.0, (0.6, 0.8)), "soft": (35.0, (0.7, 0.9)),
    "lung": (-850.0, (0.3, 0.5)), "blood": (45.0, (1.3, 1.8)), "cortical": (800.0, (0.4, 0.6)),
    "marrow": (350.0, (1.0, 1.5)), "shaft": (40.0, (0.5, 0.7)), "disc": (90.0, (0.5, 0.7)),
    "csf": (10.0, (0.2, 0.4)), "grey": (40.0, (5.0, 14.0)), "white": (30.0, (1.8, 4.5)),
    "myocardium": (45.0, (1.0, 15.0)), "liver": (60.0, (1.5, 3.0)), "spleen": (50.0, (1.4, 2.4)),
    "kidney": (35.0, (2.5, 6.0)), "renal_pelvis": (10.0, (5.0, 30.0)), "urine": (10.0, (10.0, 60.0)),
    "ureter": (20.0, (1.0, 2.0)),
    "bowel": (35.0, (1.0, 2.0)), "stomach": (40.0, (1.2, 2.0)), "gut_fluid": (10.0, (0.2, 0.5)),
    "gut_gas": (-950.0, (0.0, 0.1)), "thyroid": (90.0, (1.0, 1.8)), "gland": (35.0, (2.0, 3.5)),
}
"""Tissue: ``(HU, (SUV low, SUV high))``; each case draws each tissue's SUV from its range (log-uniform for
:data:`LOG_UNIFORM`, else uniform), then multiplies all SUVs by its global SUV scale."""
LOG_UNIFORM = {"myocardium", "renal_pelvis", "urine"}
SUV_SCALE = (0.7, 1.4)
FWHM_MM = (4.0, 9.0)
NOISE = (0.08, 0.3)
"""Per-case ranges (uniform) of the global SUV scale, the PSF's FWHM and the PET noise factor."""


TORSO = [(180, 0, 25, 52, 52), (265, 0, 25, 58, 55), (282, 0, 18, 85, 68), (302, 0, 10, 150, 95),
         (330, 0, 5, 185, 105), (360, 0, 0, 180, 112), (460, 0, 0, 170, 112), (560, 0, 0, 160, 108),
         (680, 0, 0, 150, 105), (770, 0, 5, 168, 105), (870, 0, 5, 180, 100), (935, 0, 5, 172, 95)]
"""Body outline knots ``(s, cx, cy, ax, ay)`` in reference mm, neck to crotch; the other sweeps likewise."""
THIGH = [(900, 88, 5, 85, 92), (1000, 92, 0, 78, 82), (1150, 95, 0, 68, 72), (1400, 95, 0, 58, 62)]
THORAX = [(300, 0, 10, 60, 50), (340, 0, 5, 135, 85), (460, 0, 5, 138, 88), (560, 0, 8, 132, 88),
          (600, 0, 25, 115, 70)]
ABDOMEN = [(570, 0, 0, 128, 85), (680, 0, -5, 125, 82), (780, 0, -5, 135, 80), (880, 0, -5, 120, 70),
           (945, 0, 0, 70, 55)]
LUNG = [(290, 45, 20, 14, 14), (320, 62, 12, 40, 45), (380, 76, 5, 56, 72), (460, 80, 5, 58, 80),
        (540, 84, 12, 55, 74), (585, 88, 35, 44, 48), (610, 90, 55, 28, 25)]
LIVER = [(545, -70, 0, 35, 40), (565, -60, -5, 95, 85), (610, -45, -5, 125, 92), (670, -55, 0, 105, 82),
         (720, -75, 0, 55, 50), (740, -85, 5, 25, 25)]
SPINE = np.array([(0, 25, 165), (0, 25, 290), (0, 40, 350), (0, 55, 450), (0, 50, 560), (0, 35, 680), (0, 30, 770)])
SPINE_RADII = np.array([10, 11, 14, 16, 18, 20, 22])
NODE_STATIONS = {
    "neck": ([(35, 0, 200), (45, 10, 290)], 16), "axilla": ([(125, 25, 320), (125, 25, 370)], 30),
    "mediastinum": ([(5, -15, 380), (5, -15, 480)], 35), "paraaortic": ([(0, 10, 640), (0, 10, 770)], 40),
    "iliac": ([(40, 18, 790), (75, 5, 880)], 20), "inguinal": ([(85, -55, 935), (85, -55, 965)], 25)}
"""Lymph-node stations: reference-mm path and radius of a tube, mirrored to both sides, kept to :data:`SOFT`."""


@dataclass
class _Body:
    """A case being drawn: canvas (HU, organs, label), SUV array, tissue values, reference-to-grid scale
    ``(x, y, s)``, the grid-mm z of the vertex and the global SUV scale; ``soft`` marks voxels last painted with a
    :data:`SOFT` tissue; ``limbs`` holds whole-grid masks of the trunk outline, arms and thighs."""

    canvas: Canvas
    values: dict
    scale: np.ndarray
    top: float
    scale_suv: float = 1.0
    limbs: dict = field(default_factory=dict)
    suv: np.ndarray = field(init=False)
    soft: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.suv = np.zeros(self.canvas.grid.shape, np.float32)
        self.soft = np.zeros(self.canvas.grid.shape, bool)

    def at(self, points: Sequence) -> np.ndarray:
        """Grid mm of ``(..., 3)`` reference points ``(x, y, s)``."""
        p = np.asarray(points, float)
        return np.stack([p[..., 0] * self.scale[0], p[..., 1] * self.scale[1], self.top - p[..., 2] * self.scale[2]],
                        axis=-1)

    def ellipsoid(self, centre: Sequence[float], semi: Sequence[float], turn: float = 0.0) -> Region:
        """Ellipsoid at reference ``centre`` with reference semi-axes, turned by ``turn`` rad about z."""
        rotation = Rotation.from_euler("z", turn).as_matrix() if turn else None
        return ellipsoid(self.canvas.grid, self.at(centre), np.asarray(semi, float) * self.scale, rotation)

    def tube(self, points: Sequence, radius: float | Sequence[float], side: float = 1.0) -> Region:
        """Tube along reference ``points`` (``side`` = -1 mirrors them) with reference radii scaled by the girth."""
        radius = np.asarray(radius, float) * np.sqrt(self.scale[0] * self.scale[1])
        return tube(self.canvas.grid, self.at(np.asarray(points, float) * [side, 1.0, 1.0]), radius)

    def sweep(self, knots: Sequence, grow: float = 0.0, side: float = 1.0) -> Region:
        """Elliptic cross-sections along z through ``(s, cx, cy, ax, ay)`` reference knots, linearly
        interpolated (nothing beyond the first and last knot); ``grow`` mm is added to both semi-axes
        (never below a quarter of them) and ``side`` = -1 mirrors the knots to the patient's right."""
        k = np.asarray(knots, float)
        semi = np.maximum(k[:, 3:5] + grow, 0.25 * k[:, 3:5]) * self.scale[:2]
        cx, cy, z = side * k[:, 1] * self.scale[0], k[:, 2] * self.scale[1], self.top - k[:, 0] * self.scale[2]
        lo = np.array([(cx - semi[:, 0]).min(), (cy - semi[:, 1]).min(), z.min()])
        hi = np.array([(cx + semi[:, 0]).max(), (cy + semi[:, 1]).max(), z.max()])
        box = self.canvas.grid.slices(lo, hi)
        if box is None:
            return Region((slice(0, 0),) * 3, np.zeros((0, 0, 0), bool))
        x, y, zz = self.canvas.grid.coords(box)
        order = np.argsort(z)
        pcx, pcy, pax, pay = (np.interp(zz, z[order], v[order]) for v in (cx, cy, semi[:, 0], semi[:, 1]))
        return Region(box, ((x - pcx) / pax) ** 2 + ((y - pcy) / pay) ** 2 <= 1.0)

    def paint(self, region: Region, tissue: str, organ: Optional[str] = None) -> Region:
        """Paint ``tissue`` (HU and SUV) in ``region``; move it from every other organ to ``organ`` (if any)."""
        if region.mask.size:
            hu, suv = self.values[tissue]
            self.canvas.remove_from_organs(region, keep=(organ,) if organ else ())
            self.canvas.paint(region, hu, organ)
            self.suv[region.box][region.mask] = suv
            self.soft[region.box][region.mask] = tissue in SOFT
        return region

    def pair(self, path: Sequence, radii: tuple, tissues: tuple[str, str], organ: Optional[str] = None,
             side: float = 1.0) -> None:
        """A tube of ``tissues[0]`` (radii ``radii[0]``) around one of ``tissues[1]`` (``radii[1]``, put in
        ``organ``): a bone with its marrow, an airway in its wall."""
        self.paint(self.tube(path, radii[0], side), tissues[0])
        self.paint(self.tube(path, radii[1], side), tissues[1], organ)

    def mask(self, *organs: str) -> np.ndarray:
        """Whole-grid bool union of the named organ masks."""
        out = np.zeros(self.canvas.grid.shape, bool)
        for name in organs:
            out |= self.canvas.organs.get(name, False)
        return out


def wholebody_petct(seed: int = 0, shape: Sequence[int] = (256, 64, 160), spacing: Sequence[float] = (4.0, 4.0, 4.0),
                    origin: Optional[Sequence[float]] = None, direction: Optional[np.ndarray] = None,
                    with_lesions: Optional[bool] = None, n_lesions: Optional[int] = None,
                    fwhm_mm: Optional[float] = None, noise: Optional[float] = None, noise_hu: float = 15.0,
                    suv_scale: Optional[float] = None) -> tuple[Image, Image, Image, dict]:
    """Seeded whole-body FDG-PET/CT phantom, head to mid thigh with arms, with 0-6 lesions.

    Args:
        seed: non-negative integer; the same arguments give identical arrays.
        shape: ``(K, J, I)`` voxels (J and I >= 32); the default covers 640 (i) x 256 (j) x 1024 (k) mm.
        spacing: voxel size along i, j, k in mm.
        origin: LPS mm of voxel (0, 0, 0); default puts the grid centre at :data:`WHOLEBODY_CENTRE_LPS`.
        direction: 3x3 direction cosines (columns = LPS directions of i, j, k); default identity.
        with_lesions: True: 1-6 lesions; False: none; None: decided by the seed (50 %) or by ``n_lesions``.
        n_lesions: number of lesions to place (0-20); one that finds no room is left out (logged).
        fwhm_mm: PET point-spread function, full width at half maximum (mm, Gaussian; 0 = none); None: drawn
            from :data:`FWHM_MM`.
        noise: PET noise factor ``a``: Gaussian noise of standard deviation ``a * sqrt(SUV)`` (Poisson-like),
            correlated over about a voxel, is added after the blur; the result is clipped at 0. None: drawn
            from :data:`NOISE`.
        noise_hu: standard deviation of the CT's Gaussian noise (HU), added after a half-voxel blur.
        suv_scale: factor on every SUV (tissues and lesions); None: drawn from :data:`SUV_SCALE`.

    Returns:
        ``(pet, ct, label, info)`` on one grid: ``pet`` float32 SUVbw (before the SUV scale: brain grey matter
        5-14, myocardium 1-15, liver 1.5-3, kidneys 2.5-6, bladder 10-60, blood 1.3-1.8, muscle 0.6-0.8, fat 0.3,
        lung 0.4, bowel 1-7, lesions 3-22 before blur, necrotic cores 0.4-1.2); ``ct`` int16 HU (lungs -850,
        fat -100, soft tissue 30-60, bone 350-800); ``label`` uint8, 1 = lesion (each lesion one 18-connected
        component including any necrotic core, at least one voxel apart from the others); ``info``: phantom,
        seed, shape, spacing, origin, direction, labels, height_mm, fwhm_mm, noise, suv_scale, brown_fat,
        tissues (HU and scaled SUV of this case), ``positive`` and ``lesions``: id, kind (``sarcoma``/``lymph_node``/
        ``metastasis``), organ (``thigh_left``, ``arm_right``..., ``node_<station>``, ``liver``,
        ``lung_left``/``_right``, ``marrow``), shape, centre_lps (a voxel centre inside it), box_lps, box_ijk
        ``[[i0, j0, k0], [i1, j1, k1]]`` (inclusive), diameter_mm, hu, volume_ml, suv_max_true (highest SUV
        painted before blur and noise), necrotic, necrotic_fraction (core / lesion diameter, 0 if none).

    Raises:
        InputError: bad seed, grid, counts, FWHM, noise or SUV scale, or ``with_lesions`` contradicting
            ``n_lesions``.
    """
    _check_arguments(seed, with_lesions, n_lesions, fwhm_mm, noise, noise_hu, suv_scale)
    grid = Grid.create(shape, spacing, WHOLEBODY_CENTRE_LPS, origin, direction)
    anatomy, lesions, noise_rng, acquisition = (np.random.default_rng([int(seed), stream]) for stream in range(4))
    drawn = acquisition.uniform(*FWHM_MM), acquisition.uniform(*NOISE), acquisition.uniform(*SUV_SCALE)
    fwhm_mm, noise, suv_scale = (float(drawn[n] if given is None else given)
                                 for n, given in enumerate((fwhm_mm, noise, suv_scale)))
    positive, count = bool(lesions.random() < 0.5), int(lesions.integers(1, 7))
    if n_lesions is not None or not (positive if with_lesions is None else with_lesions):
        count = int(n_lesions or 0)
    height = float(anatomy.uniform(1600.0, 1900.0))
    girth = anatomy.uniform(0.9, 1.05) * anatomy.uniform(0.95, 1.05, size=2)
    values = {name: (hu, suv_scale * float(np.exp(anatomy.uniform(*np.log(suv))) if name in LOG_UNIFORM
                                          else anatomy.uniform(*suv))) for name, (hu, suv) in TISSUES.items()}
    top = grid.half_mm[2] - float(anatomy.uniform(8.0, 30.0))
    body = _Body(Canvas(grid, anatomy), values, np.array([*girth, height / REFERENCE_HEIGHT_MM]), top, suv_scale)
    fat_mm = float(anatomy.uniform(8.0, 25.0))
    _draw_outline(body, fat_mm)
    draw_arms(body, anatomy, 0.8 * fat_mm)
    _draw_chest(body)
    _draw_abdomen(body)
    _draw_bones(body)
    draw_ureters(body, anatomy)
    patchy_bowel(body, anatomy)
    active_fat = brown_fat(body, anatomy)
    for name, (path, radius) in NODE_STATIONS.items():
        both = body.tube(path, radius).full(grid.shape) | body.tube(path, radius, -1.0).full(grid.shape)
        body.canvas.organs[f"node_{name}"] = both & body.soft
    body.canvas.rng = lesions
    for _ in range(count):
        place_lesion(body, lesions, [f"node_{name}" for name in NODE_STATIONS])
    body.canvas.rng = noise_rng
    ct, label, info = body.canvas.finish("wholebody_petct", int(seed), dict(LABELS), 0.5 * grid.spacing, noise_hu)
    pet = render_pet(body.suv, grid, fwhm_mm, noise, noise_rng)
    info.update(height_mm=round(height, 1), fwhm_mm=fwhm_mm, noise=noise, suv_scale=suv_scale, brown_fat=active_fat,
                tissues={name: {"hu": hu, "suv": round(suv, 3)} for name, (hu, suv) in values.items()},
                positive=bool(info["lesions"]))
    return (grid.image(pet, units="SUV", modality="PT", phantom="wholebody_petct"),
            grid.image(ct.array, units="HU", modality="CT", phantom="wholebody_petct"), label, info)


def wholebody_cohort(n_cases: int, seed: int = 0) -> list[dict]:
    """Deterministic case specifications ``[{"case": "wb_000", "seed": int, "with_lesions": bool}, ...]``:
    ``ceil(n_cases / 2)`` cases with lesions, the rest without, shuffled with ``seed``; each case has its own
    seed derived from ``(seed, index)``. Pass a spec's seed and with_lesions to :func:`wholebody_petct`."""
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise InputError(f"n_cases must be a positive integer, got {n_cases!r}")
    _check_arguments(seed, None, None, 0.0, 0.0, 0.0, 1.0)
    positive = (np.arange(n_cases) < (n_cases + 1) // 2)[np.random.default_rng(seed).permutation(n_cases)]
    width = max(3, len(str(n_cases - 1)))
    return [{"case": f"wb_{i:0{width}d}", "seed": int(np.random.SeedSequence([seed, i]).generate_state(1)[0]),
             "with_lesions": bool(positive[i])} for i in range(n_cases)]


def _check_arguments(seed, with_lesions, n_lesions, fwhm_mm, noise, noise_hu, suv_scale) -> None:
    """:class:`InputError` unless the arguments of :func:`wholebody_petct` are usable."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if with_lesions is not None and not isinstance(with_lesions, (bool, np.bool_)):
        raise InputError(f"with_lesions must be True, False or None, got {with_lesions!r}")
    if n_lesions is not None and (isinstance(n_lesions, bool) or not isinstance(n_lesions, (int, np.integer))
                                  or not 0 <= n_lesions <= 20):
        raise InputError(f"n_lesions must be an integer 0..20, got {n_lesions!r}")
    if with_lesions is not None and n_lesions is not None and bool(with_lesions) != (n_lesions > 0):
        raise InputError(f"with_lesions={with_lesions} contradicts n_lesions={n_lesions}")
    if suv_scale is not None and (isinstance(suv_scale, bool) or not isinstance(suv_scale, (int, float, np.number))
                                  or not np.isfinite(suv_scale) or suv_scale <= 0):
        raise InputError(f"suv_scale must be a finite number > 0, got {suv_scale!r}")
    for name, value in (("fwhm_mm", fwhm_mm), ("noise", noise), ("noise_hu", noise_hu)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) \
                or value < 0:
            raise InputError(f"{name} must be a finite number >= 0, got {value!r}")


def _draw_outline(body: _Body, fat_mm: float) -> None:
    """Subcutaneous fat of ``fat_mm`` over muscle in trunk and thighs, head and face of soft tissue, then the
    thoracic (mediastinal fat, organ ``thorax``) and abdominal (visceral fat, ``abdomen``) cavities."""
    for knots, sides in ((TORSO, (1.0,)), (THIGH, (-1.0, 1.0))):
        for side in sides:
            outline = body.paint(body.sweep(knots, 0.0, side), "fat")
            body.paint(body.sweep(knots, -fat_mm, side), "muscle")
            mask = outline.full(body.canvas.grid.shape)
            if knots is THIGH:  # below the groin
                z = body.canvas.grid.coords((slice(0, mask.shape[0]),) * 3)[2]
                mask &= z < body.top - 900.0 * body.scale[2]
            body.limbs["trunk" if knots is TORSO else ("thigh_left" if side > 0 else "thigh_right")] = mask
    body.paint(body.ellipsoid((0, 10, 95), (76, 96, 95)), "soft")
    body.paint(body.ellipsoid((0, -20, 180), (58, 70, 55)), "soft")
    body.paint(body.sweep(THORAX), "mediastinum", "thorax")
    body.paint(body.sweep(ABDOMEN), "visceral_fat", "abdomen")


def _draw_chest(body: _Body) -> None:
    """Lungs (under diaphragm domes) with vessels, airways, heart, great vessels, thyroid, parotid glands."""
    thorax = body.canvas.organs["thorax"].copy()
    for side, name in ((-1.0, "lung_right"), (1.0, "lung_left")):
        dome = body.ellipsoid((side * 65, -10, 640 + 12 * side), (75, 130, 80))
        thorax[dome.box] &= ~dome.mask
        body.paint(body.sweep(LUNG, 0.0, side).within(thorax), "lung", name)
        body.pair([(0, 0, 420), (40, 10, 470), (60, 15, 500)], ([7, 5, 3], [5, 3, 1.5]), ("soft", "air"), None, side)
    body.pair([(0, -25, 200), (0, -10, 300), (0, 0, 420)], (11, 8), ("soft", "air"))
    body.paint(body.ellipsoid((18, -35, 480), (62, 52, 58), turn=-0.4), "myocardium", "heart")
    body.paint(body.ellipsoid((14, -32, 478), (48, 38, 45), turn=-0.4), "blood")
    vessels = [([(8, -30, 440), (5, -25, 380), (10, 0, 355), (25, 30, 375), (28, 35, 450), (20, 25, 560),
                 (10, 5, 680), (5, 0, 760)], [13, 14, 13, 12, 11, 10, 9, 8], (1.0,)),  # aorta
               ([(0, 8, 805), (-25, 5, 760), (-25, 0, 650), (-22, -5, 560), (-15, -20, 510)], 11, (1.0,)),  # IVC
               ([(5, 0, 760), (45, 5, 830), (75, 0, 890), (85, -25, 960), (88, -20, 1300)], 6, (-1.0, 1.0)),
               ([(0, 8, 805), (40, 12, 830), (70, 8, 890), (78, -25, 960), (80, -15, 1300)], 7, (-1.0, 1.0)),
               ([(12, -10, 360), (25, -5, 280), (28, 0, 190)], 4, (-1.0, 1.0)),  # carotid arteries
               ([(20, -15, 340), (38, 0, 280), (40, 10, 190)], 5, (-1.0, 1.0))]  # jugular veins
    for path, radius, sides in vessels:
        for side in sides:
            body.paint(body.tube(path, radius, side), "blood", "vessel")
    for side in (-1.0, 1.0):  # thyroid lobes, parotid glands
        body.paint(body.ellipsoid((side * 18, -28, 270), (9, 9, 20)), "thyroid")
        body.paint(body.ellipsoid((side * 48, 10, 175), (14, 18, 22)), "gland")
    blood_hu = body.values["blood"][0]
    for name, side in (("lung_right", -1.0), ("lung_left", 1.0)):
        for s in (420.0, 500.0):
            vessel_tree(body.canvas, name, body.at((side * 30, 5, s)), n_vessels=6, length_mm=90.0, hu=blood_hu,
                        radius=(3.0, 1.0), outward=(side * 1.2, 0.0, 0.0))
        body.suv[body.canvas.organs[name] & (body.canvas.hu == blood_hu)] = body.values["blood"][1]


def _draw_abdomen(body: _Body) -> None:
    """Bowel (colon frame, small-bowel loops), stomach, liver, spleen, kidneys, psoas muscles, bladder."""
    rng = body.canvas.rng
    cavity = body.mask("thorax", "abdomen") & ~body.mask("lung_left", "lung_right", "heart", "vessel")
    loops = [[(-85, 20, 880), (-95, 0, 760), (-90, -20, 690), (-40, -60, 680), (40, -60, 680), (95, -10, 680),
              (100, 20, 760), (90, 30, 860), (40, 55, 900), (5, 65, 940)]]  # the colon
    for _ in range(5):
        start = np.array([rng.uniform(-60, 60), rng.uniform(-60, 10), rng.uniform(700, 860)])
        loops.append(np.cumsum(np.vstack([start, rng.normal(size=(6, 3)) * [35, 20, 30]]), axis=0))
    for number, path in enumerate(loops):
        radius, gas = (18, rng.random() < 0.7) if number == 0 else (13, rng.random() < 0.3)
        body.paint(body.tube(path, radius).within(cavity), "bowel", "bowel")
        body.paint(body.tube(path, radius - 6).within(cavity), "gut_gas" if gas else "gut_fluid", "bowel")
    body.paint(body.ellipsoid((50, -35, 610), (50, 40, 55)).within(cavity), "stomach", "bowel")
    content = "gut_gas" if rng.random() < 0.5 else "gut_fluid"
    body.paint(body.ellipsoid((50, -35, 612), (40, 30, 45)).within(cavity), content, "bowel")
    body.paint(body.sweep(LIVER).within(cavity), "liver", "liver")
    body.paint(body.ellipsoid((92, 50, 620), (32, 48, 55)).within(cavity), "spleen", "spleen")
    for side in (-1.0, 1.0):
        s = 705 + (15 if side < 0 else 0)
        body.paint(body.ellipsoid((side * 68, 50, s), (30, 28, 55), turn=side * 0.35), "kidney", "kidney")
        body.paint(body.ellipsoid((side * 55, 45, s), (12, 12, 18)), "renal_pelvis", "kidney")
        body.paint(body.tube([(32, 40, 650), (45, 35, 780), (65, 15, 880)], [12, 20, 22], side), "muscle")
    fill = rng.uniform(0.6, 1.15)
    body.paint(body.ellipsoid((0, -35, 905), (45 * fill, 38 * fill, 33 * fill)), "urine", "bladder")


def _draw_bones(body: _Body) -> None:
    """Skull and brain, mandible, spine with discs, canal and spinous processes, sacrum, ribs, sternum,
    clavicles, scapulae, pelvis and femurs. Red marrow (spine, sternum, pelvis, femoral heads): organ ``marrow``."""
    body.paint(body.ellipsoid((0, 10, 85), (70, 90, 80)), "cortical")
    body.paint(body.ellipsoid((0, 10, 85), (62, 82, 72)), "grey")
    body.paint(body.ellipsoid((0, 12, 88), (52, 72, 62)), "white")
    for side in (-1.0, 1.0):
        body.paint(body.ellipsoid((side * 20, 5, 100), (12, 20, 15)), "grey")
        body.paint(body.ellipsoid((side * 9, 10, 85), (5, 25, 12)), "csf")
    body.paint(body.ellipsoid((0, 50, 150), (42, 28, 20)), "grey")
    body.paint(body.tube([(-50, 0, 175), (-45, -45, 205), (0, -62, 212), (45, -45, 205), (50, 0, 175)], 5), "cortical")
    body.pair(SPINE, (SPINE_RADII, SPINE_RADII - 3.5), ("cortical", "marrow"), "marrow")
    body.paint(body.tube(SPINE + np.outer(SPINE_RADII + 6, [0, 1, 0]), 6), "csf")
    column = body.mask("marrow")
    for s in np.arange(195.0, 770.0, 30.0):
        y, r = np.interp(s, SPINE[:, 2], SPINE[:, 1]), np.interp(s, SPINE[:, 2], SPINE_RADII)
        body.paint(body.ellipsoid((0, y, s), (r, r, 3)).within(column), "disc")
        body.paint(body.tube([(0, y + r + 12, s - 5), (0, y + r + 30, s + 8)], 4), "cortical")
    body.pair([(0, 30, 770), (0, 50, 830), (0, 75, 900)], ([24, 22, 12], [19, 17, 8]), ("cortical", "marrow"), "marrow")
    thorax = np.asarray(THORAX, float)
    phi = np.linspace(0.42 * np.pi, -0.35 * np.pi, 9)
    for s0 in np.linspace(330.0, 600.0, 12):  # ribs: arcs from the spine, falling towards the front
        cy, ax, ay = (np.interp(s0, thorax[:, 0], thorax[:, c]) + 6 * (c > 2) for c in (2, 3, 4))
        path = np.column_stack([ax * np.cos(phi), cy + ay * np.sin(phi), s0 + 12 * (0.42 * np.pi - phi)])
        for side in (-1.0, 1.0):
            body.paint(body.tube(path, 4, side), "cortical")
    body.pair([(0, -92, 335), (0, -97, 420), (0, -92, 500)], (9, 5), ("cortical", "marrow"), "marrow")
    for side in (-1.0, 1.0):
        body.paint(body.tube([(15, -85, 320), (90, -70, 310), (160, -30, 305)], 6, side), "cortical")
        body.paint(body.ellipsoid((side * 100, 75, 400), (45, 6, 70), turn=-side * 0.35), "cortical")
        turn = float(np.arctan2(-80.0, side * 85.0))  # the iliac wing runs from the sacrum to the front
        body.paint(body.ellipsoid((side * 88, 20, 790), (60, 10, 50), turn), "cortical")
        body.paint(body.ellipsoid((side * 88, 20, 790), (52, 6, 42), turn), "marrow", "marrow")
        for path, radius in (([(88, 5, 895), (40, -45, 915), (10, -55, 920)], 10),
                             ([(88, 5, 895), (70, 35, 950), (50, 40, 970)], 10),
                             ([(88, 5, 895), (120, 10, 915), (118, 10, 960), (100, 0, 1150), (95, 0, 1400)], 15)):
            body.paint(body.tube(path, radius, side), "cortical")
        body.paint(body.tube([(118, 10, 960), (100, 0, 1150), (95, 0, 1400)], 9, side), "shaft")
        body.paint(body.ellipsoid((side * 88, 5, 895), (24, 24, 24)), "cortical")
        body.paint(body.ellipsoid((side * 88, 5, 895), (19, 19, 19)), "marrow", "marrow")
