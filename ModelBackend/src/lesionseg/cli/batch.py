"""``lesionseg batch METHOD INPUT -o OUT``: one method over a cohort, resumable, locally or on a Ray cluster.

INPUT is a dataset folder (``imagesTs``/``imagesTr``, prompts from ``prompts.json``) or a CSV with one row per
case (:mod:`lesionseg.batch.cases`); OUT gets one folder per case and ``summary.csv``/``summary.json``
(:mod:`lesionseg.batch`). The method's own flags are those of ``lesionseg predict METHOD``. Each failed case is
printed as one ``error: case <id>: ...`` line as it happens; the run goes on. Exit status: 0 every case done,
3 at least one case failed (the summary says which and why), 2 bad input before any case ran, 130/143 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

HELP = "segment a cohort (dataset folder or CSV) with a method; resumable; local processes or Ray"


def add_parser(sub: argparse._SubParsersAction, argv: Sequence[str] = ()) -> None:
    """``lesionseg batch METHOD ...`` with every registered method's flags."""
    from ..batch.cases import SPLITS
    from ..batch.engines import ENGINES
    from ..dicomseg import FORMATS
    from ..registry import list_specs

    cmd = sub.add_parser("batch", help=HELP, description=HELP)
    methods = cmd.add_subparsers(dest="method", metavar="METHOD", required=True)
    for spec in list_specs():
        p = methods.add_parser(spec.name, help=spec.summary, description=spec.summary)
        p.add_argument("input", type=Path, metavar="INPUT",
                       help="dataset folder (dataset.json, imagesTs/imagesTr) or CSV file (one row per case)")
        p.add_argument("-o", "--output", required=True, type=Path,
                       help="output folder (created; a rerun into it skips finished cases)")
        p.add_argument("--split", choices=SPLITS, default="auto",
                       help="dataset folder: imagesTs (test), imagesTr (train), all, or auto = imagesTs if it holds "
                            "cases, else imagesTr")
        p.add_argument("--output-format", choices=FORMATS, default="nifti",
                       help="nifti: OUT/<case>/label.nii.gz; dicom-seg: OUT/<case>/seg.dcm (the case's first input "
                            "must be a DICOM series folder)")
        p.add_argument("--redo", action="store_true", help="recompute cases that an earlier run finished")
        p.add_argument("--engine", choices=ENGINES, default="local",
                       help="local: worker processes on this machine; ray: actors on a Ray cluster "
                            "(pip install 'lesionseg[ray]')")
        p.add_argument("--workers", type=int, default=None,
                       help="workers, each loading the model once (default: local 1, or 1 per GPU; ray: the "
                            "cluster's CPUs / --cpus-per-worker)")
        p.add_argument("--ray-address", default="auto",
                       help="ray: auto (the running cluster), HOST:PORT, or local (a Ray instance on this machine)")
        p.add_argument("--cpus-per-worker", type=float, default=1.0, help="ray: CPUs per worker (torch threads)")
        p.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per worker (e.g. 1, or 0.5)")
        p.add_argument("--weights", type=Path, help="model folder (default: $LESIONSEG_WEIGHTS, then built-in)")
        p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="where networks run (default: auto = cuda if available)")
        spec.options.add_arguments(p, f"{spec.name} options")


def _report(row: dict) -> None:
    """Print a failed case as one line (above the progress bar)."""
    if row["status"] != "failed":
        return
    from tqdm import tqdm

    tqdm.write(f"error: case {row['case']}: {row['error']}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg batch``; returns the exit status."""
    from ..batch import EXIT_CASES_FAILED, run_batch
    from ..registry import get_spec

    spec = get_spec(args.method)
    options = spec.options.from_namespace(args).to_dict()
    result = run_batch(args.input, args.method, args.output, options=options, weights=args.weights,
                       device=args.device, output_format=args.output_format, split=args.split, engine=args.engine,
                       workers=args.workers, ray_address=args.ray_address, cpus_per_worker=args.cpus_per_worker,
                       gpus_per_worker=args.gpus_per_worker, redo=args.redo, command=args.command_line,
                       debug=args.debug, report=_report)
    counts = result.counts
    print(f"batch {args.method}: {counts['done']} done ({counts['reused']} from an earlier run), {counts['failed']} "
          f"failed in {result.seconds:.1f} s; summary: {result.summary_csv}")
    return EXIT_CASES_FAILED if counts["failed"] else 0
