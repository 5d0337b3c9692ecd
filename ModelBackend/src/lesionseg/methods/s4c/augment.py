"""Intensity augmentation of S4C training patches (issue #18): real CT differs from the phantoms in contrast,
noise and sharpness, so a patch may be perturbed in intensity as well as rotated and flipped
(:func:`.data.sample_patch`). No torch here."""
from __future__ import annotations

import numpy as np

from ...errors import InputError

HU_PER_UNIT = 400.0
"""HU per unit of the normalised input (the window -160..240 HU mapped to 0..1)."""
CONTRAST = (0.85, 1.15)
SHIFT = (-0.06, 0.06)
GAMMA = (0.8, 1.25)
GAMMA_PROB = 0.3
NOISE_SD = (0.0, 0.05)
BLUR_SIGMA = (0.3, 1.0)
BLUR_PROB = 0.25


def intensity_augment(img: np.ndarray, rng: np.random.Generator, hu_per_unit: float = HU_PER_UNIT) -> np.ndarray:
    """A randomly perturbed copy of a normalised patch (values 0..1 from an HU window; S4C's -160..240 HU makes
    one unit :data:`HU_PER_UNIT` = 400 HU, the default of ``hu_per_unit``; another window gives its width, e.g.
    600 for small-lesion-il's -200..400 HU, and the brightness shift and noise keep their sizes in HU).

    In this order:

    1. contrast: scaled by U(0.85, 1.15) about 0.5 (40 HU, the window's centre), so a 100 HU difference becomes
       85..115 HU;
    2. brightness: shifted by U(-0.06, 0.06), i.e. -24..+24 HU;
    3. gamma (probability 0.3): ``x ** g`` with g ~ U(0.8, 1.25) on the clipped values, a non-linear change of
       contrast that keeps -160 and 240 HU fixed;
    4. blur (probability 0.25): a Gaussian of sigma U(0.3, 1.0) working voxels on the three spatial axes (a
       softer reconstruction kernel or thicker slices);
    5. noise: Gaussian with standard deviation U(0, 0.05), i.e. 0..20 HU (a lower dose);

    then clipped to [0, 1]. The same draws in the same order every call, so a seeded ``rng`` gives the same
    result.

    Args:
        img: ``(D, H, W)`` or ``(C, D, H, W)`` float patch; the last three axes are spatial.
        rng: the random generator.
        hu_per_unit: HU per unit of ``img`` (the width of its window), > 0.
    Returns:
        float32 array of ``img``'s shape, values in [0, 1].
    """
    from scipy import ndimage

    if not hu_per_unit > 0:
        raise InputError(f"hu_per_unit must be > 0, got {hu_per_unit}")
    scale = HU_PER_UNIT / float(hu_per_unit)
    contrast, shift = rng.uniform(*CONTRAST), rng.uniform(*SHIFT) * scale
    use_gamma, gamma = rng.random() < GAMMA_PROB, rng.uniform(*GAMMA)
    use_blur, sigma = rng.random() < BLUR_PROB, rng.uniform(*BLUR_SIGMA)
    noise_sd = rng.uniform(*NOISE_SD) * scale
    out = np.asarray(img, np.float32)
    out = np.clip((out - 0.5) * np.float32(contrast) + np.float32(0.5 + shift), 0.0, 1.0)
    if use_gamma:
        out = out ** np.float32(gamma)
    if use_blur:
        sigmas = [0.0] * (out.ndim - 3) + [sigma] * min(out.ndim, 3)
        out = ndimage.gaussian_filter(out, sigmas, mode="nearest")
    out = out + rng.normal(0.0, noise_sd, out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
