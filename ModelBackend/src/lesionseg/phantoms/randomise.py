"""Rendering of the coded pancreas phantom: the plain renderer and SynthSeg-style domain randomisation (#18).

:mod:`.pancreas` paints anatomy with *tissue codes* (``CODE_BASE - n`` for the n-th tissue of a case's table);
a renderer maps the codes to HU per phase and adds what a scanner adds. :func:`render_plain` is the original
renderer (half-voxel blur, white noise of a fixed sd). :func:`render_randomised` follows the idea of SynthSeg
(Billot et al., "SynthSeg: Segmentation of brain MRI scans of any contrast and resolution without retraining",
*Med Image Anal* 2023): every case gets its own contrast (:func:`tissue_values`: unenhanced HU plus a
randomised enhancement per phase), tissue texture, bias field, in-plane blur, slice thickness and noise
(:class:`RenderParams`), so a network cannot learn the phantom's one look. All of it is synthetic. Arrays are
``(K, J, I)``; spacing is ``(i, j, k)`` mm. Written here (not a library) because the codes, phases and HU
ranges are this phantom's own; the filters are :mod:`scipy.ndimage`'s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .shapes import blur_mm

STYLES = ("plain", "randomised")
"""Rendering styles of :func:`.pancreas.pancreas_ct`."""
CODE_BASE = -2000.0
"""Tissue codes are ``CODE_BASE - n`` (n: index into the case's tissue table), outside the CT range."""

UNENHANCED_HU = {"fat": (-100.0, 10.0), "muscle": (50.0, 8.0), "liver": (55.0, 8.0), "spleen": (45.0, 8.0),
                 "cortex": (35.0, 8.0), "medulla": (35.0, 8.0), "pancreas": (35.0, 12.0), "artery": (40.0, 8.0),
                 "vein": (40.0, 8.0), "ivc": (40.0, 8.0), "renal_vein": (40.0, 8.0), "gut_wall": (40.0, 8.0),
                 "fluid": (8.0, 4.0), "bile": (10.0, 4.0)}
"""(mean, sd) of each tissue's unenhanced HU (the pancreas sd is wide: fatty pancreases of older adults read
0-30 HU); its enhancement in a phase is the typical HU minus the mean."""

DOSE = (0.0, 1.5)
"""Per-case, per-phase factor on every tissue's enhancement (contrast timing and dose). It reaches 0 (an
unenhanced scan) on purpose: the one real abdominal CT here with a pancreas label, the TotalSegmentator example,
is unenhanced (aorta about 43 HU), and users do give S4C late or weak phases."""
ENHANCEMENT_JITTER = 0.15
"""Per-tissue, per-phase factor U(1 - j, 1 + j) on its enhancement."""
TEXTURE_HU, TEXTURE_MM = (0.0, 15.0), (2.0, 6.0)
BIAS_HU = (0.0, 25.0)
BLUR_MM, THICKNESS_MM = (0.3, 1.2), (0.6, 5.0)
NOISE_HU, NOISE_BLUR_VOXELS, NOISE_CORRELATED = (5.0, 30.0), (0.5, 1.0), 0.5
TUMOUR_CONTRASTS = {"hyper": 0.4, "venous-dark": 0.2, "hypo": 0.4}
"""Odds of each tumour contrast in randomised phantoms: arterial-bright, venous-dark, dark in both (PDAC-like)."""
RANDOMISED_TUMOUR_MM = (5.0, 40.0)
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class RenderParams:
    """Scanner and texture settings of one randomised case.

    ``blur_mm``: in-plane Gaussian sigma (mm); ``thickness_mm``: slice thickness, the FWHM of a Gaussian along z
    (the grid is kept); ``texture_mm``: correlation sigma of the tissue texture (mm); ``texture_hu``: texture
    sd of each tissue of the table plus a last entry for uncoded voxels (HU); ``bias_hu``: peak of the smooth
    additive bias field (HU); ``noise_hu``: noise sd (HU); ``noise_blur_voxels``: in-plane sigma (voxels) of
    the noise correlation, 0 for white noise.
    """

    blur_mm: float
    thickness_mm: float
    texture_mm: float
    texture_hu: tuple[float, ...]
    bias_hu: float
    noise_hu: float
    noise_blur_voxels: float

    @classmethod
    def draw(cls, rng: np.random.Generator, n_tissues: int) -> "RenderParams":
        """Settings drawn from the module's ranges for a table of ``n_tissues`` tissues."""
        correlated = rng.random() < NOISE_CORRELATED
        return cls(blur_mm=float(rng.uniform(*BLUR_MM)), thickness_mm=float(rng.uniform(*THICKNESS_MM)),
                   texture_mm=float(rng.uniform(*TEXTURE_MM)),
                   texture_hu=tuple(float(v) for v in rng.uniform(*TEXTURE_HU, n_tissues + 1)),
                   bias_hu=float(rng.uniform(*BIAS_HU)), noise_hu=float(rng.uniform(*NOISE_HU)),
                   noise_blur_voxels=float(rng.uniform(*NOISE_BLUR_VOXELS)) if correlated else 0.0)

    def record(self) -> dict:
        """JSON-ready copy, rounded to 0.01."""
        return {k: [round(x, 2) for x in v] if isinstance(v, tuple) else round(v, 2) for k, v in asdict(self).items()}


def tissue_values(rng: np.random.Generator, typical: Mapping[str, tuple[float, float]]
                  ) -> tuple[dict[str, tuple[float, float]], dict]:
    """Randomised ``{tissue: (arterial_hu, venous_hu)}`` for the tissues of ``typical`` (same order).

    A tissue's HU in a phase is its unenhanced HU (:data:`UNENHANCED_HU` mean + N(0, sd); tissues not listed
    there: 40 +- 8) plus its enhancement (``typical`` minus the unenhanced mean, >= 0) times the phase's dose
    factor U(:data:`DOSE`) times a tissue factor U(1 -+ :data:`ENHANCEMENT_JITTER`). Returns the table and a
    JSON-ready record of the dose factors.
    """
    dose = rng.uniform(*DOSE, 2)
    values = {}
    for name, pair in typical.items():
        mean, sd = UNENHANCED_HU.get(name, (40.0, 8.0))
        base = mean + rng.normal(0.0, sd)
        jitter = rng.uniform(1 - ENHANCEMENT_JITTER, 1 + ENHANCEMENT_JITTER, 2)
        values[name] = tuple(float(base + max(hu - mean, 0.0) * d * j) for hu, d, j in zip(pair, dose, jitter))
    return values, {"dose": [round(float(d), 3) for d in dose]}  # type: ignore[return-value]


def tumour_contrast(rng: np.random.Generator, pancreas: tuple[float, float]
                    ) -> tuple[str, str, tuple[float, float]]:
    """``(contrast, conspicuous_phase, (arterial_hu, venous_hu))`` of a tumour in a pancreas of the given HU,
    with the :data:`TUMOUR_CONTRASTS` odds: ``hyper`` (arterial +40..90, venous +0..20), ``venous-dark``
    (arterial -10..10, venous -30..-50) or ``hypo`` (20-80 HU below the pancreas in each phase, ``both``)."""
    pick = rng.random()
    a, v = pancreas
    if pick < TUMOUR_CONTRASTS["hyper"]:
        return "hyper", "arterial", (a + rng.uniform(40, 90), v + rng.uniform(0, 20))
    if pick < TUMOUR_CONTRASTS["hyper"] + TUMOUR_CONTRASTS["venous-dark"]:
        return "venous-dark", "venous", (a + rng.uniform(-10, 10), v - rng.uniform(30, 50))
    return "hypo", "both", (a - rng.uniform(20, 80), v - rng.uniform(20, 80))


def tumour_sizes(style: str, tumour_mm: Optional[Sequence[float]], plain_mm: tuple[float, float]
                 ) -> tuple[float, float]:
    """Validated ``(min, max)`` tumour diameter (mm): ``tumour_mm``, else ``plain_mm`` for the plain style and
    :data:`RANDOMISED_TUMOUR_MM` for the randomised one. Raises InputError for an unknown style or bad sizes."""
    if style not in STYLES:
        raise InputError(f"style must be one of {STYLES}, got {style!r}")
    sizes = np.asarray(plain_mm if tumour_mm is None and style == "plain" else
                       RANDOMISED_TUMOUR_MM if tumour_mm is None else tumour_mm, float)
    if sizes.shape != (2,) or not np.all(np.isfinite(sizes)) or not 0 < sizes[0] <= sizes[1]:
        raise InputError(f"tumour_mm must be (min, max) mm with 0 < min <= max, got {tumour_mm!r}")
    return float(sizes[0]), float(sizes[1])


def _table(hu: np.ndarray, values: Mapping[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coded voxels of ``hu`` (bool ``(K, J, I)``), their tissue indices and the ``(n, 2)`` float32 HU table."""
    coded = hu <= CODE_BASE + 0.5
    index = np.rint(CODE_BASE - hu[coded]).astype(np.intp)
    return coded, index, np.array(list(values.values()), np.float32).reshape(-1, 2)


def render_plain(hu: np.ndarray, values: Mapping[str, tuple[float, float]], spacing: Sequence[float],
                 rng: np.random.Generator, noise_hu: float) -> list[np.ndarray]:
    """Both phases as int16 HU ``(K, J, I)``: codes of ``hu`` mapped to the phase's HU in ``values``, blurred
    by half a voxel, independent Gaussian noise of ``noise_hu`` added (the original phantom)."""
    coded, index, table = _table(hu, values)
    phases = []
    for p in range(2):
        out = hu.copy()
        out[coded] = table[:, p][index]
        out = blur_mm(out, spacing, 0.5 * np.asarray(spacing))
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise_hu)
        phases.append(np.clip(np.rint(out), -1024, 3071).astype(np.int16))
    return phases


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: Sequence[float]) -> np.ndarray:
    """Gaussian noise ``(K, J, I)`` float32 low-passed by ``sigma_voxels`` (per k, j, i) and scaled to unit sd."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_voxels, mode="wrap")
    return field / np.float32(max(float(field.std()), 1e-6))


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], peak_hu: float) -> np.ndarray:
    """Smooth additive field ``(K, J, I)`` float32 of peak ``|peak_hu|``: three random plane waves of at most
    one period across the grid, summed."""
    axes = [np.linspace(-0.5, 0.5, n, dtype=np.float32) for n in shape]
    field = np.zeros(shape, np.float32)
    for _ in range(3):
        k = rng.uniform(-1.0, 1.0, 3) * np.pi * 2.0
        phase = np.float32(rng.uniform(0.0, 2 * np.pi))
        field += np.cos(phase + (k[0] * axes[0])[:, None, None] + (k[1] * axes[1])[None, :, None]
                        + (k[2] * axes[2])[None, None, :]).astype(np.float32)
    return field * np.float32(peak_hu / max(float(np.abs(field).max()), 1e-6))


def render_randomised(hu: np.ndarray, values: Mapping[str, tuple[float, float]], spacing: Sequence[float],
                      rng: np.random.Generator, params: RenderParams) -> list[np.ndarray]:
    """Both phases as int16 HU ``(K, J, I)`` with domain randomisation.

    Codes of ``hu`` map to ``values`` (uncoded voxels keep their HU); a tissue texture (one smooth field of
    sigma ``texture_mm``, scaled per tissue by ``texture_hu``, the same in both phases) and a bias field
    (:func:`bias_field`, the same in both phases) are added; each phase is blurred by ``blur_mm`` in-plane and
    by a Gaussian of FWHM ``thickness_mm`` along z, then gets its own noise of sd ``noise_hu`` (correlated
    in-plane when ``noise_blur_voxels`` > 0). ``spacing`` is ``(i, j, k)`` mm.
    """
    spacing = np.asarray(spacing, float)
    coded, index, table = _table(hu, values)
    texture_sd = np.asarray(params.texture_hu, np.float32)
    if texture_sd.size != len(table) + 1:
        raise ValueError(f"texture_hu needs {len(table) + 1} entries, got {texture_sd.size}")
    sd_map = np.full(hu.shape, texture_sd[-1], np.float32)
    sd_map[coded] = texture_sd[index]
    base = smooth_noise(rng, hu.shape, params.texture_mm / spacing[::-1]) * sd_map
    base += bias_field(rng, hu.shape, params.bias_hu)
    sigma_mm = (params.blur_mm, params.blur_mm, params.thickness_mm / FWHM_PER_SIGMA)
    phases = []
    for p in range(2):
        out = hu.copy()
        out[coded] = table[:, p][index]
        out = blur_mm(out + base, spacing, sigma_mm)
        if params.noise_blur_voxels > 0:
            noise = smooth_noise(rng, hu.shape, (0.0, params.noise_blur_voxels, params.noise_blur_voxels))
        else:
            noise = rng.standard_normal(hu.shape, dtype=np.float32)
        out += noise * np.float32(params.noise_hu)
        phases.append(np.clip(np.rint(out), -1024, 3071).astype(np.int16))
    return phases


def render(hu: np.ndarray, values: Mapping[str, tuple[float, float]], spacing: Sequence[float],
           noise: np.random.Generator, noise_hu: float, styler: Optional[np.random.Generator],
           record: dict) -> list[np.ndarray]:
    """Both phases of a coded canvas: :func:`render_plain` (``noise`` stream, ``noise_hu``) when ``styler`` is
    None, else :func:`render_randomised` with :class:`RenderParams` drawn from ``styler`` (added to ``record``)."""
    if styler is None:
        return render_plain(hu, values, spacing, noise, noise_hu)
    params = RenderParams.draw(styler, len(values))
    record.update(params.record())
    return render_randomised(hu, values, spacing, styler, params)
