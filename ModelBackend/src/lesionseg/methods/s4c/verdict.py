"""What an S4C verdict rests on (issue #18): the three verdicts, and the checks a phase must pass before its
screen may be called positive or negative.

A screen can only be negative where it has looked at a pancreas, and a "tumour" the network draws where no
plausible pancreas is in view is no finding either: a chest or limb CT must come back neither negative nor
positive. So besides the paper's rule (:mod:`.rules`), each phase is checked, and a phase that fails any
check is **inconclusive**, whatever the rule says (a finding the rule would have reported is kept in the
reasons, marked as set aside). The checks, each giving one plain-English reason:

* **No pancreas in view**: the segmented pancreas (every organ label: pancreas, tumour and duct) holds less
  than the rule's ``pancreas_min_mm3`` (5 mL): an all-air image, a chest or limb CT, a failed segmentation.
* **A pancreas volume outside plausible adult limits** (:data:`ADULT_PANCREAS_MM3`, the rule's
  ``pancreas_adult_min_mm3`` / ``pancreas_adult_max_mm3``): smaller, the gland is partly out of the field of
  view or under-segmented; larger, the segmentation has spilled into other organs.
* **Not an abdominal scan** (:func:`abdomen_problem`): at the axial levels of the segmented pancreas, air
  inside the body outline (lungs) fills more than :data:`MAX_AIR_FRACTION` of the body cross-section: what
  was segmented lies in the chest.

A phase that fails its checks leaves the case incomplete: the case is positive when any phase is positive,
else inconclusive when any phase is, else negative (:func:`.rules.fuse_verdicts`).

**Not CT in HU** stays an error, not a verdict: the segmenter refuses an image that does not look like CT in
Hounsfield units (:func:`lesionseg.intensity.looks_like_ct`) with an :class:`~lesionseg.errors.InputError`, so
``lesionseg screen`` exits with status 2 and writes nothing, as it did before verdicts could be inconclusive.

The report (``report.json``) carries ``"verdict"`` (:data:`VERDICTS`), ``"positive"`` (:func:`positive_of`:
true, false, or null when inconclusive) and ``"reasons"``. No torch, no SimpleITK.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...image import Image

POSITIVE, NEGATIVE, INCONCLUSIVE = "positive", "negative", "inconclusive"
VERDICTS = (POSITIVE, NEGATIVE, INCONCLUSIVE)
"""The values of a phase's and a case's ``verdict`` (reports written before issue #18 used upper case)."""

NO_PANCREAS_MM3 = 5000.0
"""Default of the rule's ``pancreas_min_mm3``: below 5 mL of segmented pancreas, no pancreas is in view. It is
far below any adult gland (:data:`ADULT_PANCREAS_MM3`) and flags an image where nothing was found."""

ADULT_PANCREAS_MM3 = (15_000.0, 250_000.0)
"""Plausible adult pancreas volume (mm^3; defaults of the rule's ``pancreas_adult_min_mm3`` and
``pancreas_adult_max_mm3``): 15 mL to 250 mL, chosen generously wide of what CT volumetry reports.

Sources: Saisho et al., "Pancreas volumes in humans from birth to age one hundred taking into account sex,
obesity, and presence of type-2 diabetes", Clin Anat 2007;20(8):933-942 (CT of 1,886 adults without pancreatic
disease): the total volume plateaus at about 72 mL (SD about 26 mL) from 20 to 60 years, declines after, and is
about a third larger with obesity. "Normal pancreatic volume in adults is influenced by visceral fat, vertebral
body width and age", Abdom Radiol 2019;44(3):958-966, doi:10.1007/s00261-018-1793-8 (CT of 204 adults): mean about 78 mL, smallest about
19 mL, largest about 140 mL. 15 mL lies below the smallest gland of that cohort (about 2 SD below Saisho's
mean); 250 mL is nearly twice its largest, room for an obese patient, an enlarged or tumour-bearing gland."""

BODY_HU = -500.0
"""Body outline threshold (HU): soft tissue, fat and bone lie above it, air and lung below."""

MAX_AIR_FRACTION = 0.25
"""Most air (below :data:`BODY_HU`) the body cross-section may hold at the pancreas's axial levels
(:func:`air_fraction_at_pancreas`). Measured: 0.03-0.04 at the pancreas of the two real abdominal CTs of
TotalSegmentator's examples (bowel gas; up to 0.13 on their most cranial slices, the lung bases), 0.04-0.05 in
the synthetic phantoms; 0.35-0.45 on the middle slices of a real chest CT (Lung-PET-CT-Dx), and 0.27 where the
network drew its scattered 1.6 mL of "pancreas" there."""


def as_verdict(value: Any) -> str:
    """``value`` as one of :data:`VERDICTS` (case-insensitive: reports before issue #18 wrote upper case).

    Raises:
        InputError: not a verdict.
    """
    verdict = str(value).lower()
    if verdict not in VERDICTS:
        raise InputError(f"unknown verdict {value!r}; a verdict is one of {', '.join(VERDICTS)}")
    return verdict


def positive_of(verdict: str) -> Optional[bool]:
    """The report's ``positive``: True for positive, False for negative, None for inconclusive (unknown)."""
    verdict = as_verdict(verdict)
    return None if verdict == INCONCLUSIVE else verdict == POSITIVE


def volume_problems(pancreas_mm3: float, phase: str, rule: Any) -> list[str]:
    """The pancreas-volume checks of one phase: no pancreas in view, or a volume outside plausible adult limits.

    Args:
        pancreas_mm3: segmented pancreas volume, all organ labels (pancreas, tumour, duct), mm^3.
        rule: a :class:`.rules.ScreeningRule` (``pancreas_min_mm3``, ``pancreas_adult_min_mm3``,
            ``pancreas_adult_max_mm3``).
    Returns:
        at most one reason.
    """
    ml = pancreas_mm3 / 1000.0
    cited = "the adult mean is about 72 mL, Saisho et al., Clin Anat 2007"
    if pancreas_mm3 < rule.pancreas_min_mm3:
        return [f"no pancreas in view ({phase} phase: {ml:.1f} mL segmented, under {rule.pancreas_min_mm3 / 1000:g} "
                "mL): is this an abdominal CT covering the pancreas?"]
    if pancreas_mm3 < rule.pancreas_adult_min_mm3:
        return [f"pancreas smaller than a plausible adult one ({phase} phase: {ml:.1f} mL segmented, under "
                f"{rule.pancreas_adult_min_mm3 / 1000:g} mL; {cited}): partly out of view or not fully segmented"]
    if pancreas_mm3 > rule.pancreas_adult_max_mm3:
        return [f"pancreas larger than a plausible adult one ({phase} phase: {ml:.1f} mL segmented, over "
                f"{rule.pancreas_adult_max_mm3 / 1000:g} mL; {cited}): the segmentation spilled into other organs"]
    return []


def axial_axis(image: Image) -> int:
    """The array axis (0 k, 1 j, 2 i of the ``(K, J, I)`` array) whose index axis follows LPS z most closely."""
    return 2 - int(np.abs(np.asarray(image.direction)[2]).argmax())


def air_fraction_at_pancreas(ct: Image, label: Image) -> Optional[float]:
    """Share of the body cross-section that is air, at the axial levels of the segmented pancreas.

    On each axial slice holding pancreas (any non-zero label), the body is the largest connected region above
    :data:`BODY_HU` with its holes filled (so lungs and bowel gas count, the air around the patient and inside
    the table do not); its air is the body below :data:`BODY_HU`. The slices' shares are averaged, each
    weighted by its pancreas voxels. A slice without body counts as all air. Written here, not found in a
    library: it is a few lines of :mod:`scipy.ndimage`.

    Args:
        ct: the phase's CT in HU. label: its ``(K, J, I)`` labels on the same grid.
    Returns:
        0..1, or None when no pancreas is segmented.
    Raises:
        InputError: ``label`` is not on the grid of ``ct``.
    """
    if not label.same_grid(ct):
        raise InputError("the label image is not on the grid of the CT it describes")
    axis = axial_axis(ct)
    organ = np.moveaxis(np.asarray(label.array) > 0, axis, 0)
    counts = organ.reshape(organ.shape[0], -1).sum(axis=1)
    if not counts.any():
        return None
    hu = np.moveaxis(np.asarray(ct.array), axis, 0)
    shares = np.ones(len(counts))
    for s in np.flatnonzero(counts):
        tissue = hu[s] > BODY_HU
        parts, n = ndimage.label(tissue)
        if n == 0:
            continue
        body = ndimage.binary_fill_holes(parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1)
        shares[s] = float((body & ~tissue).sum()) / float(body.sum())
    return float(np.average(shares, weights=counts))


def abdomen_problem(ct: Image, label: Image, phase: str, max_fraction: float = MAX_AIR_FRACTION) -> Optional[str]:
    """The reason a phase is not an abdominal scan at its pancreas (:func:`air_fraction_at_pancreas` above
    ``max_fraction``), or None (no pancreas segmented, or the check passes)."""
    share = air_fraction_at_pancreas(ct, label)
    if share is None or share <= max_fraction:
        return None
    return (f"not an abdominal scan ({phase} phase: air fills {100 * share:.0f} % of the body at the levels of the "
            f"segmented pancreas, over {100 * max_fraction:.0f} %): it lies in the chest, among the lungs")
