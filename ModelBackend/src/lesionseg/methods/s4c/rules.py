"""S4C post-processing and classification rules: from a 4-class label image to a phase and a case verdict.

Zhu et al. keep the largest connected component ``C_max`` of the predicted pancreas (every non-zero class)
and any other component larger than 20 % of ``C_max`` or closer than 27 voxels to it; a phase is positive
when at least 40 voxels are tumour or at least 500 voxels are dilated duct; a case is positive when any of
its phases is (dual-phase fusion).

The paper counts voxels of its own CTs and does not state their size (about 1 mm^3). Here every threshold is
physical -- 40 mm^3, 500 mm^3 and 27 mm -- so that the rule means the same on any grid; the counts are then
taken on the grid of the label given (reports give both voxels and mm^3).

A screen can only be negative where it has looked at a pancreas. A phase that is not positive and whose
segmentation holds less than ``pancreas_min_mm3`` (5 mL) of pancreas (labels 1-3) is *inconclusive*: an
all-air image, a lung crop, a scan not in HU or a failed segmentation would otherwise read "negative"
(:class:`ScreeningRule`). The case verdict (:func:`case_verdict`) is POSITIVE when any phase is positive,
INCONCLUSIVE when no phase is positive and any phase is inconclusive, NEGATIVE only when every phase given
showed a pancreas and no finding.

Label values: 0 background, 1 normal pancreas, 2 tumour, 3 dilated pancreatic duct.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...geometry import index_to_world
from ...image import Image

LABELS = {0: "background", 1: "pancreas", 2: "tumour", 3: "duct"}
TUMOUR, DUCT = 2, 3
POSITIVE, NEGATIVE, INCONCLUSIVE = "POSITIVE", "NEGATIVE", "INCONCLUSIVE"
VERDICTS = (POSITIVE, NEGATIVE, INCONCLUSIVE)
"""The values of a phase's and a case's ``verdict``."""
CONNECTIVITY = ndimage.generate_binary_structure(3, 3)
"""26-connectivity for all components (the paper does not say; the widest choice merges touching parts)."""


@dataclass(frozen=True)
class ScreeningRule:
    """Thresholds of the S4C rules (physical units; see the module docstring).

    ``pancreas_min_mm3`` (5000 mm^3 = 5 mL) is not from the paper: it is the least pancreas (labels 1-3) a
    phase's segmentation must hold for "no finding" to mean negative. An adult pancreas is about 50-100 mL
    on CT (about 70 mL at 20-40 years, shrinking to about 50 mL after 70; even a markedly atrophic gland or
    the 60-slice synthetic phantoms, 35-50 mL, hold several times more), so 5 mL is far below any real
    pancreas and flags a scan where none was found (air, a lung crop, not HU, a failed segmentation) while
    leaving room for a CT that covers only part of the gland. Below it a phase is inconclusive, not negative.
    """

    tumour_min_mm3: float = 40.0
    duct_min_mm3: float = 500.0
    keep_fraction: float = 0.2
    keep_distance_mm: float = 27.0
    pancreas_min_mm3: float = 5000.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if not np.isfinite(getattr(self, f.name)) or getattr(self, f.name) < 0:
                raise InputError(f"screening rule {f.name} must be a finite number >= 0, got {getattr(self, f.name)}")

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
    """What one phase's post-processed label shows, and whether the phase is positive and why.

    ``pancreas_mm3`` counts every organ label (pancreas, tumour, duct). ``inconclusive`` is true for a phase
    that is not positive and holds less than the rule's ``pancreas_min_mm3`` of pancreas: no finding there
    does not mean negative. ``positive`` stays a bool (false for an inconclusive phase); :attr:`verdict`
    gives POSITIVE, NEGATIVE or INCONCLUSIVE.
    """

    phase: str
    positive: bool
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
        """``"POSITIVE"``, ``"NEGATIVE"`` or ``"INCONCLUSIVE"``."""
        return POSITIVE if self.positive else INCONCLUSIVE if self.inconclusive else NEGATIVE

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


def phase_findings(label: Image, rule: ScreeningRule = ScreeningRule(), phase: str = "venous") -> PhaseFindings:
    """Counts, components and verdict of one phase from its (post-processed) label image.

    A phase is positive when its tumour volume reaches ``tumour_min_mm3`` or its duct volume reaches
    ``duct_min_mm3`` (all tumour voxels counted, as in the paper, not only the largest component). A phase
    that is not positive is inconclusive when its pancreas (labels 1-3) is smaller than ``pancreas_min_mm3``
    (a finding is reported whatever the pancreas volume: a false alarm is safer than a missed tumour).
    """
    arr = _check_label(label)
    voxel_mm3 = 1000.0 * label.voxel_volume_ml
    n_tumour, n_duct = int((arr == TUMOUR).sum()), int((arr == DUCT).sum())
    tumour_mm3, duct_mm3 = n_tumour * voxel_mm3, n_duct * voxel_mm3
    findings = _findings(label, arr, TUMOUR, "tumour") + _findings(label, arr, DUCT, "duct")
    reasons = []
    if tumour_mm3 >= rule.tumour_min_mm3 and n_tumour:
        where = findings[0].centroid_lps
        reasons.append(f"{phase}: tumour {tumour_mm3:.0f} mm3 (>= {rule.tumour_min_mm3:g} mm3), largest part "
                       f"at ({where[0]:.1f}, {where[1]:.1f}, {where[2]:.1f}) mm LPS")
    if duct_mm3 >= rule.duct_min_mm3 and n_duct:
        where = next(f for f in findings if f.kind == "duct").centroid_lps
        reasons.append(f"{phase}: dilated duct {duct_mm3:.0f} mm3 (>= {rule.duct_min_mm3:g} mm3), largest part "
                       f"at ({where[0]:.1f}, {where[1]:.1f}, {where[2]:.1f}) mm LPS")
    positive = bool(reasons)
    pancreas_mm3 = float((arr > 0).sum() * voxel_mm3)
    inconclusive = not positive and pancreas_mm3 < rule.pancreas_min_mm3
    if inconclusive:
        reasons.append(f"{phase}: no pancreas found ({pancreas_mm3 / 1000:.1f} mL segmented, < "
                       f"{rule.pancreas_min_mm3 / 1000:g} mL): inconclusive, not negative")
    elif not positive:
        reasons.append(f"{phase}: tumour {tumour_mm3:.0f} mm3 (< {rule.tumour_min_mm3:g}) and duct {duct_mm3:.0f} "
                       f"mm3 (< {rule.duct_min_mm3:g}) in {pancreas_mm3 / 1000:.1f} mL of pancreas")
    return PhaseFindings(phase, positive, n_tumour, n_duct, round(tumour_mm3, 2), round(duct_mm3, 2),
                         round(pancreas_mm3, 2), findings, reasons, inconclusive)


def fuse_verdicts(verdicts: Sequence[str]) -> str:
    """The case verdict from its phases' verdicts (:func:`case_verdict`'s rule): POSITIVE when any phase is,
    else INCONCLUSIVE when any phase is, else NEGATIVE."""
    if not verdicts:
        raise InputError("screening needs at least one phase (venous and/or arterial)")
    unknown = sorted(set(verdicts) - set(VERDICTS))
    if unknown:
        raise InputError(f"unknown verdict(s) {unknown}; a phase is one of {', '.join(VERDICTS)}")
    return POSITIVE if POSITIVE in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else NEGATIVE


def case_verdict(phases: Sequence[PhaseFindings]) -> tuple[str, list[str]]:
    """Case verdict and its reasons from the phases of one case.

    POSITIVE when any phase is positive (the reasons of the positive phases). Otherwise INCONCLUSIVE when any
    phase is inconclusive, even if another phase showed a pancreas without a finding: S4C fuses the phases
    because a tumour may be conspicuous in one phase only, so a phase that could not be read leaves the
    screen incomplete, and a screening tool must not call that negative (the reasons of all phases, the
    inconclusive first). NEGATIVE only when every phase showed a pancreas and no finding (all reasons).
    """
    verdict = fuse_verdicts([p.verdict for p in phases])
    if verdict == POSITIVE:
        return POSITIVE, [r for p in phases if p.positive for r in p.reasons]
    if verdict == INCONCLUSIVE:
        ordered = [p for p in phases if p.inconclusive] + [p for p in phases if not p.inconclusive]
        return INCONCLUSIVE, [r for p in ordered for r in p.reasons]
    return NEGATIVE, [r for p in phases for r in p.reasons]


def fuse(phases: Sequence[PhaseFindings]) -> tuple[bool, list[str]]:
    """``(positive, reasons)`` of :func:`case_verdict`: positive when any phase is positive (false for an
    INCONCLUSIVE case too; use :func:`case_verdict` to tell it from a negative one)."""
    verdict, reasons = case_verdict(phases)
    return verdict == POSITIVE, reasons
