"""Pure parts of the screening panel: inputs -> ``lesionseg screen`` arguments, ``report.json`` -> verdict,
findings -> jump-to targets, label values -> segment names and colours.

No ``slicer`` import and no backend import at module level (the panel imports this before the backend may be
installed); tested offline. The report format is the one ``lesionseg screen`` writes (issue #7): top-level
``positive``/``verdict``/``reasons``/``model``, and per phase ``positive``, ``verdict``, ``tumour_mm3``,
``duct_mm3``, ``pancreas_mm3``, ``findings`` (``kind``, ``volume_mm3``, ``centroid_lps`` in LPS mm) and
``segmentation`` (file name of the ``uint8`` label image 0 background, 1 pancreas, 2 tumour, 3 duct on that
phase's input grid). ``verdict`` is ``"positive"``, ``"negative"`` or ``"inconclusive"`` (a phase failed a check:
no pancreas in view, a pancreas volume outside plausible adult limits, not an abdominal scan; issue #18), and
``positive`` true, false, or null when inconclusive; the first reason of an inconclusive report is its first
failed check. Older backends are read too: upper-case verdicts with ``positive`` false when inconclusive (issue
#22), and reports without ``verdict``, read from ``positive``.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

PHASES = ("venous", "arterial")
"""Input phases, in the order they are passed, shown and written."""

METHOD = "s4c"
OWNER = "LesionSegScreening"
"""Owner tag of the segments this panel writes (only these are replaced by a new run)."""

LABELS = {1: "pancreas", 2: "tumour", 3: "duct"}
"""Label values of the backend's result and the segment name suffixes."""

COLORS = {
    ("venous", "pancreas"): (0.93, 0.80, 0.55), ("venous", "tumour"): (0.90, 0.12, 0.12),
    ("venous", "duct"): (0.20, 0.55, 0.95), ("arterial", "pancreas"): (0.70, 0.55, 0.85),
    ("arterial", "tumour"): (1.00, 0.50, 0.00), ("arterial", "duct"): (0.10, 0.80, 0.70),
}
"""RGB in 0..1; tumours red / orange, ducts blue / teal, pancreas sand / lavender (venous / arterial)."""

_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_DICOM_CONTEXT = "Segmentation category and type - DICOM master list"
_PANCREAS = "SCT^15776009^Pancreas"
TERMINOLOGY = {
    "pancreas": f"{_CONTEXT}~SCT^123037004^Anatomical Structure~{_PANCREAS}~^^"
                "~Anatomic codes - DICOM master list~^^~^^",
    "tumour": f"{_CONTEXT}~SCT^49755003^Morphologically Altered Structure~SCT^4147007^Mass~^^"
              f"~Anatomic codes - DICOM master list~{_PANCREAS}~^^",
    "duct": f"{_DICOM_CONTEXT}~SCT^123037004^Anatomical Structure~SCT^69930009^Pancreatic duct~^^"
            "~Anatomic codes - DICOM master list~^^~^^",
}
"""Slicer's serialized terminology per label (SNOMED CT: pancreas 15776009, mass 4147007 in the pancreas, pancreatic
duct 69930009). Every entry exists in a terminology Slicer 5.8 and 5.10 load by default
(``Modules/Loadable/Terminologies/Resources``): pancreas and mass in the General Anatomy list; the pancreatic duct is
not in that list (15776009 there is the pancreas itself), so it uses the DICOM master list, which has it as
Anatomical Structure / Pancreatic duct."""

DEFAULT_STRIDE = 20
MAX_STRIDE = 64
"""The sliding window is 64 voxels wide: a larger stride would leave gaps."""

POSITIVE_STYLE = "background-color: #c62828; color: white; border-radius: 6px; padding: 8px;"
NEGATIVE_STYLE = "background-color: #2e7d32; color: white; border-radius: 6px; padding: 8px;"
INCONCLUSIVE_STYLE = "background-color: #ef6c00; color: white; border-radius: 6px; padding: 8px;"
STYLES = {"positive": POSITIVE_STYLE, "negative": NEGATIVE_STYLE, "inconclusive": INCONCLUSIVE_STYLE}
"""Banner colours by verdict: red, green, orange (not green: an inconclusive screen is no all-clear)."""
INCONCLUSIVE_HINT = ("A phase failed its checks, so the case was not screened there: neither negative nor positive. "
                     "Check that each volume is an abdominal CT in HU that covers the whole pancreas.")


