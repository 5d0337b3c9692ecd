"""``lesionseg batch`` throughput: cases per minute with 1 and 2 local workers and with Ray, against one
``lesionseg predict`` process per case (the shell loop batch replaces).

Every figure is the wall time of whole commands (start-up, model build, reading, segmenting, writing) on the same
phantom cohort (chest CT phantoms with one nodule, ``classical-box`` with a box per case from ``prompts.json``),
run as subprocesses one after the other on this machine. Printed: cases per minute per engine, the per-case time
of the shell loop and of a 1-worker batch, their ratio (the figure to report), and the load average before and
after (timings on a busy machine are not comparable). Ray's figure includes starting a local Ray instance.

    python benchmarks/bench_batch.py [--cases 16] [--shape 24 128 128] [--no-ray]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lesionseg
from lesionseg.phantoms import chest_ct

LESIONSEG = [sys.executable, "-m", "lesionseg", "--progress", "none"]


def make_cohort(root: Path, n: int, shape: tuple[int, int, int]) -> list[tuple[Path, lesionseg.Box]]:
    """A dataset folder of ``n`` phantom cases with a box per case (3 mm margin) in prompts.json."""
    (root / "imagesTs").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 0,
                                                   "labels": {"background": 0, "lesion": 1}}))
    cases, prompts = [], {}
    for i in range(n):
        ct, _, info = chest_ct(seed=i, shape=shape, spacing=(1.0, 1.0, 2.5), n_nodules=1, diameter_mm=(15.0, 25.0))
        lo, hi = (np.asarray(v) for v in info["lesions"][0]["box_lps"])
        box = lesionseg.Box(lo - 3.0, hi + 3.0)
        path = root / "imagesTs" / f"case{i:03d}_0000.nii.gz"
        lesionseg.write_image(ct, path)
        prompts[f"case{i:03d}"] = [box.to_dict()]
        cases.append((path, box))
    (root / "prompts.json").write_text(json.dumps(prompts))
    return cases


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return seconds


def case_seconds(out: Path) -> float:
    """Median seconds of one case inside a batch (reading, segmenting, writing), from summary.json."""
    rows = json.loads((out / "summary.json").read_text())["cases"]
    return float(np.median([r["seconds"] for r in rows if r["status"] == "done"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 128, 128), metavar=("K", "J", "I"))
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        cases = make_cohort(work / "Dataset999_Bench", args.cases, tuple(args.shape))
        data = str(work / "Dataset999_Bench")
        print(f"{args.cases} cases of {tuple(args.shape)} voxels, classical-box, {os.cpu_count()} CPUs; "
              f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        runs = {"batch, 1 worker": ["--workers", "1"], "batch, 2 workers": ["--workers", "2"]}
        if not args.no_ray:
            runs["batch, Ray (local instance, 2 actors)"] = ["--engine", "ray", "--ray-address", "local",
                                                            "--workers", "2"]
        seconds = {}
        for name, extra in runs.items():
            out = work / f"out-{len(seconds)}"
            seconds[name] = timed(LESIONSEG + ["batch", "classical-box", data, "-o", str(out), *extra])
            if name == "batch, 1 worker":
                inside = case_seconds(out)
        t0 = time.perf_counter()
        for i, (path, box) in enumerate(cases):
            timed(LESIONSEG + ["predict", "classical-box", str(path), "-o", str(work / f"p{i}.nii.gz"),
                               "--box", *map(str, (*box.lo, *box.hi))])
        seconds["one 'lesionseg predict' per case"] = time.perf_counter() - t0
        print(f"{'run':42s} {'seconds':>8s} {'cases/min':>10s} {'s/case':>7s}")
        for name, s in seconds.items():
            print(f"{name:42s} {s:8.1f} {args.cases * 60.0 / s:10.1f} {s / args.cases:7.2f}")
        loop, batch = seconds["one 'lesionseg predict' per case"], seconds["batch, 1 worker"]
        print(f"median work per case inside the batch (read, segment, write): {inside:.2f} s")
        print(f"per-case overhead of the predict loop: {(loop - batch) / args.cases:.2f} s "
              f"(start-up and model build each time)")
        print(f"ratio predict-loop time / 1-worker batch time: {loop / batch:.2f}")
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
