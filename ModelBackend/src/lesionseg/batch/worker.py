"""One batch worker: builds the method once, then segments case after case into ``OUT/<case>/``.

:class:`CaseRunner` is what every engine runs (in the calling process, in worker processes, in Ray actors), so
the outputs are the same whichever engine ran them. A case's folder is assembled in a hidden temporary sibling
from the moment the case starts (:func:`lesionseg.outputs.output_folder`) and renamed into place when every
output is written and verified; its record ``case.json`` is written last inside it. An error in a case is caught
and returned as that case's result (:func:`describe_error`: the line ``lesionseg`` prints after ``error:``);
``KeyboardInterrupt`` and termination pass through after the temporary folder is removed.
"""
from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError, LesionSegError
from .cases import BatchCase

log = logging.getLogger(__name__)
RECORD = "case.json"
"""The per-case record; a case is finished when it says ``"status": "done"`` and every file it lists exists."""
OUTPUT_NAMES = {"table": "lesions.csv", "mip": "mip.png"}
"""File names of the spec's extra outputs in a case folder (the lesion table as CSV, autoPET's MIP)."""
LABEL_NAMES = {"nifti": "label.nii.gz", "dicom-seg": "seg.dcm"}
SUV_FIELDS = ("suv_max", "suv_mean", "suv_peak", "tlg_ml")


@dataclass(frozen=True)
class BatchConfig:
    """What every worker needs (picklable): the method and its settings, where outputs go, how to write them."""

    method: str
    output: str
    options: dict = field(default_factory=dict)
    weights: Optional[str] = None
    device: str = "auto"
    output_format: str = "nifti"
    command: str = ""
    debug: bool = False

    def settings(self) -> dict:
        """What a finished case must have been made with to be reused (method, options, output format)."""
        return {"method": self.method, "options": self.options, "output_format": self.output_format}


def describe_error(exc: BaseException) -> str:
    """The one line ``lesionseg`` prints for ``exc`` (without ``error:``): the message of a
    :class:`~lesionseg.errors.LesionSegError`, "out of memory ..." for memory errors (CPU or GPU), else
    ``unexpected <Type>: <message>``."""
    if isinstance(exc, LesionSegError):
        return str(exc)
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return f"out of memory ({name}: {str(exc).splitlines()[0] if str(exc) else 'no message'})"
    return f"unexpected {name}: {exc}"


def read_record(folder: Path) -> Optional[dict]:
    """The record of a case folder (None when absent or unreadable)."""
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def finished(folder: Path, record: Optional[dict]) -> bool:
    """A case is finished when its record says done and every file it lists is in its folder."""
    return bool(record) and record.get("status") == "done" and all(
        (folder / name).is_file() for name in record.get("files", ()))


def lesion_value(classes: tuple[str, ...]) -> Optional[int]:
    """The label value counted as lesion in the summary: the class named ``lesion``, ``tumour`` or ``nodule``;
    None (every value > 0) when there is none."""
    for name in ("lesion", "tumour", "nodule"):
        if name in classes:
            return classes.index(name)
    return None


def figures(rows: list[dict], suv: bool) -> dict:
    """Summary figures of a case from its lesion-table rows: ``lesions``, ``volume_ml`` and, for a PET in SUV,
    ``suv_max`` (highest of any lesion), ``suv_mean`` (over all lesion voxels), ``suv_peak`` (highest lesion
    SUVpeak) and ``tlg_ml`` (summed TLG, SUVbw x mL)."""
    out: dict[str, Any] = {"lesions": len(rows), "volume_ml": float(sum(r["volume_ml"] for r in rows))}
    if suv:
        voxels = sum(r["voxels"] for r in rows)
        out.update(suv_max=max((r["suv_max"] for r in rows), default=None),
                   suv_mean=sum(r["suv_mean"] * r["voxels"] for r in rows) / voxels if voxels else None,
                   suv_peak=max((r["suv_peak"] for r in rows), default=None),
                   tlg_ml=float(sum(r["tlg_ml"] for r in rows)))
    return out


