"""S4C speed and memory on the CPU, and how the sliding-window stride trades time against accuracy.

    python benchmarks/bench_s4c.py [--threads 2] [--weights MODEL_DIR] [--strides 20 32 48] [--cases 4]

Part 1 (speed): one phase of an abdominal-CT-sized phantom, 512 x 512 x 150 voxels at 0.78 x 0.78 x 2.0 mm
(the venous phase of ``lesionseg.phantoms.pancreas.pancreas_ct`` at that shape), ``set_image`` end to end
(resampling to the working grid, majority-vote sliding window, back to the input grid, post-processing) for
each stride, each in a fresh process so that its peak resident memory (``ru_maxrss``) is its own.
Goal: <= 60 s at the paper's stride 20 and <= 4 GB on two cores (the paper: about 10 min per case on a V100).

Part 2 (accuracy): ``--cases`` synthetic phantom cases that were in no training set (seeds from 9000), both
phases, at each stride: pancreas and tumour Dice and the verdicts (correct, and inconclusive, which is never
counted as correct). All numbers are on synthetic phantoms.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

SHAPE = (150, 512, 512)
SPACING = (0.78, 0.78, 2.0)


def one_run(weights: str | None, stride: int, threads: int) -> dict:
    """Time one phase at ``stride`` (run in a child process)."""
    import torch

    from lesionseg.methods.s4c.voting import count_windows
    from lesionseg.phantoms.pancreas import pancreas_ct
    from lesionseg.registry import build

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    _, venous, _, _ = pancreas_ct(seed=1, kind="tumour", shape=SHAPE, spacing=SPACING)
    t_gen = time.perf_counter() - t0
    seg = build("s4c", weights=weights, device="cpu")
    seg.set_stride(stride)
    t0 = time.perf_counter()
    seg.set_image(venous)
    seconds = time.perf_counter() - t0
    found = seg.findings("venous")
    return {"stride": stride, "seconds": round(seconds, 1), "windows": count_windows(seg.raw.shape, seg.prep.patch, stride),
            "working_grid": list(seg.raw.shape), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
            "phantom_seconds": round(t_gen, 1), "verdict": found.verdict}


def accuracy(weights: str | None, strides: list[int], cases: int, threads: int) -> list[dict]:
    import torch

    from lesionseg import Image
    from lesionseg.metrics import dice
    from lesionseg.phantoms.pancreas import pancreas_ct
    from lesionseg.registry import build

    torch.set_num_threads(threads)
    seg = build("s4c", weights=weights, device="cpu")
    kinds = ["tumour", "normal", "tumour+duct", "duct"]
    rows = []
    for stride in strides:
        seg.set_stride(stride)
        d_panc, d_tum, correct, inconclusive, seconds = [], [], 0, 0, 0.0
        for n in range(cases):
            arterial, venous, label, info = pancreas_ct(seed=9000 + n, kind=kinds[n % len(kinds)])
            for phase, image in (("arterial", arterial), ("venous", venous)):
                t0 = time.perf_counter()
                seg.set_image(image)
                seconds += time.perf_counter() - t0
                pred = seg.predict()
                d_panc.append(dice(pred.with_array(pred.array > 0), label.with_array(label.array > 0)))
                if (label.array == 2).any():
                    d_tum.append(dice(pred.with_array(pred.array == 2), label.with_array(label.array == 2)))
                verdict = seg.findings(phase).verdict  # an inconclusive phase is not a correct call
                correct += verdict == ("positive" if info["positive"] else "negative")
                inconclusive += verdict == "inconclusive"
        rows.append({"stride": stride, "dsc_pancreas": round(float(np.mean(d_panc)), 3),
                     "dsc_tumour": round(float(np.mean(d_tum)), 3) if d_tum else None,
                     "correct_phase_verdicts": f"{correct}/{2 * cases}",
                     "inconclusive_phases": f"{inconclusive}/{2 * cases}",
                     "seconds_per_phase": round(seconds / (2 * cases), 2)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=None, help="s4c model folder (default: the shipped one)")
    parser.add_argument("--strides", type=int, nargs="+", default=[20, 32, 48])
    parser.add_argument("--cases", type=int, default=4, help="phantom cases for the accuracy part (0: skip)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_run(args.weights, args.child, args.threads)))
        return 0
    print(f"# S4C benchmark: {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}; synthetic phantoms")
    print(f"## speed: one phase, {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} voxels at {SPACING} mm (goal <= 60 s, <= 4 GB)")
    for stride in args.strides:
        cmd = [sys.executable, __file__, "--threads", str(args.threads), "--child", str(stride)]
        if args.weights:
            cmd += ["--weights", args.weights]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1])
    if args.cases:
        print(f"## accuracy against stride: {args.cases} held-out phantom cases x 2 phases")
        for row in accuracy(args.weights, args.strides, args.cases, args.threads):
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
