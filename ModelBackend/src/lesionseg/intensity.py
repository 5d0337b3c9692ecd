"""What kind of image an array holds, from its values: CT in HU, or PET in SUV.

One place for these heuristics, used by every method that checks its input (TS-FCN warns, S4C refuses,
the PET/CT pair check detects swapped inputs). They read a regular sample of at most :data:`MAX_SAMPLE`
voxels, so they cost little on whole-body volumes. No torch, no SimpleITK.
"""
from __future__ import annotations

import numpy as np

CT_LOW_HU = -50.0
"""A CT holds at least 1 % of voxels below this (fat, lung, air); a PET in SUV, an MR or 0..1 data hold none."""
SUV_P999_RANGE = (0.05, 200.0)
"""Plausible 99.9th percentile of a PET in SUV; Bq/mL images sit at 1e3..1e6, a mis-scaled SUV below."""
MAX_SAMPLE = 2_000_000


def sample(array: np.ndarray) -> np.ndarray:
    """At most ~:data:`MAX_SAMPLE` voxels of ``array`` (a regular stride), float64, for value statistics."""
    flat = np.asarray(array).reshape(-1)
    return flat[:: max(1, flat.size // MAX_SAMPLE)].astype(np.float64)


def looks_like_ct(array: np.ndarray) -> bool:
    """True when the values look like CT in HU: at least 1 % of voxels below :data:`CT_LOW_HU`."""
    return bool(np.mean(sample(array) < CT_LOW_HU) >= 0.01)


def warn_unless_ct(image, method: str) -> None:
    """Warn (:class:`lesionseg.errors.LesionSegWarning`, at the caller's caller) when ``image`` does not look like
    a CT in HU: for methods trained on HU that still run on other images (the box methods)."""
    import warnings

    from .errors import LesionSegWarning

    array = np.asarray(image.array)
    if not looks_like_ct(array):
        warnings.warn(f"{method} expects a CT in Hounsfield units, but the intensities ({float(array.min()):g} .. "
                      f"{float(array.max()):g}) do not look like one; results may be meaningless",
                      LesionSegWarning, stacklevel=4)


def looks_like_pet(array: np.ndarray) -> bool:
    """True when the values look like a PET in SUV: (almost) no negative values and a 99.9th percentile in
    :data:`SUV_P999_RANGE` (Bq/mL PET and CT both fail)."""
    values = sample(array)
    p999 = float(np.percentile(values, 99.9))
    return bool(np.mean(values < -1.0) <= 0.001 and SUV_P999_RANGE[0] <= p999 <= SUV_P999_RANGE[1])
