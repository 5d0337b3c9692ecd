"""Case-level S4C screening: segment each CT phase, apply the rule, fuse the phases, write the case report.

:func:`screen_case` runs one segmenter on the venous and/or arterial phase of one patient and writes into a
folder (assembled in a temporary sibling and renamed at the end, so an error leaves nothing behind)::

    <phase>_seg.nii.gz   uint8 labels 0 background, 1 pancreas, 2 tumour, 3 dilated duct, on the phase's grid
    <phase>.png          axial / coronal / sagittal views through the most suspicious region
    <phase>_seg.dcm      with ``dicom_seg``: the same labels as a DICOM SEG referencing the phase's DICOM series
    report.json          verdict, reasons, rule, model, per-phase counts and findings, timings
    report.md            the same for people, with the pictures

The case verdict (:func:`.rules.case_verdict`) is ``"positive"`` when any phase is, ``"inconclusive"`` when no
phase is positive and a phase failed a check of :mod:`.verdict` (no pancreas in view, a pancreas volume outside
plausible adult limits, not an abdominal scan; each with a :class:`LesionSegWarning`), else ``"negative"``;
``report["positive"]`` is true, false, or null (None) when inconclusive, and ``report["reasons"]`` says why (for
an inconclusive case, the failed checks first). Phases are registered scans of one patient, so their physical
extents must overlap (:func:`lesionseg.resample.check_overlap`).
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np

from ... import progress
from ...errors import InputError, LesionSegWarning
from ...geometry import world_to_index
from ...image import Image
from ...io import check_output_folder, output_folder, write_image
from ...resample import check_overlap
from .rules import DUCT, TUMOUR, PhaseFindings, case_verdict
from .verdict import INCONCLUSIVE, NEGATIVE, POSITIVE, as_verdict, positive_of

log = logging.getLogger(__name__)
PHASES = ("venous", "arterial")
"""Accepted phase names, in the order they are processed and reported."""
SOFT_TISSUE = (-160.0, 240.0)
"""CT display window in HU (width 400, level 40)."""
VIEW_MM = 120.0
"""Edge of the square field of view of each picture panel, mm."""
COLOURS = {"pancreas": "lime", "tumour": "red", "duct": "yellow"}
PLANE_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}
"""Plane name by the LPS axis (0 x, 1 y, 2 z) its normal follows most closely."""
ENDS = {0: ("R", "L"), 1: ("A", "P"), 2: ("I", "S")}
"""Patient side at the low and high end of each LPS axis."""
TITLE_COLOURS = {POSITIVE: "firebrick", INCONCLUSIVE: "darkorange"}
"""Picture title colour by phase verdict (black for negative)."""


def _check_phases(phases: Mapping[str, Image]) -> list[str]:
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise InputError(f"unknown phase(s) {', '.join(unknown)}; the phases are {' and '.join(PHASES)}")
    if not phases:
        raise InputError("give --venous and/or --arterial (one CT per phase)")
    for name, image in phases.items():
        if not isinstance(image, Image):
            raise InputError(f"the {name} phase must be a lesionseg Image, got {type(image).__name__}")
    if len(phases) == 2:
        check_overlap(phases["venous"], phases["arterial"], ("venous phase", "arterial phase"))
    return [p for p in PHASES if p in phases]


def screen_case(phases: Mapping[str, Image], segmenter: Union[Any, Callable[[], Any]], output: Path,
                overwrite: bool = False, inputs: Optional[Mapping[str, str]] = None,
                dicom_seg: Optional[Mapping[str, str]] = None) -> dict:
    """Screen one case and write its report folder (see the module docstring).

    Args:
        phases: ``{"venous": ct, "arterial": ct}`` (either or both), CT in HU, each on its own grid.
        segmenter: an S4C segmenter (``set_image``, ``predict``, ``findings``, ``rule``, optional ``model``)
            or a callable that builds one; it is built only after the inputs have been checked.
        output: report folder; must be absent or empty unless ``overwrite``; its parent must exist.
        overwrite: replace ``output`` when it is an earlier LesionSeg output (never another folder, the
            current folder or a folder holding an input: :func:`lesionseg.outputs.check_output_folder`).
        inputs: ``{phase: path}`` recorded in the report (``None`` where not given).
        dicom_seg: ``{phase: DICOM series folder}``: also write each phase's labels as ``<phase>_seg.dcm``
            (:mod:`lesionseg.dicomseg`; the NIfTI labels stay, the report and the Slicer panel read them).
    Returns:
        the report (the content of ``report.json``).
    Raises:
        InputError: no or unknown phase, phases that do not overlap, an image the segmenter refuses.
        OutputExistsError: ``output`` is not empty and ``overwrite`` is false (checked before any work).
    """
    t_start = time.perf_counter()
    sources = [path for path in (inputs or {}).values() if path]
    check_output_folder(output, overwrite, sources)
    order = _check_phases(phases)
    seg = segmenter if hasattr(segmenter, "set_image") else segmenter()
    with output_folder(output, overwrite, sources, command="lesionseg screen") as work:
        report = _screen_into(work, {p: phases[p] for p in order}, seg, dict(inputs or {}), t_start, dicom_seg or {})
    return report


def _screen_into(work: Path, phases: dict[str, Image], seg: Any, inputs: dict, t_start: float,
                 dicom_seg: Mapping[str, str]) -> dict:
    timings: dict[str, float] = {}
    found: dict[str, PhaseFindings] = {}
    entries: dict[str, dict] = {}
    for n, (phase, ct) in enumerate(phases.items()):
        progress.emit_line(n / len(phases), f"screening the {phase} phase")
        t0 = time.perf_counter()
        seg.set_image(ct)
        label = seg.predict()
        found[phase] = seg.findings(phase)
        seconds = round(time.perf_counter() - t0, 3)
        timings[f"{phase} segmentation"] = seconds
        log.info("s4c screen: %s phase %s in %.1f s", phase, found[phase].verdict, seconds)
        t0 = time.perf_counter()
        write_image(label.with_array(label.array.astype(np.uint8)), work / f"{phase}_seg.nii.gz")
        if phase in dicom_seg:
            from ...dicomseg import write_label
            from ...registry import get_spec

            write_label(label.with_array(label.array.astype(np.uint8)), work / f"{phase}_seg.dcm", "dicom-seg",
                        spec=get_spec("s4c"), source=dicom_seg[phase])
        suspicious_picture(ct, label, found[phase], work / f"{phase}.png", _phase_title(found[phase]))
        timings[f"{phase} outputs"] = round(time.perf_counter() - t0, 3)
        entry = {"input": inputs.get(phase), **found[phase].to_dict()}
        entry.pop("phase")
        entries[phase] = {**entry, "segmentation": f"{phase}_seg.nii.gz", "picture": f"{phase}.png",
                          "seconds": seconds, **({"dicom_seg": f"{phase}_seg.dcm"} if phase in dicom_seg else {})}
    verdict, reasons = case_verdict(list(found.values()))
    _warn_inconclusive(found, verdict)
    model = getattr(seg, "model", None)
    report = {
        "method": "s4c", "positive": positive_of(verdict), "verdict": verdict,
        "reasons": reasons, "rule": seg.rule.to_dict(),
        "model": {"folder": str(model.path) if model is not None else None,
                  "synthetic_training_data": model.card.get("training", {}).get("synthetic")
                  if model is not None else None},
        "phases": entries, "timings_s": {**timings, "total": round(time.perf_counter() - t_start, 3)},
    }
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (work / "report.md").write_text(report_markdown(report), encoding="utf-8")
    progress.emit_line(1.0, f"screening done: {verdict}")
    return report


def _warn_inconclusive(found: Mapping[str, PhaseFindings], verdict: str) -> None:
    """A :class:`LesionSegWarning` per inconclusive phase, naming its first failed check."""
    for phase, entry in found.items():
        if entry.inconclusive:
            outcome = ("the verdict is inconclusive, not negative" if verdict == INCONCLUSIVE
                       else f"that phase is inconclusive (the case is {verdict} from the other phase)")
            warnings.warn(f"the {phase} phase failed a check, so {outcome}: {entry.reasons[0]}", LesionSegWarning,
                          stacklevel=4)


def _phase_verdict(entry: Mapping[str, Any]) -> str:
    """A report phase entry's verdict, lower case; reports written before INCONCLUSIVE existed have only
    ``positive``, those before issue #18 an upper-case verdict."""
    if entry.get("verdict"):
        return as_verdict(entry["verdict"])
    return POSITIVE if entry.get("positive") else NEGATIVE


