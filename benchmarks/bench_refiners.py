"""Timings of the refiners and the classical-box baseline (prints figures, asserts nothing).

    python benchmarks/bench_refiners.py            # timings on synthetic images
    python benchmarks/bench_refiners.py --lidc     # also Dice on ../shared/data/lidc-nodule-vois, if present

Synthetic images: a 40 HU ellipsoid in -850 HU "lung" with Gaussian noise (sigma 20 HU).
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from lesionseg import Image, read_image
from lesionseg.geometry import index_box_to_world
from lesionseg.methods.classical import ClassicalBox, threshold_in_box
from lesionseg.refiners import DenseCRFRefiner, grabcut_slice

LIDC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lidc-nodule-vois"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (imports, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def phantom(shape: tuple[int, int, int], radii: tuple[float, float, float], seed: int = 0) -> tuple[Image, np.ndarray]:
    """``(K, J, I)`` float32 phantom with an ellipsoid of ``radii`` voxels (i, j, k) at the centre."""
    rng = np.random.default_rng(seed)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    c = np.array(shape) / 2.0
    truth = ((i - c[2]) / radii[0]) ** 2 + ((j - c[1]) / radii[1]) ** 2 + ((k - c[0]) / radii[2]) ** 2 <= 1
    arr = np.where(truth, 40.0, -850.0) + rng.normal(0.0, 20.0, shape)
    return Image(arr.astype(np.float32), (0.8, 0.8, 1.5)), truth


def bench_slices(repeats: int) -> None:
    for size in (128, 256):
        image, truth = phantom((1, size, size), (size / 4, size / 5, 1.0))
        gray = np.clip((image.array[0] + 1000) / 4, 0, 255).astype(np.uint8)
        init = np.full((size, size), cv2.GC_BGD, np.uint8)
        init[size // 8: -size // 8, size // 8: -size // 8] = cv2.GC_PR_FGD
        gc = median_ms(lambda: grabcut_slice(gray, init, iterations=5), repeats)
        prob = image.with_array(np.where(truth, 0.7, 0.3).astype(np.float32))
        crf = DenseCRFRefiner(iterations=5, margin_mm=0.0)
        dc = median_ms(lambda: crf.refine(image, prob), repeats)
        print(f"{size}x{size}: GrabCut 5 it {gc:7.1f} ms | DenseCRF 5 it (refiner, whole slice) {dc:7.1f} ms")


def bench_classical(repeats: int) -> None:
    image, truth = phantom((40, 160, 160), (40.0, 40.0, 13.0))
    centre = np.array([80, 80, 20])
    box = index_box_to_world(image, centre - [49, 49, 14], centre + [50, 50, 15])  # 100 x 100 x 30 voxels
    seg = ClassicalBox()
    seg.set_image(image)
    ms = median_ms(lambda: seg.predict(box), repeats)
    dice = _dice(seg.predict(box).array, truth)
    print(f"classical-box, 30-slice 100x100 box: {ms:7.1f} ms (Dice {dice:.3f})")
    small, small_truth = phantom((24, 64, 64), (6.0, 6.0, 4.0))
    small_box = index_box_to_world(small, [24, 24, 7], [40, 40, 17])
    seg.set_image(small)
    ms = median_ms(lambda: seg.predict(small_box), repeats)
    print(f"classical-box, 11-slice 17x17 box (small nodule, GrabCut at 4x): {ms:7.1f} ms "
          f"(Dice {_dice(seg.predict(small_box).array, small_truth):.3f})")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def bench_lidc(margin: int) -> None:
    """Dice of classical-box and the -400 HU threshold in the mask's bounding box + ``margin`` voxels."""
    if not (LIDC / "image").is_dir():
        print(f"{LIDC} is absent: LIDC evaluation skipped")
        return
    seg = ClassicalBox()
    scores: dict[str, list[float]] = {"classical-box": [], "threshold -400 HU": []}
    times = []
    for path in sorted((LIDC / "image").glob("*.nii.gz")):
        image, mask = read_image(path), read_image(LIDC / "nodule_mask" / path.name).array > 0
        if not mask.any():
            continue
        nz = np.nonzero(mask)
        lo = np.maximum([nz[2].min() - margin, nz[1].min() - margin, nz[0].min()], 0)
        hi = np.minimum([nz[2].max() + margin, nz[1].max() + margin, nz[0].max()], image.size_ijk - 1)
        box = index_box_to_world(image, lo, hi)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg.set_image(image)
            start = time.perf_counter()
            scores["classical-box"].append(_dice(seg.predict(box).array, mask))
            times.append(time.perf_counter() - start)
            scores["threshold -400 HU"].append(_dice(threshold_in_box(image, box).array, mask))
    print(f"LIDC nodule VOIs (n={len(times)}), box = mask bounding box + {margin} voxels in-plane:")
    for name, values in scores.items():
        v = np.array(values)
        print(f"  {name:18s} Dice mean {v.mean():.3f} median {np.median(v):.3f} 10th pct "
              f"{np.percentile(v, 10):.3f} (< 0.05: {int((v < 0.05).sum())})")
    print(f"  classical-box median {1000 * statistics.median(times):.0f} ms per nodule")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--lidc", action="store_true", help="also score the LIDC nodule VOIs if present")
    parser.add_argument("--margin", type=int, default=2, help="LIDC box margin in voxels")
    args = parser.parse_args()
    bench_slices(args.repeats)
    bench_classical(max(args.repeats // 2, 3))
    if args.lidc:
        bench_lidc(args.margin)


if __name__ == "__main__":
    main()