def input_problem(venous: bool, arterial: bool) -> Optional[str]:
    """Why the Screen button is disabled (``None`` when at least one phase is selected)."""
    if not venous and not arterial:
        return "Select a venous or an arterial CT volume (or both)."
    return None


def phase_volumes(venous: Any = None, arterial: Any = None) -> dict[str, Any]:
    """``{phase: volume}`` of the phases given, in :data:`PHASES` order.

    Raises:
        ValueError: no phase given, or the same volume given as both phases.
    """
    problem = input_problem(venous is not None, arterial is not None)
    if problem:
        raise ValueError(f"no phase to screen: {problem[0].lower()}{problem[1:]}")
    if venous is not None and venous is arterial:
        raise ValueError("the same volume was given as the venous and the arterial phase")
    return {phase: node for phase, node in zip(PHASES, (venous, arterial)) if node is not None}


def check_options(weights: Optional[Path] = None, device: str = "auto", stride: int = DEFAULT_STRIDE) -> None:
    """Raise ``ValueError`` for a stride outside 1..64, a device other than auto/cpu/cuda or a weights folder that
    does not exist (checked before any volume is written)."""
    from LesionSegLib.wholevolume import check_options as check_run_options

    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= MAX_STRIDE:
        raise ValueError(f"the stride must be a whole number of voxels in 1..{MAX_STRIDE}, got {stride!r}")
    check_run_options(weights, device)


def screen_arguments(inputs: Mapping[str, Path], output_dir: Path, weights: Optional[Path] = None,
                     device: str = "auto", stride: int = DEFAULT_STRIDE) -> list[str]:
    """``lesionseg screen`` arguments (without the program and ``--progress``, added by the runner).

    Args:
        inputs: ``{phase: image file}``; at least one of :data:`PHASES`.
        output_dir: the folder the backend creates (must not exist yet or be empty).
        weights: a model folder, or ``None`` / ``""`` for the installed one.

    Raises:
        ValueError: no or unknown phase, or an option rejected by :func:`check_options`.
    """
    unknown = set(inputs) - set(PHASES)
    if unknown or not inputs:
        raise ValueError(f"phases must be among {', '.join(PHASES)}; got {', '.join(sorted(inputs)) or 'none'}")
    check_options(weights, device, stride)
    args = ["screen"]
    for phase in PHASES:
        if phase in inputs:
            args += [f"--{phase}", str(inputs[phase])]
    args += ["-o", str(output_dir), "--device", device, "--stride", str(stride)]
    if weights is not None and str(weights):
        args += ["--weights", str(weights)]
    return args