def _shout(verdict: str) -> str:
    """How a verdict is written for people: POSITIVE and INCONCLUSIVE in capitals, negative in small letters."""
    return verdict if verdict == NEGATIVE else verdict.upper()


def _phase_title(found: PhaseFindings) -> str:
    verdict = _shout(found.verdict)
    return (f"{found.phase} phase: {verdict} (tumour {found.tumour_mm3:.0f} mm3, "
            f"dilated duct {found.duct_mm3:.0f} mm3, pancreas {found.pancreas_mm3 / 1000:.1f} mL)")


def verdict_paragraph(report: dict) -> str:
    """One paragraph for a terminal: the case verdict, each phase's verdict and the reasons; an inconclusive
    verdict says what it means and what to check."""
    verdict = as_verdict(report["verdict"])
    phases = ", ".join(f"{name} {_phase_verdict(p)}" for name, p in report["phases"].items())
    text = f"S4C screening verdict: {verdict.upper()} ({phases}). " + " ".join(
        r if r.endswith(("?", "!")) else r.rstrip(".") + "." for r in report["reasons"])
    if verdict == INCONCLUSIVE:
        text += (" At least one phase failed its checks, so the case was not screened there (neither negative nor "
                 "positive): check that each input is an abdominal CT in HU covering the whole pancreas.")
    if report["model"].get("synthetic_training_data"):
        text += " The model was trained on synthetic phantoms only; this is not a diagnosis."
    return text


