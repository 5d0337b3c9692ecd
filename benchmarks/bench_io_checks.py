"""What the input and output checks of issue #22 cost (prints figures, asserts nothing).

    python benchmarks/bench_io_checks.py [--slices 300] [--repeats 3]

A 512x512xN int16 CT (noise inside a body ellipse, air outside, like a real scan's compressibility) and its
uint8 label map, as .nii.gz:
- read: ``lesionseg.read_image`` (truncation/NaN check of the NIfTI + memory check + ITK read) against a bare
  ``SimpleITK.ReadImage``;
- write: ``lesionseg.write_image`` (checked path, temporary file, fsync, NIfTI read-back check, rename) against
  a bare ``SimpleITK.WriteImage``;
and the sum of both overheads as a share of one ``lesionseg predict`` run of two whole-volume methods as
measured in the docs (a 150-slice s4c phase: 49 s; small-lesion-il on 300 slices: 24.5 s; 2 threads).
Bare and checked runs alternate, so a change of load hits both alike; the medians are printed.
The full NIfTI check (gzip CRC, NaN) runs beside ITK's read on the second core: with both cores busy, the
read costs about one more decompression of the file (the "gzip alone" line).
"""
from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionseg import Image, read_image, write_image
from lesionseg.io import to_sitk


def medians_s(fns, repeats: int) -> list[float]:
    """Median seconds of each callable, run alternately ``repeats`` times after one warm-up round."""
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(repeats + 1):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            if round_:
                record.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def gunzip(path: Path) -> None:
    with gzip.open(path) as fh:
        while fh.read(1 << 24):
            pass


def scan(slices: int) -> tuple[Image, Image]:
    rng = np.random.default_rng(0)
    j, i = np.ogrid[:512, :512]
    body = ((i - 256) / 220.0) ** 2 + ((j - 256) / 160.0) ** 2 <= 1
    arr = np.full((slices, 512, 512), -1000, np.int16)
    arr[:, body] = rng.normal(40, 30, (slices, int(body.sum()))).astype(np.int16)
    ct = Image(arr, (0.78, 0.78, 1.5))
    label = ct.with_array(np.zeros(arr.shape, np.uint8))
    label.array[slices // 3: slices // 2, 200:260, 220:300] = 1
    return ct, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; 512x512x{args.slices} int16 CT, uint8 label, .nii.gz")
    ct, label = scan(args.slices)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        folder = Path(tmp)
        sitk.WriteImage(to_sitk(ct), str(folder / "ct.nii.gz"), True)
        bare_read, checked_read, alone = medians_s(
            [lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "ct.nii.gz"))),
             lambda: read_image(folder / "ct.nii.gz"), lambda: gunzip(folder / "ct.nii.gz")], args.repeats)
        itk_label = to_sitk(label)
        bare_write, checked_write = medians_s(
            [lambda: sitk.WriteImage(itk_label, str(folder / "bare.nii.gz"), True),
             lambda: write_image(label, folder / "checked.nii.gz", overwrite=True)], args.repeats)
    extra = (checked_read - bare_read) + (checked_write - bare_write)
    print(f"read CT     bare {bare_read:6.2f} s   checked {checked_read:6.2f} s   (+{checked_read - bare_read:.2f} s)")
    print(f"gzip alone  {alone:6.2f} s (the full check's decompression, done beside ITK's read)")
    print(f"write label bare {bare_write:6.2f} s   checked {checked_write:6.2f} s   (+{checked_write - bare_write:.2f} s)")
    for what, seconds in (("s4c, 150-slice phase, 49 s", 49.0), ("small-lesion-il, 300 slices, 24.5 s", 24.5)):
        print(f"added per predict run: {extra:.2f} s = {100 * extra / seconds:.1f} % of {what}")


if __name__ == "__main__":
    main()
