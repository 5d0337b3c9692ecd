"""One batch run: list the cases, skip the finished ones, run the rest on an engine, write the summary."""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from .. import progress
from ..errors import InputError
from .cases import BatchCase, list_cases
from .engines import ENGINES, run_local, run_ray
from .worker import SUV_FIELDS, BatchConfig, finished, read_record

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
BATCH_MARKER = ".lesionseg-batch.json"
"""Marks ``OUT`` as a batch output folder (method, first command); a rerun must use the same method."""
COLUMNS = ("case", "status", "error", "seconds", "lesions", "volume_ml", *SUV_FIELDS, "output", "reused")
"""Columns of ``summary.csv`` (``summary.json`` holds the same rows): status ``done``, ``failed`` or ``not run``
(interrupted before the case started); ``reused``: finished by an earlier run and not recomputed."""


@dataclass
class BatchResult:
    """What a batch run did: one summary row per case (in case-list order) and the counts."""

    rows: list[dict]
    seconds: float
    summary_csv: Path
    summary_json: Path
    counts: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "failed"]


def _prepare_output(output: Path, method: str, command: str) -> None:
    """Create ``output`` or accept it as this method's earlier batch folder; InputError for anything else."""
    from ..outputs import check_output_folder, sweep_stale

    marker = output / BATCH_MARKER
    if output.is_dir() and marker.is_file():
        try:
            earlier = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = {}
        if earlier.get("method") != method:
            raise InputError(f"{output} holds a batch of {earlier.get('method', 'another method')!r}, not {method!r}; "
                             "choose another output folder")
        sweep_stale(output)
        return
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()):
        raise InputError(f"{output} is not empty and is not a lesionseg batch folder (no {BATCH_MARKER}); choose a "
                         "new or empty folder")
    check_output_folder(output)
    output.mkdir(exist_ok=True)
    marker.write_text(json.dumps({"tool": "lesionseg batch", "method": method, "command": command,
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n", encoding="utf-8")


def _record_row(case: BatchCase, record: dict, reused: bool = True) -> dict:
    """The summary row of a finished case, from its record."""
    row = {k: record.get(k) for k in COLUMNS if k in record}
    row.update(case=case.name, status="done", error="", reused=reused,
               output=str(Path(case.name) / record.get("files", [""])[0]))
    return row


def _unreported(case: BatchCase, output: Path) -> dict:
    """The row of a case whose result did not arrive (an interrupted run): done when its folder is finished (a
    worker finished it just before the interruption), else ``not run``."""
    record = read_record(output / case.name)
    if finished(output / case.name, record):
        return _record_row(case, record, reused=False)
    return {"case": case.name, "status": "not run", "error": "", "reused": False}


def partition(cases: Sequence[BatchCase], output: Path, config: BatchConfig,
              redo: bool) -> tuple[list[BatchCase], dict[str, dict]]:
    """``(cases to run, {case: summary row of a finished case})``.

    A case is finished when ``OUT/<case>/case.json`` says done and lists files that all exist; it is then reused,
    unless ``redo``. A finished case made with another method, other options or another output format is an
    InputError (rerun with ``--redo``, or write elsewhere) rather than a silent mix.
    """
    todo, reused = [], {}
    for case in cases:
        folder = output / case.name
        record = read_record(folder)
        if redo or not finished(folder, record):
            todo.append(case)
            continue
        earlier = {k: record.get(k) for k in config.settings()}
        if earlier != config.settings():
            changed = ", ".join(k.replace("_", " ") for k in earlier if earlier[k] != config.settings()[k])
            raise InputError(f"{folder} was made with other settings ({changed}); pass --redo to replace the finished "
                             "cases, or write to another folder")
        reused[case.name] = _record_row(case, record)
    return todo, reused


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_summary(output: Path, rows: list[dict], meta: dict) -> tuple[Path, Path]:
    """``OUT/summary.csv`` and ``OUT/summary.json`` (rows under :data:`COLUMNS`), each replaced atomically."""
    from ..outputs import atomic_write

    table = [{c: row.get(c, False if c == "reused" else None) for c in COLUMNS} for row in rows]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in table:
        writer.writerow([_cell(row[c]) for c in COLUMNS])
    text = json.dumps({**meta, "cases": table}, indent=1, allow_nan=False) + "\n"
    paths = output / "summary.csv", output / "summary.json"
    for path, content in zip(paths, (buffer.getvalue(), text)):
        atomic_write(path, lambda tmp, c=content: Path(tmp).write_text(c, encoding="utf-8"), overwrite=True)
    return paths


def run_batch(source: PathLike, method: str, output: PathLike, *, options: Optional[dict] = None,
              weights: Optional[PathLike] = None, device: str = "auto", output_format: str = "nifti",
              split: str = "auto", engine: str = "local", workers: Optional[int] = None, ray_address: str = "auto",
              cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, redo: bool = False, command: str = "",
              debug: bool = False, report: Optional[Callable[[dict], None]] = None) -> BatchResult:
    """Segment every case of ``source`` (a dataset folder or a CSV, :mod:`.cases`) with ``method`` into ``output``.

    Args:
        options: the method's predict-time settings (``Options.to_dict()`` form; default: its defaults).
        output_format: ``"nifti"`` (``label.nii.gz``) or ``"dicom-seg"`` (``seg.dcm``; each case's first input must
            be a DICOM series folder).
        engine, workers, ray_address, cpus_per_worker, gpus_per_worker: see :mod:`.engines` (``workers`` None: 1
            worker per GPU with CUDA, else 1 locally; the cluster's CPUs on Ray).
        redo: recompute finished cases too.
        report: called with each case's summary row as it ends (the CLI prints failures).

    Returns:
        the :class:`BatchResult`; a failed case does not raise (its row holds the error).

    Raises:
        InputError / WeightsError: a bad source, method, options, engine or output folder, or a model that cannot
            be built (before any case runs). ``KeyboardInterrupt`` and termination after the summary (with the
            cases that did not run marked ``not run``) is written; no partial case folder is left.
    """
    from ..dicomseg import check_format
    from ..modelfolder import find_model_folder
    from ..registry import get_spec
    from ..errors import WeightsError

    t0 = time.perf_counter()
    spec = get_spec(method)
    check_format(output_format)
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    opts = spec.options.from_dict(options or {}).to_dict()
    if spec.needs_weights and find_model_folder(method, weights) is None:
        raise WeightsError(f"no trained model found for {method!r}: pass --weights DIR or set LESIONSEG_WEIGHTS")
    cases = list_cases(source, spec.inputs, spec.optional_inputs, split)
    if output_format == "dicom-seg" and Path(source).is_dir():
        raise InputError("--output-format dicom-seg needs DICOM series as inputs; a dataset folder holds image files: "
                         "list the DICOM folders in a CSV, or use --output-format nifti")
    out = Path(output)
    config = BatchConfig(method, str(out.absolute()), opts, str(weights) if weights else None, device, output_format,
                         command, debug)
    _prepare_output(out, method, command)
    todo, rows = partition(cases, out, config, redo)
    meta = {"method": method, "source": str(Path(source).absolute()), "output_format": output_format,
            "engine": engine, "options": opts, "command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    total = len(todo)
    try:
        with progress.task(f"batch {method}", total=total) as update:
            def on_result(row: dict) -> None:
                rows[row["case"]] = {**row, "reused": False}
                update(len(rows) - (len(cases) - total), total)
                if report is not None:
                    report(row)

            if todo and engine == "local":
                run_local(config, todo, workers or _default_workers(device), on_result)
            elif todo:
                run_ray(config, todo, workers, on_result, ray_address, cpus_per_worker, gpus_per_worker)
    finally:
        ordered = [rows.get(c.name) or _unreported(c, out) for c in cases]
        counts = {s: sum(r["status"] == s for r in ordered) for s in ("done", "failed", "not run")}
        counts["reused"] = sum(bool(r.get("reused")) for r in ordered)
        seconds = round(time.perf_counter() - t0, 3)
        paths = write_summary(out, ordered, {**meta, "seconds": seconds, "counts": counts})
    return BatchResult(ordered, seconds, paths[0], paths[1], counts)


def _default_workers(device: str) -> int:
    from .engines import gpu_count

    return max(1, gpu_count(device))