def report_markdown(report: dict) -> str:
    """``report.md``: verdict, reasons, a table of the phases, each phase's findings and picture."""
    rule = report["rule"]
    pancreas_ml = rule.get("pancreas_min_mm3", 0.0) / 1000
    adult = [rule.get(f"pancreas_adult_{end}_mm3") for end in ("min", "max")]
    limits = (f", outside {adult[0] / 1000:g}-{adult[1] / 1000:g} mL (plausible adult limits)"
              if None not in adult else "")
    lines = [f"# S4C screening: {_shout(as_verdict(report['verdict']))}", "",
             f"A phase is positive when its tumour reaches {rule['tumour_min_mm3']:g} mm3 or its dilated "
             f"pancreatic duct {rule['duct_min_mm3']:g} mm3. It is inconclusive, neither negative nor positive, when "
             f"it fails a check: its segmented pancreas is under {pancreas_ml:g} mL (none in view){limits}, or "
             "it lies in the chest. The case is positive when any phase is, inconclusive when no phase is positive "
             "and any phase is inconclusive, otherwise negative.", "",
             "Reasons:", ""] + [f"- {r}" for r in report["reasons"]]
    lines += ["", "| phase | verdict | tumour voxels | tumour mm3 | duct voxels | duct mm3 | pancreas mm3 | seconds |",
              "|---|---|---|---|---|---|---|---|"]
    for name, p in report["phases"].items():
        verdict = _phase_verdict(p)
        lines.append(f"| {name} | {_shout(verdict)} | {p['tumour_voxels']} | "
                     f"{p['tumour_mm3']:.0f} | {p['duct_voxels']} | {p['duct_mm3']:.0f} | {p['pancreas_mm3']:.0f} | "
                     f"{p['seconds']:.1f} |")
    for name, p in report["phases"].items():
        source = f"`{p['input']}`" if p["input"] else "not recorded"
        lines += ["", f"## {name} phase", "", f"Input: {source}; labels: `{p['segmentation']}`.", ""]
        if _phase_verdict(p) == INCONCLUSIVE:
            lines += ["This phase failed its checks and was not screened (inconclusive): see the reasons."
                      + (" What was segmented is listed, not read as findings:" if p["findings"] else ""), ""]
        if p["findings"]:
            lines += ["| kind | voxels | mm3 | centroid (LPS mm) | box (i, j, k) |", "|---|---|---|---|---|"]
            lines += [f"| {f['kind']} | {f['voxels']} | {f['volume_mm3']:.0f} | "
                      f"({', '.join(f'{v:.1f}' for v in f['centroid_lps'])}) | {f['box_ijk'][0]}..{f['box_ijk'][1]} |"
                      for f in p["findings"]]
        elif _phase_verdict(p) != INCONCLUSIVE:
            lines.append("No tumour or dilated duct found.")
        lines += ["", f"![{name} phase]({p['picture']})"]
    model = report["model"]
    lines += ["", f"Model: `{model['folder']}`." if model["folder"] else "Model: not recorded (a network given "
              "in code)."]
    if model.get("synthetic_training_data"):
        lines.append("**The model was trained on synthetic phantoms only. This report is not a diagnosis.**")
    lines.append("")
    return "\n".join(lines)


