"""small-lesion-il inference speed and peak memory on the CPU: sliding window over an abdominal CT.

    python benchmarks/bench_small_lesion.py [--threads 2] [--weights MODEL_DIR] [--sizes 75 150 300]
                                            [--prior-mean HU --prior-sd HU]

A synthetic CT of ``K x 512 x 512`` voxels at 0.78 x 0.78 x 1.0 mm (a body ellipse of 340 x 240 mm with fat,
soft tissue, a spine and a few 130 HU spheres, 12 HU noise; made slab by slab so that its temporaries stay
small) goes through ``set_image`` end to end: body crop, resampling to the 1 mm working grid, Gaussian-blended
sliding window, back to the CT grid and the threshold, then ``lesions()``. Each size runs in a fresh process so
that its peak resident memory (``ru_maxrss``, which includes the CT itself) is its own. ``K`` = 300 is the
issue's 512 x 512 x 300 case (goal <= 60 s, <= 4 GB on two cores); the smaller ``K`` show the scaling.
``--prior-mean/--prior-sd`` adds a user prior (P x L(HU)), which adds the anisotropic diffusion of the working
grid. Without ``--weights`` (and no built-in model) the network is the paper's architecture, untrained:
the timing is valid, the labels are not. All images are synthetic.
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

SPACING = (0.78, 0.78, 1.0)
ROWS = COLUMNS = 512


def synthetic_ct(slices: int, seed: int = 0):
    """``(slices, 512, 512)`` int16 CT in HU (see the module docstring), as a lesionseg Image."""
    from lesionseg import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:ROWS, :COLUMNS].astype(np.float32)
    x, y = (x - COLUMNS / 2) * SPACING[0], (y - ROWS / 2) * SPACING[1]
    plane = np.full((ROWS, COLUMNS), -1000, np.int16)
    plane[(x / 170) ** 2 + (y / 120) ** 2 <= 1] = -100                       # subcutaneous fat
    plane[(x / 160) ** 2 + (y / 110) ** 2 <= 1] = 40                         # soft tissue
    plane[(x / 15) ** 2 + ((y - 70) / 15) ** 2 <= 1] = 400                   # vertebral body
    ct = np.empty((slices, ROWS, COLUMNS), np.int16)
    for k in range(0, slices, 16):
        block = ct[k:k + 16]
        block[:] = plane
        block += rng.normal(0.0, 12.0, block.shape).astype(np.int16) * (block > -1000)
    for n in range(6):
        centre = rng.uniform([slices * 0.2, -60, -100], [slices * 0.8, 40, 100])
        radius = rng.uniform(3, 8)
        k0, k1 = int(max(centre[0] - radius, 0)), int(min(centre[0] + radius + 1, slices))
        zz, yy, xx = np.ogrid[k0:k1, :ROWS, :COLUMNS]
        ball = ((zz - centre[0]) * SPACING[2]) ** 2 + ((yy - ROWS / 2) * SPACING[1] - centre[1]) ** 2 \
            + ((xx - COLUMNS / 2) * SPACING[0] - centre[2]) ** 2 <= radius ** 2
        ct[k0:k1][ball] = 130
    return Image(ct, SPACING, (-200.0, -200.0, -150.0))


def one_run(slices: int, weights: str | None, threads: int, prior: tuple[float, float] | None) -> dict:
    """Time one CT of ``slices`` slices (run in a child process)."""
    import torch

    from lesionseg.inference import window_starts
    from lesionseg.methods.smalllesion.prior import IntensityPrior
    from lesionseg.methods.smalllesion.segmenter import SmallLesionSegmenter
    from lesionseg.modelfolder import find_model_folder
    from lesionseg.nets.unet import UNet

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ct = synthetic_ct(slices)
    t_gen = time.perf_counter() - t0
    folder = find_model_folder("small-lesion-il", weights)
    if folder is not None:
        seg, network = SmallLesionSegmenter(folder, "cpu"), f"trained ({folder.path})"
    else:
        torch.manual_seed(0)
        net = UNet(3, 1, 2, (8, 16, 32, 64), norm="group")
        seg, network = SmallLesionSegmenter(net=net, variant="seg+il"), "untrained, timing only"
    if prior is not None:
        seg.set_prior(IntensityPrior.gaussian(*prior))
    t0 = time.perf_counter()
    seg.set_image(ct)
    label = seg.predict()
    lesions = seg.lesions()
    seconds = time.perf_counter() - t0
    work = seg._work.shape if seg._work is not None else (0, 0, 0)
    windows = int(np.prod([len(window_starts(max(s, p), p, seg.prep.overlap)) for s, p in zip(work, seg.prep.patch)]))
    return {"ct": list(ct.shape), "seconds": round(seconds, 1), "working_grid": list(work),
            "patch": list(seg.prep.patch), "overlap": seg.prep.overlap, "windows": windows,
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
            "network": network, "variant": seg.variant, "user_prior": prior is not None,
            "lesion_voxels": int(label.array.sum()), "lesions": len(lesions), "phantom_seconds": round(t_gen, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=None, help="small-lesion-il model folder (default: the built-in one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[75, 150, 300], help="slices K of K x 512 x 512")
    parser.add_argument("--prior-mean", type=float, default=None, help="user prior mean HU (with --prior-sd)")
    parser.add_argument("--prior-sd", type=float, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    prior = (args.prior_mean, args.prior_sd) if args.prior_mean is not None else None
    if args.child is not None:
        print(json.dumps(one_run(args.child, args.weights, args.threads, prior)))
        return 0
    print(f"# small-lesion-il benchmark: {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}; "
          f"synthetic CT K x 512 x 512 at {SPACING} mm (goal for K = 300: <= 60 s, <= 4 GB)")
    for slices in args.sizes:
        cmd = [sys.executable, __file__, "--threads", str(args.threads), "--child", str(slices)]
        cmd += ["--weights", args.weights] if args.weights else []
        cmd += ["--prior-mean", str(args.prior_mean), "--prior-sd", str(args.prior_sd)] if prior else []
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"K = {slices}: failed\n{out.stderr.strip()[-2000:]}")
            return 1
        print(out.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
