"""Cohorts: one method over every case of a dataset folder or a CSV, resumable, locally or on a Ray cluster.

``lesionseg batch METHOD INPUT -o OUT`` (:mod:`lesionseg.cli.batch`) and :func:`run_batch` write::

    OUT/
        .lesionseg-batch.json    marks OUT as a batch folder of METHOD (a rerun must use the same method)
        summary.csv              one row per case: case, status (done / failed / not run), error, seconds,
        summary.json             lesions, volume_ml, suv_max, suv_mean, suv_peak, tlg_ml (PET in SUV), output, reused
        <case>/                  one folder per finished case, appearing whole (assembled in a hidden sibling):
            label.nii.gz         the label on the grid of the case's first input (or seg.dcm: a DICOM SEG)
            lesions.csv          the lesion table, for methods that have one (autopet-l2snet, small-lesion-il)
            mip.png              a preview picture, for methods that have one (autopet-l2snet)
            case.json            the record: settings, inputs, prompts, figures, seconds, files; written last
            .lesionseg-output.json

**Resume.** A case is finished when ``OUT/<case>/case.json`` says ``done`` and every file it lists exists; a rerun
of the same command skips finished cases (their rows come from their records, ``reused`` true) and runs the rest:
failed cases, cases that did not run, and cases whose folder is incomplete (replaced, since LesionSeg wrote it).
``--redo`` recomputes all. A finished case made with other settings (options, output format) stops the run
with a message instead of mixing results. A killed run (Ctrl-C, SIGTERM, SIGKILL) leaves no partial case
folder visible: unfinished cases live in hidden ``.<case>.lesionseg-<pid>-<hex>~tmp`` folders, removed when the
run is interrupted or, after SIGKILL, by the next run.

**Failures.** A case that fails (unreadable or missing image, no prompt, a prompt outside the image, out of
memory, a worker process killed) is recorded with the one-line message ``lesionseg`` prints for that error, and
the other cases go on; the command exits with status 3 when any case failed.
"""
from __future__ import annotations

from .cases import BatchCase, list_cases
from .engines import ENGINES
from .runner import COLUMNS, BatchResult, run_batch
from .worker import RECORD, BatchConfig, CaseRunner, describe_error

EXIT_CASES_FAILED = 3
"""Exit status of ``lesionseg batch`` when the run ended but at least one case failed."""

__all__ = ["BatchCase", "BatchConfig", "BatchResult", "CaseRunner", "COLUMNS", "ENGINES", "EXIT_CASES_FAILED",
           "RECORD", "describe_error", "list_cases", "run_batch"]