def picture_target(label: Image, found: PhaseFindings) -> tuple[np.ndarray, str]:
    """The voxel the pictures go through and why: the largest tumour's centroid, else the largest duct's,
    else the pancreas centre of mass, else the volume centre.

    Returns:
        ``(i, j, k)`` integer index inside ``label`` and a short description.
    """
    arr = np.asarray(label.array)
    for kind, value in (("tumour", TUMOUR), ("duct", DUCT)):
        parts = [f for f in found.findings if f.kind == kind]
        if parts:
            where = np.clip(np.rint(world_to_index(label, np.array([parts[0].centroid_lps]))[0]), 0,
                            label.size_ijk - 1).astype(int)
            if arr[where[2], where[1], where[0]] != value:  # a curved part: use its voxel nearest the centroid
                voxels = np.argwhere(arr == value)[:, ::-1]
                voxels = voxels[(voxels >= parts[0].box_ijk[0]).all(1) & (voxels <= parts[0].box_ijk[1]).all(1)]
                where = voxels[np.argmin(((voxels - where) ** 2).sum(1))]
            return where, f"largest {kind} ({parts[0].volume_mm3:.0f} mm3)"
    if arr.any():
        return np.rint(np.argwhere(arr > 0).mean(axis=0)[::-1]).astype(int), "pancreas centre (nothing found)"
    return label.size_ijk // 2, "volume centre (no pancreas found)"


def orthogonal_view(image: Image, target_ijk: np.ndarray, normal: int,
                    field_mm: float = VIEW_MM) -> tuple[np.ndarray, dict]:
    """The plane through ``target_ijk`` normal to index axis ``normal`` (0 i, 1 j, 2 k), cropped to about
    ``field_mm`` around the target and oriented the radiological way.

    Each in-plane axis is mapped to the LPS axis its direction follows most closely; rows and columns are
    flipped so that on screen x (patient left) grows rightwards, z (superior) grows upwards and y (posterior)
    grows downwards (axial) or rightwards (sagittal). Works for any axis-aligned or mildly oblique grid.

    Returns:
        the 2D array (rows, columns) and a dict: ``plane`` name, ``aspect`` (row / column spacing), ``target``
        (row, column) of the target voxel, ``ends`` (left, right, top, bottom patient sides), ``index``.
    """
    direction = np.asarray(image.direction)
    world_axis = np.abs(direction).argmax(axis=0)
    sign = np.sign(direction[world_axis, np.arange(3)])
    a, b = [ax for ax in range(3) if ax != normal]
    col, row = (a, b) if world_axis[a] < world_axis[b] else (b, a)
    half = np.maximum(np.round(field_mm / 2 / np.asarray(image.spacing)), 1).astype(int)
    target = np.asarray(target_ijk, int)
    span = {ax: (max(target[ax] - half[ax], 0), min(target[ax] + half[ax], image.size_ijk[ax] - 1)) for ax in (a, b)}
    index: list[Any] = [None, None, None]
    index[normal] = int(target[normal])
    for ax in (a, b):
        index[ax] = slice(span[ax][0], span[ax][1] + 1)
    plane = np.asarray(image.array)[index[2], index[1], index[0]]
    if row < col:  # numpy keeps the higher index axis first: (k, j, i) order
        plane = plane.T
    pos = [target[row] - span[row][0], target[col] - span[col][0]]
    flip_col = sign[col] < 0
    flip_row = sign[row] < 0 if world_axis[row] == 1 else sign[row] > 0
    if flip_col:
        plane, pos[1] = plane[:, ::-1], plane.shape[1] - 1 - pos[1]
    if flip_row:
        plane, pos[0] = plane[::-1], plane.shape[0] - 1 - pos[0]
    low, high = ENDS[world_axis[row]]
    top, bottom = (low, high) if world_axis[row] == 1 else (high, low)
    info = {"plane": PLANE_NAMES[int(np.abs(direction[:, normal]).argmax())],
            "aspect": float(image.spacing[row] / image.spacing[col]), "target": tuple(pos),
            "ends": (*ENDS[world_axis[col]], top, bottom), "index": f"{'ijk'[normal]}={index[normal]}"}
    return np.ascontiguousarray(plane), info


