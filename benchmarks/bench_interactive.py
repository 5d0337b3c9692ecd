"""Interactive speed in-process (what the Slicer Box and RECIST panels wait for), on a real 512 x 512 chest CT.

    python benchmarks/bench_interactive.py [--threads 2] [--repeats 7] [--slices 30] [--data DIR]

Input: ``Lung_Dx-A0001_series3_B_CT.nii.gz`` of ``../shared/data/lung-pet-ct-dx-ct`` (512 x 512 x 64 voxels,
0.84 x 0.84 x 5 mm, HU) and its tumour boxes (``boxes.csv``: ``a[z, ymin:ymax, xmin:xmax]``); the script says so and
exits 0 when the folder is absent. Only the backend's public API is used: ``lesionseg.read_image``,
``lesionseg.build(name, device="cpu")``, ``set_image``, ``predict(Box | RecistLine)``.

Prompts: a one-slice box on the tumour's middle annotated slice; the same box over a ``--slices``-slice ROI centred
on it (clipped to the volume); a RECIST long axis along the longer side of that box through its centre and a short
axis across it. Each method (``tsfcn``, ``box-unet``, ``classical-box`` = GrabCut + DenseCRF, ``recist-coseg``,
``recist-3d``) is built once;
``set_image`` and the first prompt after it are timed once; then the median of ``--repeats`` predictions of each
prompt (after one warm-up). Every figure is also given as a ratio to ``classical-box`` on the same ROI in the same
run (machines differ up to 3x in speed). Targets (issue #19, on 2 CPU threads): box <= 20 ms per slice and <= 0.3 s
for a 30-slice ROI, RECIST <= 150 ms per lesion, first prompt after ``set_image`` <= 1 s; the 30-slice tsfcn box at
most half the time of classical-box on the same ROI; issue #23: the same for ``box-unet``, and RECIST -> 3D
(``recist-3d``, the whole lesion from one measurement) <= 1 s per lesion. The load average is printed: the machine may be shared.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "lung-pet-ct-dx-ct"
CT_NAME = "Lung_Dx-A0001_series3_B_CT.nii.gz"

BOX_MS_PER_SLICE = 20.0
ROI_SECONDS = 0.3
RECIST_MS = 150.0
FIRST_PROMPT_SECONDS = 1.0
TSFCN_ROI_RATIO = 0.5
RECIST_3D_SECONDS = 1.0


def world(image, ijk: np.ndarray) -> np.ndarray:
    """LPS mm of voxel centres ``(N, 3)`` ``(i, j, k)``: origin + direction @ (spacing * ijk)."""
    ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
    return np.asarray(image.origin) + (np.asarray(image.direction).reshape(3, 3)
                                       @ (ijk * np.asarray(image.spacing)).T).T


def box_over(image, lo_ijk, hi_ijk):
    """A ``lesionseg.Box`` (LPS mm) around the voxel centres ``lo_ijk..hi_ijk`` (inclusive)."""
    import lesionseg

    corners = np.array([[x, y, z] for x in (lo_ijk[0], hi_ijk[0]) for y in (lo_ijk[1], hi_ijk[1])
                        for z in (lo_ijk[2], hi_ijk[2])], dtype=np.float64)
    points = world(image, corners)
    return lesionseg.Box(points.min(axis=0), points.max(axis=0))


def prompts(image, boxes: list[dict], slices: int):
    """``(one-slice box, slices-slice box, RECIST line, slices used)`` around the middle annotated tumour slice."""
    import lesionseg

    row = boxes[len(boxes) // 2]
    k = int(row["z_index"])
    x0, y0, x1, y1 = (int(row[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
    lo, hi = (x0, y0, k), (x1 - 1, y1 - 1, k)  # a[z, ymin:ymax, xmin:xmax]: max is exclusive
    k0 = int(np.clip(k - slices // 2, 0, max(0, image.shape[0] - slices)))
    k1 = min(image.shape[0] - 1, k0 + slices - 1)
    one, tall = box_over(image, lo, hi), box_over(image, (lo[0], lo[1], k0), (hi[0], hi[1], k1))
    xc, yc = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2
    inset_x, inset_y = 0.15 * (x1 - x0), 0.15 * (y1 - y0)
    if (y1 - y0) >= (x1 - x0):  # long axis along j (rows), short along i
        ends = [(xc, y0 + inset_y, k), (xc, y1 - 1 - inset_y, k), (x0 + inset_x, yc, k), (x1 - 1 - inset_x, yc, k)]
    else:
        ends = [(x0 + inset_x, yc, k), (x1 - 1 - inset_x, yc, k), (xc, y0 + inset_y, k), (xc, y1 - 1 - inset_y, k)]
    points = world(image, np.array(ends))
    return one, tall, lesionseg.RecistLine(*points), k1 - k0 + 1


def once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    return statistics.median(once(fn) for _ in range(repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch/OpenMP/BLAS (set before import)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    ct_path, boxes_path = args.data / CT_NAME, args.data / "boxes.csv"
    if not ct_path.is_file() or not boxes_path.is_file():
        print(f"skipped: {ct_path} or {boxes_path} is absent (see ../shared/data/README.md)")
        return 0
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import lesionseg

    image = lesionseg.read_image(ct_path)
    with boxes_path.open(newline="") as handle:
        boxes = sorted((r for r in csv.DictReader(handle) if r["nifti"] == CT_NAME), key=lambda r: int(r["z_index"]))
    one, tall, recist, slices = prompts(image, boxes, args.slices)
    print(f"{CT_NAME}: {image.shape[2]} x {image.shape[1]} x {image.shape[0]} voxels, spacing "
          f"{', '.join(f'{s:.2f}' for s in image.spacing)} mm; {args.threads} thread(s), load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs; other processes may be running)")
    print(f"box {np.round(one.hi - one.lo, 1).tolist()} mm on one slice and over {slices} slices; RECIST long axis "
          f"{recist.long_length_mm:.1f} mm, short {recist.short_length_mm:.1f} mm")
    figures: dict[tuple[str, str], float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, tests in (("classical-box", (("box 1 slice", one), (f"box {slices} slices", tall))),
                            ("tsfcn", (("box 1 slice", one), (f"box {slices} slices", tall))),
                            ("box-unet", (("box 1 slice", one), (f"box {slices} slices", tall))),
                            ("recist-coseg", (("RECIST", recist),)), ("recist-3d", (("RECIST 3D", recist),))):
            try:
                t0 = time.perf_counter()
                segmenter = lesionseg.build(name, device="cpu")
                figures[(name, "build")] = time.perf_counter() - t0
            except lesionseg.LesionSegError as exc:
                print(f"{name}: not built ({exc})")
                continue
            figures[(name, "set_image")] = once(lambda: segmenter.set_image(image))
            figures[(name, "first prompt")] = once(lambda: segmenter.predict(tests[0][1]))
            for label, prompt in tests:
                figures[(name, label)] = median_seconds(lambda: segmenter.predict(prompt), args.repeats)
            if "torch" in sys.modules and (name, "torch threads") not in figures:
                figures[(name, "torch threads")] = float(sys.modules["torch"].get_num_threads())
    report(figures, slices)
    return 0


def report(figures: dict, slices: int) -> None:
    """The table: each figure, its target, whether it is met, and its ratio to classical-box on the same ROI."""
    roi = f"box {slices} slices"
    reference = {"box 1 slice": figures.get(("classical-box", "box 1 slice")),
                 roi: figures.get(("classical-box", roi)), "RECIST": figures.get(("classical-box", "box 1 slice")),
                 "first prompt": figures.get(("classical-box", "first prompt"))}
    targets = {"box 1 slice": BOX_MS_PER_SLICE / 1000, roi: min(ROI_SECONDS, BOX_MS_PER_SLICE * slices / 1000),
               "RECIST": RECIST_MS / 1000, "RECIST 3D": RECIST_3D_SECONDS, "first prompt": FIRST_PROMPT_SECONDS}
    print(f"\n{'method':14s} {'figure':16s} {'seconds':>9s} {'ms/slice':>9s} {'target s':>9s} {'met':>4s} "
          f"{'x classical-box':>16s}")
    for (name, label), seconds in figures.items():
        if label == "torch threads":
            continue
        per_slice = seconds / slices * 1000 if label == roi else (seconds * 1000 if label == "box 1 slice" else None)
        target = targets.get(label)
        ratio = reference.get(label)
        print(f"{name:14s} {label:16s} {seconds:9.3f} {'' if per_slice is None else f'{per_slice:9.1f}':>9s} "
              f"{'' if target is None else f'{target:9.2f}':>9s} "
              f"{'' if target is None else ('yes' if seconds <= target else 'NO'):>4s} "
              f"{'' if not ratio else f'{seconds / ratio:16.2f}':>16s}")
    classical = figures.get(("classical-box", roi))
    for name in ("tsfcn", "box-unet"):
        model = figures.get((name, roi))
        if model and classical:
            ratio = model / classical
            print(f"\n{name} {slices}-slice box / classical-box on the same ROI: {ratio:.2f} (target <= "
                  f"{TSFCN_ROI_RATIO}: {'met' if ratio <= TSFCN_ROI_RATIO else 'NOT met'})")
    threads = {name: int(v) for (name, label), v in figures.items() if label == "torch threads"}
    if threads:
        print(f"torch threads: {threads}")
    print(f"load average after the run: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    sys.exit(main())
