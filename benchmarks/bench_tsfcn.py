"""TS-FCN speed on the CPU: per-slice latency and a 30-slice ROI, beside GrabCut on the same crops.

    python benchmarks/bench_tsfcn.py [--threads 2] [--repeats 7] [--weights MODEL_DIR]

Input: the seeded chest phantom (``lesionseg.phantoms.chest_ct``, 40 x 256 x 256 voxels, 0.8 x 0.8 x 2.5 mm),
a box around its first nodule widened to 30 slices. Timed: ``predict(box)`` end to end (crop, resize,
network, paste back) for a one-slice box and for the 30-slice box, for the default (shipped) model, the
``paper`` configuration (random weights: speed does not depend on their values), GrabCut and GrabCut +
DenseCRF (``classical-box``). Medians of ``--repeats`` runs after one warm-up (the paper model's 30-slice
ROI: one run after the warm-up, it takes seconds); the load average is printed
because the machine may be shared. Goal for the default model: <= 20 ms per slice, <= 0.6 s per 30 slices.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import lesionseg
from lesionseg import Box, LesionSegWarning
from lesionseg.geometry import index_box_to_world
from lesionseg.methods.classical import ClassicalBox
from lesionseg.methods.tsfcn import TSFCN
from lesionseg.methods.tsfcn.network import TSFCNNet
from lesionseg.phantoms import chest_ct


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def boxes(label: lesionseg.Image, info: dict, slices: int) -> tuple[Box, Box]:
    """A one-slice box through the first nodule's centre and the same box spanning ``slices`` slices."""
    lo, hi = (np.array(v) for v in info["lesions"][0]["box_ijk"])
    kc = int((lo[2] + hi[2]) // 2)
    k0 = max(0, min(kc - slices // 2, label.shape[0] - slices))
    one = index_box_to_world(label, [lo[0], lo[1], kc], [hi[0], hi[1], kc])
    tall = index_box_to_world(label, [lo[0], lo[1], k0], [hi[0], hi[1], k0 + slices - 1])
    return one, tall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--weights", type=Path, help="TS-FCN model folder (default: the shipped one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, label, info = chest_ct(seed=0, shape=(40, 256, 256))
    one, tall = boxes(label, info, args.slices)
    default = lesionseg.build("tsfcn", weights=args.weights, device="cpu")
    card = default.model.model_card.networks["weights.pt"]
    paper = TSFCN(net=TSFCNNet.from_config("paper"), preprocessing=default.prep)
    methods = {f"tsfcn {card.get('config', '')} (default, {card.get('parameters', 0) / 1e6:.1f} M)": default,
               "tsfcn paper (69.3 M)": paper,
               "GrabCut": ClassicalBox(use_crf=False), "GrabCut + DenseCRF": ClassicalBox()}
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}; "
          f"phantom {image.shape}, nodule box {one.hi - one.lo} mm")
    print(f"{'method':36s} {'1 slice ms':>11s} {args.slices:>3d}-slice ROI s {'ms/slice':>9s}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LesionSegWarning)
        for name, seg in methods.items():
            seg.set_image(image)
            t1 = median_seconds(lambda: seg.predict(one), args.repeats)
            tn = median_seconds(lambda: seg.predict(tall), 1 if seg is paper else max(3, args.repeats // 2))
            print(f"{name:36s} {t1 * 1000:11.1f} {tn:16.3f} {tn / args.slices * 1000:9.1f}")
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.zeros(1, 3, 100, 100).contiguous(memory_format=layout)
        for config in ("lite", "fast", "slim", "paper"):
            net = TSFCNNet.from_config(config).eval().to(memory_format=layout)
            with torch.inference_mode():
                t = median_seconds(lambda: net(x), args.repeats)
                t30 = median_seconds(lambda: net(x.expand(args.slices, -1, -1, -1).contiguous(memory_format=layout)),
                                     1 if config == "paper" else 3)
            print(f"network only, {config}, 1x3x100x100, {str(layout).split('.')[-1]}: {t * 1000:.1f} ms; "
                  f"{args.slices} slices in one batch {t30 * 1000:.0f} ms")


if __name__ == "__main__":
    main()