def suspicious_picture(ct: Image, label: Image, found: PhaseFindings, path: Path, title: str) -> Path:
    """Write a PNG of three orthogonal views (about :data:`VIEW_MM` mm wide) through :func:`picture_target`.

    CT in a soft-tissue window (W 400 / L 40 HU), pixels at their physical aspect ratio; outlines: pancreas
    (every non-zero label) green, tumour red, dilated duct yellow; the title (red when the phase is positive,
    orange when inconclusive) carries the verdict.

    Args:
        ct: the phase's CT (HU). label: its ``(K, J, I)`` labels 0..3 on the same grid.
        found: the phase's findings (:func:`.rules.phase_findings`). path: PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not label.same_grid(ct):
        raise InputError("the label image is not on the grid of the CT it describes")
    target, why = picture_target(label, found)
    fig, axes = plt.subplots(1, 3, figsize=(11.0, 4.3))
    for ax, normal in zip(axes, (2, 1, 0)):
        pixels, info = orthogonal_view(ct, target, normal)
        labels, _ = orthogonal_view(label, target, normal)
        ax.imshow(pixels.astype(np.float32), cmap="gray", vmin=SOFT_TISSUE[0], vmax=SOFT_TISSUE[1],
                  aspect=info["aspect"], interpolation="nearest")
        if min(labels.shape) >= 2:
            for name, mask in (("pancreas", labels > 0), ("tumour", labels == TUMOUR), ("duct", labels == DUCT)):
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=COLOURS[name], linewidths=1.2)
        left, right, top, bottom = info["ends"]
        for x, y, text in ((0.02, 0.5, left), (0.98, 0.5, right), (0.5, 0.98, top), (0.5, 0.02, bottom)):
            ax.text(x, y, text, transform=ax.transAxes, color="white", fontsize=8, ha="center", va="center",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.0, "linewidth": 0})
        ax.set_title(f"{info['plane']} ({info['index']})", fontsize=9)
        ax.set_xticks([info["target"][1]], labels=[])  # the target's row and column, marked on the frame
        ax.set_yticks([info["target"][0]], labels=[])
        ax.tick_params(color="cyan", length=7, width=2)
    handles = [Line2D([], [], color=c, lw=2, label=n) for n, c in COLOURS.items()]
    handles.append(Line2D([], [], color="cyan", marker="|", lw=0, mew=2, label="centre (frame ticks)"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    centre = np.round(ct.index_to_world @ np.append(target, 1.0), 1)[:3]
    fig.suptitle(f"{title}\ncentred on the {why} at ({centre[0]:.1f}, {centre[1]:.1f}, {centre[2]:.1f}) mm LPS; "
                 "CT W 400 / L 40", fontsize=9, color=TITLE_COLOURS.get(found.verdict, "black"))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
