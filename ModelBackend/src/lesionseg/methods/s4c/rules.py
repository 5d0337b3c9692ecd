"""S4C post-processing and classification rules: from a 4-class label image to a phase and a case verdict.

Zhu et al. keep the largest connected component ``C_max`` of the predicted pancreas (every non-zero class)
and any other component larger than 20 % of ``C_max`` or closer than 27 voxels to it; a phase is positive
when at least 40 voxels are tumour or at least 500 voxels are dilated duct; a case is positive when any of
its phases is (dual-phase fusion).

The paper counts voxels of its own CTs and does not state their size (about 1 mm^3). Here every threshold is
physical -- 40 mm^3, 500 mm^3 and 27 mm -- so that the rule means the same on any grid; the counts are then
taken on the grid of the label given (reports give both voxels and mm^3).

A screen can only be negative where it has looked at a pancreas, and positive where a tumour sits in one. A
phase that fails the checks of :mod:`.verdict` (no pancreas in view, a pancreas volume outside plausible adult
limits, not an abdominal scan) is *inconclusive*, whatever the rule found: an all-air image, a chest or limb
CT or a failed segmentation would otherwise read "negative", or "positive" from a stray blob. The case verdict
(:func:`case_verdict`) is positive when any phase is positive, inconclusive when no phase is positive and any
phase is inconclusive, negative only when every phase given passed its checks and showed no finding.

Label values: 0 background, 1 normal pancreas, 2 tumour, 3 dilated pancreatic duct.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...geometry import index_to_world
from ...image import Image
from .verdict import (ADULT_PANCREAS_MM3, INCONCLUSIVE, NEGATIVE, NO_PANCREAS_MM3, POSITIVE, abdomen_problem,
                      as_verdict, positive_of, volume_problems)

LABELS = {0: "background", 1: "pancreas", 2: "tumour", 3: "duct"}
TUMOUR, DUCT = 2, 3
CONNECTIVITY = ndimage.generate_binary_structure(3, 3)
"""26-connectivity for all components (the paper does not say; the widest choice merges touching parts)."""


@dataclass(frozen=True)
class ScreeningRule:
    """Thresholds of the S4C rules (physical units; see the module docstring).

    The pancreas bounds are not from the paper: they are checks of the verdict (:mod:`.verdict`), recorded
    with the rule so that a report says what it was held to. ``pancreas_min_mm3`` (5 mL,
    :data:`.verdict.NO_PANCREAS_MM3`): below it no pancreas is in view (labels 1-3). ``pancreas_adult_min_mm3``
    and ``pancreas_adult_max_mm3`` (15 mL and 250 mL, :data:`.verdict.ADULT_PANCREAS_MM3`, with their
    sources): outside them the segmented gland is not a plausible whole adult pancreas. A phase outside any
    bound is inconclusive, neither negative nor positive.
    """

    tumour_min_mm3: float = 40.0
    duct_min_mm3: float = 500.0
    keep_fraction: float = 0.2
    keep_distance_mm: float = 27.0
    pancreas_min_mm3: float = NO_PANCREAS_MM3
    pancreas_adult_min_mm3: float = ADULT_PANCREAS_MM3[0]
    pancreas_adult_max_mm3: float = ADULT_PANCREAS_MM3[1]

    def __post_init__(self) -> None:
        for f in fields(self):
            if not np.isfinite(getattr(self, f.name)) or getattr(self, f.name) < 0:
                raise InputError(f"screening rule {f.name} must be a finite number >= 0, got {getattr(self, f.name)}")
        if not self.pancreas_min_mm3 <= self.pancreas_adult_min_mm3 <= self.pancreas_adult_max_mm3:
            raise InputError("screening rule pancreas bounds must grow: pancreas_min_mm3 <= pancreas_adult_min_mm3 "
                             f"<= pancreas_adult_max_mm3, got {self.pancreas_min_mm3:g}, "
                             f"{self.pancreas_adult_min_mm3:g}, {self.pancreas_adult_max_mm3:g}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ScreeningRule":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown screening rule field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass
class Finding:
    """One connected tumour or duct component: size, centroid (LPS mm) and inclusive (i, j, k) box."""

    kind: str
    voxels: int
    volume_mm3: float
    centroid_lps: list[float]
    box_ijk: list[list[int]]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PhaseFindings:
    """What one phase's post-processed label shows, its verdict and why.

    ``pancreas_mm3`` counts every organ label (pancreas, tumour, duct). ``inconclusive`` is true for a phase
    that failed a check of :mod:`.verdict`; ``positive`` is then None (unknown), else whether the rule found a
    tumour or a dilated duct. :attr:`verdict` gives ``"positive"``, ``"negative"`` or ``"inconclusive"``.
    ``reasons``: for an inconclusive phase the failed checks first, then any finding the rule would have
    reported (set aside); otherwise the rule's findings, or its volumes below the thresholds.
    """

    phase: str
    positive: Optional[bool]
    tumour_voxels: int
    duct_voxels: int
    tumour_mm3: float
    duct_mm3: float
    pancreas_mm3: float
    findings: list[Finding] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    inconclusive: bool = False

    @property
    def verdict(self) -> str:
        """``"positive"``, ``"negative"`` or ``"inconclusive"`` (:data:`.verdict.VERDICTS`)."""
        return INCONCLUSIVE if self.inconclusive else POSITIVE if self.positive else NEGATIVE

    def to_dict(self) -> dict:
        out = asdict(self)
        out["findings"] = [f.to_dict() for f in self.findings]
        out["verdict"] = self.verdict
        return out


def _check_label(label: Image) -> np.ndarray:
    arr = np.asarray(label.array)
    if arr.size and (arr.min() < 0 or arr.max() > 3):
        raise InputError(f"an S4C label image holds values 0..3, got {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8, copy=False)


def postprocess(label: Image, rule: ScreeningRule = ScreeningRule()) -> Image:
    """Keep the largest pancreas component ``C_max`` and the components larger than ``keep_fraction`` of it
    or closer than ``keep_distance_mm`` to it (distance between nearest voxels, in mm); zero the rest.

    Args:
        label: uint8 ``(K, J, I)`` labels 0..3 on any grid (spacing is used for the distance).
    Returns:
        a label image on the same grid.
    """
    arr = _check_label(label)
    comps, n = ndimage.label(arr > 0, CONNECTIVITY)
    if n <= 1:
        return label.with_array(arr.copy())
    sizes = np.bincount(comps.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    near = _distances_to(comps, largest, n, np.asarray(label.spacing, float)[::-1], rule.keep_distance_mm)
    keep = np.zeros(n + 1, bool)
    keep[largest] = True
    for idx in range(1, n + 1):
        if sizes[idx - 1] > rule.keep_fraction * sizes[largest - 1] or near[idx - 1] < rule.keep_distance_mm:
            keep[idx] = True
    return label.with_array(np.where(keep[comps], arr, 0).astype(np.uint8))


def _distances_to(comps: np.ndarray, target: int, n: int, spacing_kji: np.ndarray, within_mm: float) -> np.ndarray:
    """Distance (mm, nearest voxels) from component ``target`` to each component ``1..n``, exact below
    ``within_mm`` and ``inf`` for components farther away.

    Only the box around ``target`` widened by ``within_mm`` (plus a voxel) is searched: a voxel outside it is
    farther than ``within_mm`` along one axis alone. On a whole CT this is a few percent of the volume (the
    full-volume distance transform took 6.5 s of a 62 s S4C phase)."""
    box = ndimage.find_objects(comps, max_label=target)[target - 1]
    margin = np.ceil(within_mm / spacing_kji).astype(int) + 1
    box = tuple(slice(max(s.start - m, 0), min(s.stop + m, size)) for s, m, size in zip(box, margin, comps.shape))
    crop = comps[box]
    distance = ndimage.distance_transform_edt(crop != target, sampling=spacing_kji)
    near = np.full(n, np.inf)
    present = np.unique(crop)
    present = present[present > 0]
    near[present - 1] = ndimage.minimum(distance, crop, index=present)
    return near


def _findings(label: Image, arr: np.ndarray, value: int, kind: str) -> list[Finding]:
    comps, n = ndimage.label(arr == value, CONNECTIVITY)
    if n == 0:
        return []
    voxel_mm3 = 1000.0 * label.voxel_volume_ml
    out = []
    for idx, sl in enumerate(ndimage.find_objects(comps), start=1):
        where = np.argwhere(comps[sl] == idx) + [s.start for s in sl]
        centroid_ijk = where.mean(axis=0)[::-1]
        out.append(Finding(kind, int(len(where)), round(float(len(where) * voxel_mm3), 2),
                           [round(float(v), 2) for v in index_to_world(label, centroid_ijk[None])[0]],
                           [[int(sl[2].start), int(sl[1].start), int(sl[0].start)],
                            [int(sl[2].stop - 1), int(sl[1].stop - 1), int(sl[0].stop - 1)]]))
    return sorted(out, key=lambda f: -f.voxels)


def phase_findings(label: Image, rule: ScreeningRule = ScreeningRule(), phase: str = "venous",
                   ct: Optional[Image] = None) -> PhaseFindings:
    """Counts, components and verdict of one phase from its (post-processed) label image.

    The rule finds a tumour when the tumour volume reaches ``tumour_min_mm3`` or a dilated duct when the duct
    volume reaches ``duct_min_mm3`` (all tumour voxels counted, as in the paper, not only the largest
    component). The phase is inconclusive when it fails a check of :mod:`.verdict`: its pancreas (labels 1-3)
    is under ``pancreas_min_mm3`` or outside ``pancreas_adult_min_mm3``..``pancreas_adult_max_mm3``, or, with
    ``ct``, the pancreas lies in the chest (:func:`.verdict.abdomen_problem`). Otherwise it is positive when
    the rule found something, else negative.

    Args:
        label: uint8 ``(K, J, I)`` labels 0..3. ct: the phase's CT in HU on the same grid (the anatomy check
            runs only with it).
    """
    arr = _check_label(label)
    voxel_mm3 = 1000.0 * label.voxel_volume_ml
    n_tumour, n_duct = int((arr == TUMOUR).sum()), int((arr == DUCT).sum())
    tumour_mm3, duct_mm3 = n_tumour * voxel_mm3, n_duct * voxel_mm3
    findings = _findings(label, arr, TUMOUR, "tumour") + _findings(label, arr, DUCT, "duct")
    hits = []
    if tumour_mm3 >= rule.tumour_min_mm3 and n_tumour:
        where = findings[0].centroid_lps
        hits.append(f"tumour {tumour_mm3:.0f} mm3 (>= {rule.tumour_min_mm3:g} mm3), largest part "
                    f"at ({where[0]:.1f}, {where[1]:.1f}, {where[2]:.1f}) mm LPS")
    if duct_mm3 >= rule.duct_min_mm3 and n_duct:
        where = next(f for f in findings if f.kind == "duct").centroid_lps
        hits.append(f"dilated duct {duct_mm3:.0f} mm3 (>= {rule.duct_min_mm3:g} mm3), largest part "
                    f"at ({where[0]:.1f}, {where[1]:.1f}, {where[2]:.1f}) mm LPS")
    pancreas_mm3 = float((arr > 0).sum() * voxel_mm3)
    problems = volume_problems(pancreas_mm3, phase, rule)
    if ct is not None and (anatomy := abdomen_problem(ct, label, phase)):
        problems.append(anatomy)
    if problems:
        reasons = problems + [f"{phase}: set aside, since the checks failed: {hit}" for hit in hits]
    elif hits:
        reasons = [f"{phase}: {hit}" for hit in hits]
    else:
        reasons = [f"{phase}: tumour {tumour_mm3:.0f} mm3 (< {rule.tumour_min_mm3:g}) and duct {duct_mm3:.0f} "
                   f"mm3 (< {rule.duct_min_mm3:g}) in {pancreas_mm3 / 1000:.1f} mL of pancreas"]
    return PhaseFindings(phase, None if problems else bool(hits), n_tumour, n_duct, round(tumour_mm3, 2),
                         round(duct_mm3, 2), round(pancreas_mm3, 2), findings, reasons, bool(problems))


def fuse_verdicts(verdicts: Sequence[str]) -> str:
    """The case verdict from its phases' verdicts (:func:`case_verdict`'s rule): positive when any phase is,
    else inconclusive when any phase is, else negative. Upper-case verdicts (records before issue #18) are
    read too (:func:`.verdict.as_verdict`; InputError for anything else)."""
    if not verdicts:
        raise InputError("screening needs at least one phase (venous and/or arterial)")
    verdicts = [as_verdict(v) for v in verdicts]
    return POSITIVE if POSITIVE in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else NEGATIVE


def case_verdict(phases: Sequence[PhaseFindings]) -> tuple[str, list[str]]:
    """Case verdict and its reasons from the phases of one case.

    Positive when any phase is positive (the reasons of the positive phases). Otherwise inconclusive when any
    phase is inconclusive, even if another phase passed its checks without a finding: S4C fuses the phases
    because a tumour may be conspicuous in one phase only, so a phase that could not be read leaves the
    screen incomplete, and a screening tool must not call that negative (the reasons of all phases, the
    inconclusive first, so the first reason is a failed check). Negative only when every phase passed its
    checks and showed no finding (all reasons).
    """
    verdict = fuse_verdicts([p.verdict for p in phases])
    if verdict == POSITIVE:
        return POSITIVE, [r for p in phases if p.positive for r in p.reasons]
    if verdict == INCONCLUSIVE:
        ordered = [p for p in phases if p.inconclusive] + [p for p in phases if not p.inconclusive]
        return INCONCLUSIVE, [r for p in ordered for r in p.reasons]
    return NEGATIVE, [r for p in phases for r in p.reasons]


def fuse(phases: Sequence[PhaseFindings]) -> tuple[Optional[bool], list[str]]:
    """``(positive, reasons)`` of :func:`case_verdict`, ``positive`` as in the report: True, False, or None
    for an inconclusive case (:func:`.verdict.positive_of`)."""
    verdict, reasons = case_verdict(phases)
    return positive_of(verdict), reasons
