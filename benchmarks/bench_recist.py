"""recist-coseg speed per lesion on the CPU: GrabCut initial mask, network, DenseCRF, and total predict().

Lesions: the key slices (largest area) of the labelled cases of ``--data DATASET`` (a dataset in the one
convention), by default of the LIDC nodules in ``../shared/data/lidc-nodule-vois`` imported into a temporary
dataset when present, else seeded synthetic nodules. Prints median and 90th percentile in ms. Goal: total
<= 150 ms.

    .venv/bin/python benchmarks/bench_recist.py [--lesions 30] [--threads 2] [--weights DIR] [--data DATASET]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lesionseg import Image, RecistLine, build
from lesionseg.geometry import index_to_world, recist_to_index
from lesionseg.methods.recist.initial_mask import grabcut_from_recist
from lesionseg.methods.recist.segmenter import axes_in_crop, crop_of, long_mm

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def dataset_cases(data: Path, limit: int) -> list[tuple[Image, RecistLine]]:
    """The first prompt (axes of the largest lesion's key slice) of the first ``limit`` labelled cases."""
    from lesionseg.data import Dataset
    from lesionseg.methods.recist.dataset import lesion_prompts, read_ct

    out = []
    for case in Dataset(data).cases("train")[:limit]:
        prompts = lesion_prompts(case.read_label())
        if prompts:
            out.append((read_ct(case), max(prompts, key=lambda p: p.long_length_mm)))
    return out


def lidc_cases(limit: int) -> list[tuple[Image, RecistLine]]:
    """:func:`dataset_cases` of the shared LIDC VOIs, imported into a temporary dataset."""
    import tempfile

    from lesionseg.data.importers import import_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = import_dataset("lidc-vois", DATA / "lidc-nodule-vois", Path(tmp) / "lidc", limit=limit)
        return dataset_cases(data, limit)


def synthetic_cases(limit: int) -> list[tuple[Image, RecistLine]]:
    out = []
    for seed in range(limit):
        rng = np.random.default_rng(seed)
        radius = rng.uniform(4, 12)
        k, j, i = np.indices((9, 64, 64)).astype(float)
        r = np.sqrt(((i - 32) * 0.7) ** 2 + ((j - 32) * 0.7) ** 2 + ((k - 4) * 1.5) ** 2)
        arr = np.where(r <= radius, 30.0, -850.0) + rng.normal(0, 25, r.shape)
        image = Image(arr.astype(np.float32), (0.7, 0.7, 1.5))
        d = radius / 0.7
        out.append((image, RecistLine(*index_to_world(image, np.array([[32 - d, 32, 4], [32 + d, 32, 4]])))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--data", type=Path, help="dataset in the one convention (default: the shared LIDC VOIs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.data is not None:
        cases, source = dataset_cases(args.data, args.lesions), f"key slices of {args.data}"
    elif (DATA / "lidc-nodule-vois").is_dir():
        cases, source = lidc_cases(args.lesions), "LIDC key slices"
    else:
        cases, source = synthetic_cases(args.lesions), "synthetic nodules"
    seg = build("recist-coseg", weights=args.weights, device="cpu")
    times: dict[str, list[float]] = {"crop": [], "GrabCut (initial mask)": [], "network": [], "DenseCRF": [],
                                     "total predict()": []}
    for n, (image, line) in enumerate(cases):
        seg.set_image(image)
        seg.predict(line)  # warm-up of this image
        t0 = time.perf_counter()
        recist = recist_to_index(image, line)
        frame, crop = crop_of(image, recist)
        t1 = time.perf_counter()
        grabcut_from_recist(crop, *axes_in_crop(frame, recist))
        t2 = time.perf_counter()
        prob = seg.probability(crop)
        t3 = time.perf_counter()
        seg.refine_crop(crop, prob, frame.pixel_mm, long_mm(image, recist))
        t4 = time.perf_counter()
        seg.predict(line)
        t5 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            times[key].append(1000 * dt)
    print(f"recist-coseg, {len(cases)} {source}, torch threads {args.threads}, 128x128 crops")
    print(f"{'step':26s} {'median ms':>10s} {'p90 ms':>8s}")
    for key, values in times.items():
        print(f"{key:26s} {np.median(values):10.1f} {np.percentile(values, 90):8.1f}")
    print("(total predict() = crop + network + DenseCRF + paste back; GrabCut is not part of inference)")


if __name__ == "__main__":
    main()
