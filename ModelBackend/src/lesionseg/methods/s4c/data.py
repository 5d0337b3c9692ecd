"""S4C training data: a folder of dual-phase cases, the synthetic cohort that fills one, and patch sampling.

Folder layout (what ``lesionseg train s4c --data DIR`` reads; real data can use it too)::

    DIR/<case>_arterial.nii.gz   CT (HU), optional
    DIR/<case>_venous.nii.gz     CT (HU), optional (at least one phase per case)
    DIR/<case>_label.nii.gz      uint8 0 background, 1 pancreas, 2 tumour, 3 dilated duct, on the venous
                                 grid (or the arterial grid when there is no venous phase)
    DIR/cohort.json              optional: provenance (the synthetic generator writes it)

``python -m lesionseg.methods.s4c.data -o DIR --cases 40 --seed 0`` writes the seeded synthetic cohort of
:mod:`lesionseg.phantoms.pancreas`. Every phase is one training sample: the one network segments both phases.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ... import progress
from ...errors import InputError, OutputExistsError
from ...image import Image
from ...io import output_folder, read_image, write_image
from ...resample import resample_to_grid
from .segmenter import S4CPreprocessing, normalise, to_working_grid

log = logging.getLogger(__name__)
PHASES = ("arterial", "venous")


@dataclass
class Case:
    """One case of a data folder: the phase files that exist and the label file."""

    name: str
    phases: dict[str, Path]
    label: Path

    @property
    def positive(self) -> bool:
        """Truth verdict: the label holds tumour or duct voxels."""
        return bool(np.isin(read_image(self.label).array, (2, 3)).any())


def list_cases(folder: Path) -> list[Case]:
    """The cases of a data folder, sorted by name (:class:`InputError` when there are none)."""
    folder = Path(folder)
    cases = []
    for label in sorted(folder.glob("*_label.nii.gz")):
        name = label.name[: -len("_label.nii.gz")]
        phases = {p: folder / f"{name}_{p}.nii.gz" for p in PHASES if (folder / f"{name}_{p}.nii.gz").exists()}
        if phases:
            cases.append(Case(name, phases, label))
    if not cases:
        raise InputError(f"{folder} holds no S4C cases (<case>_label.nii.gz with <case>_venous.nii.gz and/or "
                         f"<case>_arterial.nii.gz); write the synthetic cohort with "
                         f"'python -m lesionseg.methods.s4c.data -o {folder}'")
    return cases


def write_cohort(folder: Path, n_cases: int, seed: int = 0, overwrite: bool = False) -> list[dict]:
    """Write the seeded synthetic cohort (both phases, label, ``cohort.json``) into ``folder``.

    Assembled in a temporary sibling folder and renamed at the end (:func:`lesionseg.io.output_folder`).
    """
    from ...phantoms.pancreas import cohort, pancreas_ct

    specs = cohort(n_cases, seed)
    Path(folder).parent.mkdir(parents=True, exist_ok=True)
    records = []
    with output_folder(folder, overwrite) as work, progress.task("synthetic cohort", total=len(specs)) as tick:
        for n, spec in enumerate(specs):
            arterial, venous, label, info = pancreas_ct(seed=spec["seed"], kind=spec["kind"])
            write_image(arterial, work / f"{spec['case']}_arterial.nii.gz")
            write_image(venous, work / f"{spec['case']}_venous.nii.gz")
            write_image(label, work / f"{spec['case']}_label.nii.gz")
            records.append({**spec, "info": info})
            tick(n + 1, len(specs))
        (work / "cohort.json").write_text(json.dumps(
            {"synthetic": True, "generator": "lesionseg.phantoms.pancreas.pancreas_ct", "seed": seed,
             "cases": records}, indent=1) + "\n")
    return records


@dataclass
class Volume:
    """One phase on the working grid: normalised input ``(D, H, W)`` float32 and labels uint8."""

    case: str
    phase: str
    image: np.ndarray
    label: np.ndarray


IGNORE = 255
"""Label value the training loss ignores (a tumour that its phase does not show)."""
MIN_CONTRAST_HU = 25.0
"""A tumour counts as visible in a phase when its mean HU differs from the pancreas around it by this much."""


def hide_invisible_tumours(hu: np.ndarray, label: np.ndarray, spacing_mm: float,
                           min_contrast: float = MIN_CONTRAST_HU, shell_mm: float = 6.0) -> tuple[np.ndarray, int]:
    """Set to :data:`IGNORE` every tumour component whose mean HU differs from the pancreas voxels within
    ``shell_mm`` of it by less than ``min_contrast`` in this phase.

    The cases carry one label for both phases (they are registered), but a hypervascular tumour is often
    nearly iso-dense in one phase; asking the network to label what that phase does not show teaches it to
    label no tumour at all (measured: tumour probability 0.01-0.04 inside tumours after 11 minutes). The
    loss ignores such voxels instead. Works from the image, so it applies to real data as well.

    Args:
        hu: ``(D, H, W)`` HU on the working grid; label: uint8 labels on it; spacing_mm: its voxel size.
    Returns:
        the new label array and the number of tumours hidden.
    """
    from scipy import ndimage

    out = label.copy()
    comps, n = ndimage.label(label == 2, ndimage.generate_binary_structure(3, 3))
    hidden = 0
    steps = max(1, int(round(shell_mm / spacing_mm)))
    for idx, sl in enumerate(ndimage.find_objects(comps), start=1):
        big = tuple(slice(max(s.start - steps, 0), s.stop + steps) for s in sl)
        tumour = comps[big] == idx
        shell = ndimage.binary_dilation(tumour, iterations=steps) & (label[big] == 1)
        if not shell.any() or abs(float(hu[big][tumour].mean()) - float(hu[big][shell].mean())) < min_contrast:
            out[big][tumour] = IGNORE
            hidden += 1
    return out, hidden


def load_volumes(cases: Sequence[Case], prep: S4CPreprocessing, hide_invisible: bool = True) -> list[Volume]:
    """Every phase of ``cases`` resampled to the working grid (labels by nearest neighbour); with
    ``hide_invisible``, tumours a phase does not show are set to :data:`IGNORE` in that phase's labels."""
    volumes = []
    hidden = 0
    with progress.task("loading cases", total=len(cases)) as tick:
        for n, case in enumerate(cases):
            label = read_image(case.label)
            for phase, path in case.phases.items():
                work = to_working_grid(read_image(path), prep)
                lab = resample_to_grid(label, work, "nearest", 0).array.astype(np.uint8)
                if hide_invisible:
                    lab, count = hide_invisible_tumours(work.array, lab, prep.spacing_mm)
                    hidden += count
                volumes.append(Volume(case.name, phase, normalise(work.array, prep.window), lab))
            tick(n + 1, len(cases))
    if hide_invisible:
        log.info("s4c: %d tumour(s) hidden from the loss in the phase that does not show them", hidden)
    return volumes