def read_report(output_dir: Path, phases: Sequence[str]) -> dict:
    """The backend's ``report.json`` after checking it covers ``phases``, their label files exist, its verdict
    agrees with ``positive`` (true, false or null) and every finding has a location (so that the banner and the
    jump-to table cannot fail later).

    Raises:
        ValueError: no report, a malformed one, a phase or its segmentation file missing, a bad finding.
    """
    path = Path(output_dir) / "report.json"
    if not path.is_file():
        raise ValueError(f"the backend wrote no report ({path} is missing)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"the screening report {path} cannot be read: {exc}") from exc
    if not isinstance(report, dict) or "positive" not in report or not isinstance(report.get("phases"), dict):
        raise ValueError(f"the screening report {path} lacks 'positive' or 'phases'")
    for phase in phases:
        entry = report["phases"].get(phase)
        if not isinstance(entry, dict) or not entry.get("segmentation"):
            raise ValueError(f"the screening report has no {phase} segmentation")
        if not (Path(output_dir) / entry["segmentation"]).is_file():
            raise ValueError(f"the {phase} segmentation {entry['segmentation']} is missing")
    verdict_from_report(report)
    jump_targets(report)
    return report


def segmentation_file(report: Mapping, output_dir: Path, phase: str) -> Path:
    """The label file of ``phase`` named in the report."""
    return Path(output_dir) / report["phases"][phase]["segmentation"]


def segment_specs(phase: str) -> list:
    """The three segments of one phase (``LesionSegLib.labelmaps.SegmentSpec``): ``"<phase> pancreas"``,
    ``"<phase> tumour"``, ``"<phase> duct"``, tagged with the phase and the label value."""
    from LesionSegLib.labelmaps import SegmentSpec

    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return [SegmentSpec(value, f"{phase} {name}", COLORS[(phase, name)], TERMINOLOGY[name],
                        {"LesionSeg.phase": phase, "LesionSeg.label": str(value)})
            for value, name in LABELS.items()]


def segmentation_name(volume_names: Mapping[str, str]) -> str:
    """Name of a new segmentation: ``"<first phase's volume> screening"``."""
    first = next((volume_names[p] for p in PHASES if p in volume_names), "")
    return f"{first} screening".strip()


@dataclass(frozen=True)
class Verdict:
    """What the banner shows.

    Attributes:
        verdict: ``"positive"``, ``"negative"`` or ``"inconclusive"``.
        positive: True, False, or None when inconclusive (unknown).
        reason: for an inconclusive verdict its first reason (the first failed check), else ``""``.
        disclaimer: the model's status line (always ends with "not for diagnosis"); when inconclusive it starts
            with what to check (:data:`INCONCLUSIVE_HINT`).
        reasons: the backend's reasons, one line each.
        phases: one summary line per phase, e.g. ``"venous: Positive (tumour 812 mm3, duct 0 mm3)"``.
    """

    verdict: str
    positive: Optional[bool]
    reason: str
    disclaimer: str
    reasons: tuple[str, ...]
    phases: tuple[str, ...]

    @property
    def headline(self) -> str:
        """``"Positive"``, ``"Negative"`` or ``"Inconclusive"``."""
        return self.verdict.capitalize()

    @property
    def title(self) -> str:
        """The banner's text: ``"Positive"``, ``"Negative"`` or ``"Inconclusive: <reason>"``."""
        return f"{self.headline}: {self.reason}" if self.reason else self.headline

    @property
    def style(self) -> str:
        """Qt style sheet of the banner: red when positive, green when negative, orange when inconclusive."""
        return STYLES.get(self.verdict, INCONCLUSIVE_STYLE)

    def banner_html(self) -> str:
        """Rich text of the banner: the verdict in large letters (an inconclusive one followed by its reason),
        the disclaimer below."""
        reason = (f"<span style='font-size: 11pt;'>: {html.escape(self.reason)}</span>" if self.reason else "")
        return (f"<div style='font-size: 20pt; font-weight: bold;'>{self.headline}{reason}</div>"
                f"<div style='font-size: 9pt;'>{html.escape(self.disclaimer)}</div>")

    def reasons_html(self) -> str:
        """Rich text of the reasons and the per-phase summary, as bullet lists."""
        items = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        phases = "".join(f"<li>{html.escape(p)}</li>" for p in self.phases)
        return f"<b>Reasons</b><ul>{items}</ul><b>Phases</b><ul>{phases}</ul>"


def verdict_from_report(report: Mapping) -> Verdict:
    """The banner content of a report (see :class:`Verdict`).

    Raises:
        ValueError: the report lacks ``positive`` or ``phases``, or ``positive`` contradicts ``verdict`` (true
            only for positive, false only for negative, null only for inconclusive; an older backend's false
            for inconclusive is accepted).
    """
    positive = report.get("positive")
    if "positive" not in report or not isinstance(report.get("phases"), Mapping):
        raise ValueError("the screening report lacks 'positive' or 'phases'")
    if positive is not None and not isinstance(positive, bool):
        raise ValueError(f"the screening report's 'positive' must be true, false or null, got {positive!r}")
    verdict = _verdict(report)
    allowed = {"positive": (True,), "negative": (False,), "inconclusive": (None, False)}[verdict]
    if positive not in allowed:
        raise ValueError(f"the screening report contradicts itself: verdict {verdict} but positive {positive}")
    reasons = tuple(str(r) for r in report.get("reasons") or ())
    synthetic = (report.get("model") or {}).get("synthetic_training_data", True)
    disclaimer = ("synthetic-trained model \u2014 not for diagnosis" if synthetic is not False
                  else "research model \u2014 not for diagnosis")
    if verdict == "inconclusive":
        disclaimer = f"{INCONCLUSIVE_HINT} {disclaimer[0].upper()}{disclaimer[1:]}"
    phases = []
    for phase in PHASES:
        entry = report["phases"].get(phase)
        if isinstance(entry, Mapping):
            line = (f"{phase}: {_verdict(entry).capitalize()} (tumour {_number(entry.get('tumour_mm3'))} mm3, "
                    f"duct {_number(entry.get('duct_mm3'))} mm3")
            if "pancreas_mm3" in entry:
                line += f", pancreas {_number(_millilitres(entry.get('pancreas_mm3')))} mL"
            phases.append(line + ")")
    reason = reasons[0] if verdict == "inconclusive" and reasons else ""
    return Verdict(verdict, None if verdict == "inconclusive" else positive, reason, disclaimer, reasons,
                   tuple(phases))


def _verdict(entry: Mapping) -> str:
    """``entry["verdict"]`` in lower case when it is positive / negative / inconclusive (any case: backends
    before issue #18 wrote upper case), else read from ``positive`` (reports of backends before inconclusive
    existed); an unknown verdict is shown as inconclusive, never as negative."""
    verdict = entry.get("verdict")
    if verdict is None:
        return "positive" if entry.get("positive") is True else "negative"
    verdict = str(verdict).lower()
    return verdict if verdict in STYLES else "inconclusive"


def _millilitres(mm3: Any) -> Any:
    try:
        return float(mm3) / 1000.0
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "?"
    return f"{number:.0f}" if math.isfinite(number) else "?"


@dataclass(frozen=True)
class JumpTarget:
    """One finding the slice views can be centred on.

    Attributes:
        phase, kind: e.g. ``"venous"``, ``"tumour"``.
        volume_mm3: the finding's volume.
        ras: ``(3,)`` RAS mm of its centroid, in the node coordinates of that phase's volume.
    """

    phase: str
    kind: str
    volume_mm3: float
    ras: tuple[float, float, float]

    @property
    def centroid_ras(self) -> tuple[float, float, float]:
        """:attr:`ras` (what ``LesionSegLib.jobs.BackgroundJobLogic.jumpTo`` centres the views on)."""
        return self.ras

    def cells(self) -> tuple[str, str, str, str]:
        """Table cells: phase, kind, volume (mm3), RAS position (mm)."""
        return (self.phase, self.kind, _number(self.volume_mm3),
                "(" + ", ".join(f"{c:.1f}" for c in self.ras) + ")")


def jump_targets(report: Mapping) -> list[JumpTarget]:
    """Every finding of every phase (phase order, then the report's order: largest first), LPS -> RAS.

    Raises:
        ValueError: a finding without a finite 3-vector ``centroid_lps``.
    """
    from LesionSegLib.scene import lps_to_ras

    targets = []
    for phase in PHASES:
        entry = (report.get("phases") or {}).get(phase)
        for finding in (entry or {}).get("findings") or ():
            centroid = finding.get("centroid_lps")
            if not isinstance(centroid, (list, tuple)) or len(centroid) != 3 \
                    or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in centroid):
                raise ValueError(f"a {phase} finding has no valid centroid_lps: {centroid!r}")
            ras = lps_to_ras([float(c) for c in centroid])
            targets.append(JumpTarget(phase, str(finding.get("kind", "finding")),
                                      float(finding.get("volume_mm3", float("nan"))),
                                      tuple(float(c) for c in ras)))
    return targets