class CaseRunner:
    """Builds ``config.method`` once (:func:`lesionseg.build`) and runs cases with it (:meth:`run`).

    Raises (at construction): :class:`~lesionseg.errors.LesionSegError` for an unknown method, bad options or a
    missing or broken model folder.
    """

    def __init__(self, config: BatchConfig) -> None:
        from ..registry import build, get_spec

        self.config = config
        self.spec = get_spec(config.method)
        self.options = self.spec.options.from_dict(config.options)
        self.segmenter = build(config.method, weights=config.weights, device=config.device, options=self.options)
        self.output = Path(config.output)

    def run(self, case: BatchCase) -> dict:
        """Segment ``case`` into ``OUT/<case>/``; returns its summary row (``status`` ``"done"`` or ``"failed"``
        with ``error``). Only ``KeyboardInterrupt`` and other ``BaseException`` s that are not ``Exception`` pass."""
        from ..outputs import output_folder

        t0 = time.perf_counter()
        row: dict[str, Any] = {"case": case.name, "status": "failed", "error": "", "seconds": 0.0,
                               "worker": os.getpid()}
        try:
            if case.problem:
                raise InputError(case.problem)
            with output_folder(self.output / case.name, overwrite=True, inputs=case.images,
                               command=self.config.command) as work:
                row.update(self._segment(case, work, t0))
            row["status"] = "done"
        except Exception as exc:  # noqa: BLE001 - a failing case is recorded and the batch goes on
            row["error"] = describe_error(exc)
            if self.config.debug or not isinstance(exc, LesionSegError):
                log.debug("case %s failed:\n%s", case.name, traceback.format_exc())
        row["seconds"] = round(time.perf_counter() - t0, 3)
        return row

    def _images(self, case: BatchCase) -> list:
        from ..io import read_image
        from ..registry import load_object

        if self.spec.reader is not None:
            return list(load_object(self.spec.reader)([Path(p) for p in case.images], self.options, case.series))
        return [read_image(p, list(case.series) or None) for p in case.images]

    def _prompts(self, case: BatchCase, image) -> list:
        from ..geometry import index_box_to_world
        from ..prompts import prompt_from_dict

        if self.spec.prompt == "none":
            return [None]
        if not case.prompts:
            raise InputError(f"{self.spec.name} needs a {self.spec.prompt} prompt and case {case.name} has none "
                             f"(give a '{self.spec.prompt}' column in the CSV, or an entry in prompts.json)")
        return [index_box_to_world(image, p["lo"], p["hi"]) if p.get("kind") == "box_ijk" else prompt_from_dict(p)
                for p in case.prompts]

    def _segment(self, case: BatchCase, work: Path, t0: float) -> dict:
        """Read, segment and write one case into the temporary folder ``work``; returns the row's figures."""
        from ..dicomseg import check_source, write_label
        from ..lesions import lesion_table, read_lesion_table
        from ..registry import load_object

        fmt = self.config.output_format
        if fmt == "dicom-seg":
            check_source(case.images[0], "the case's first input")
        images = self._images(case)
        prompts = self._prompts(case, images[0])
        self.segmenter.set_image(*images)
        label = None
        for prompt in prompts:  # several prompts (e.g. several lesions of one case): the union of their labels
            found = self.segmenter.predict(prompt)
            label = found if label is None else label.with_array(np.maximum(label.array, found.array))
        files = [LABEL_NAMES[fmt]]
        series = case.series[0] if len(case.series) == 1 else None
        write_label(label, work / files[0], fmt, spec=self.spec, source=case.images[0], prompts=prompts,
                    series_uid=series, inputs=case.images)
        for out in self.spec.outputs:
            name = OUTPUT_NAMES.get(out.name, f"{out.name}{out.suffixes[0]}")
            load_object(out.writer)(self.segmenter, label, work / name, False)
            files.append(name)
        suv = str(images[0].meta.get("units", "")).upper().startswith("SUV")
        if "lesions.csv" in files:
            rows = read_lesion_table(work / "lesions.csv")["lesions"]
        else:
            rows = lesion_table(label, images[0], pet=images[0] if suv else None,
                                label_value=lesion_value(self.spec.classes))
        found = figures(rows, suv)
        record = {"case": case.name, "status": "done", **self.config.settings(), "inputs": list(case.images),
                  "series": list(case.series), "prompts": list(case.prompts), **found,
                  "seconds": round(time.perf_counter() - t0, 3), "files": files,
                  "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": self.config.command}
        from .. import __version__

        record["lesionseg"] = __version__
        (work / RECORD).write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        return {**found, "output": str(Path(case.name) / files[0])}


def config_dict(config: BatchConfig) -> dict:
    """``config`` as a JSON-ready dict (for summary.json)."""
    return asdict(config)