def _pad_to(arr: np.ndarray, size: int, value: float) -> np.ndarray:
    pad = [(0, max(size - s, 0)) for s in arr.shape]
    return np.pad(arr, pad, constant_values=value) if any(p[1] for p in pad) else arr


def sample_patch(volume: Volume, patch: int, rng: np.random.Generator,
                 class_probs: Sequence[float] = (0.25, 0.25, 0.3, 0.2)) -> tuple[np.ndarray, np.ndarray]:
    """A ``patch^3`` crop of ``volume`` centred on a voxel of a class drawn from ``class_probs`` (background,
    pancreas, tumour, duct; a class absent from the volume falls back to background = anywhere), then one
    of the 24 rotations of the cube by multiples of 90 degrees and a random flip (the paper's augmentation).

    Returns ``(image (1, p, p, p) float32, label (p, p, p) int64)``.
    """
    image = _pad_to(volume.image, patch, 0.0)
    label = _pad_to(volume.label, patch, 0)
    cls = int(rng.choice(4, p=np.asarray(class_probs) / np.sum(class_probs)))
    where = np.flatnonzero(label == cls) if cls else np.empty(0, int)
    if where.size:
        centre = np.array(np.unravel_index(rng.choice(where), label.shape))
    else:
        centre = np.array([rng.integers(0, s) for s in label.shape])
    lo = np.clip(centre - patch // 2 + rng.integers(-patch // 4, patch // 4 + 1, 3), 0,
                 np.array(label.shape) - patch)
    sl = tuple(slice(int(a), int(a) + patch) for a in lo)
    img, lab = image[sl], label[sl]
    img, lab = _augment(img, lab, rng)
    return np.ascontiguousarray(img[None], np.float32), np.ascontiguousarray(lab, np.int64)


def _augment(img: np.ndarray, lab: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotation by 0/90/180/270 degrees in a random plane, then a flip on each axis with probability 1/2."""
    axes = [(0, 1), (0, 2), (1, 2)][int(rng.integers(0, 3))]
    k = int(rng.integers(0, 4))
    img, lab = np.rot90(img, k, axes), np.rot90(lab, k, axes)
    for axis in range(3):
        if rng.random() < 0.5:
            img, lab = np.flip(img, axis), np.flip(lab, axis)
    return img, lab


def folds(cases: Sequence[Case], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` disjoint lists of case names, stratified by truth verdict (positive / negative), seeded."""
    if not 2 <= k <= len(cases):
        raise InputError(f"cross-validation needs 2 <= k <= {len(cases)} folds, got {k}")
    rng = np.random.default_rng(seed)
    out: list[list[str]] = [[] for _ in range(k)]
    slot = 0  # dealt round-robin across both groups, so fold sizes differ by at most one
    for group in (sorted(c.name for c in cases if c.positive), sorted(c.name for c in cases if not c.positive)):
        for idx in rng.permutation(len(group)):
            out[slot % k].append(group[idx])
            slot += 1
    return [sorted(f) for f in out]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic S4C cohort (dual-phase pancreas phantoms).")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    records = write_cohort(args.output, args.cases, args.seed, args.overwrite)
    log.info("wrote %d synthetic cases to %s", len(records), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
