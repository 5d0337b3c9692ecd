"""L2SNet training data: a folder of whole-body PET/CT cases, the synthetic cohort that fills one, loading to
the working grid, and the sampling of 2D coronal slices (localisation) and 3D patches (segmentation).

Folder layout (what ``lesionseg train autopet-l2snet --data DIR`` reads; real data can use it too)::

    DIR/<case>_pet.nii.gz     PET in SUV (float)
    DIR/<case>_ct.nii.gz      CT in HU, any grid overlapping the PET
    DIR/<case>_label.nii.gz   uint8 0 background, 1 lesion, on the PET grid
    DIR/cohort.json           provenance; the synthetic generator writes ``"synthetic": true``

``python -m lesionseg.methods.autopet.data -o DIR --cases 40 --seed 0`` writes the seeded synthetic cohort of
:func:`lesionseg.phantoms.wholebody.wholebody_petct` (half the cases without lesions);
``... -o DIR --sts ../shared/data/ibsi-sts-petct --names STS_001 STS_002`` copies real IBSI PET/CT crops into the
layout (no ``cohort.json``: the data is real), e.g. to fine-tune with ``lesionseg train ... --base M --finetune``.
Arrays are ``[k, j, i]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ... import progress
from ...errors import InputError, OutputExistsError
from ...io import output_folder, read_image, write_image
from ...resample import resample_to_grid
from .segmenter import CORONAL_AXIS, L2SPreprocessing, scale, to_working_grid

log = logging.getLogger(__name__)
SUFFIXES = {"pet": "_pet.nii.gz", "ct": "_ct.nii.gz", "label": "_label.nii.gz"}
LESION_SLICE_FRACTION = 0.2
"""Share of localisation training slices that contain lesion (the paper re-samples to about 1/5)."""
MAX_ROTATION_DEG = 15.0
"""Localisation slices are rotated by an angle drawn uniformly from +-this (the paper: "random rotation")."""


@dataclass
class Case:
    """One case of a data folder: its PET (SUV), CT (HU) and label files."""

    name: str
    pet: Path
    ct: Path
    label: Path

    @property
    def positive(self) -> bool:
        """The label holds lesion voxels."""
        return bool((read_image(self.label).array > 0).any())


def list_cases(folder: Path) -> list[Case]:
    """The complete cases of a data folder, sorted by name (:class:`InputError` when there are none)."""
    folder = Path(folder)
    cases = []
    for label in sorted(folder.glob(f"*{SUFFIXES['label']}")):
        name = label.name[: -len(SUFFIXES["label"])]
        pet, ct = folder / f"{name}{SUFFIXES['pet']}", folder / f"{name}{SUFFIXES['ct']}"
        if pet.exists() and ct.exists():
            cases.append(Case(name, pet, ct, label))
    if not cases:
        raise InputError(f"{folder} holds no autopet-l2snet cases (<case>_pet.nii.gz, <case>_ct.nii.gz, "
                         f"<case>_label.nii.gz); write the synthetic cohort with "
                         f"'python -m lesionseg.methods.autopet.data -o {folder}'")
    return cases


def write_cohort(folder: Path, n_cases: int, seed: int = 0, overwrite: bool = False, **phantom) -> list[dict]:
    """Write the seeded synthetic cohort (PET, CT, label per case and ``cohort.json``) into ``folder``.

    ``phantom`` keyword arguments (``shape``, ``spacing``, ...) go to :func:`wholebody_petct` (tests use small
    grids). Assembled in a temporary sibling folder and renamed at the end (:func:`lesionseg.io.output_folder`).
    """
    from ...phantoms.wholebody import wholebody_cohort, wholebody_petct

    specs = wholebody_cohort(n_cases, seed)
    Path(folder).parent.mkdir(parents=True, exist_ok=True)
    records = []
    with output_folder(folder, overwrite) as work, \
            progress.task("synthetic whole-body cohort", total=len(specs)) as tick:
        for n, spec in enumerate(specs):
            pet, ct, label, info = wholebody_petct(seed=spec["seed"], with_lesions=spec["with_lesions"], **phantom)
            for key, image in (("pet", pet), ("ct", ct), ("label", label)):
                write_image(image, work / f"{spec['case']}{SUFFIXES[key]}")
            records.append({**spec, "info": info})
            tick(n + 1, len(specs))
        (work / "cohort.json").write_text(json.dumps(
            {"synthetic": True, "generator": "lesionseg.phantoms.wholebody.wholebody_petct", "seed": seed,
             "phantom": {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in phantom.items()},
             "cases": records}, indent=1, default=str) + "\n")
    return records


@dataclass
class Volume:
    """One case on the working grid: scaled PET and CT ``(K, J, I)`` float32 0..1, label uint8 and (once the
    localisation net exists) its location cue ``(K, J, I)`` float32; coronal slices are ``[:, j, :]``."""

    case: str
    pet: np.ndarray
    ct: np.ndarray
    label: np.ndarray
    cue: Optional[np.ndarray] = None
    lesion_slices: np.ndarray = field(init=False)
    body_slices: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        other = tuple(a for a in range(3) if a != CORONAL_AXIS)
        self.lesion_slices = np.flatnonzero(self.label.any(axis=other))
        self.body_slices = np.setdiff1d(np.flatnonzero(self.pet.any(axis=other)), self.lesion_slices)


def load_case(case: Case, prep: L2SPreprocessing) -> Volume:
    """``case`` on the working grid of ``prep`` (label by nearest neighbour); the PET is taken as SUV."""
    pet, label = read_image(case.pet), read_image(case.label)
    if not label.same_grid(pet):
        raise InputError(f"{case.label.name} is not on the grid of {case.pet.name}")
    pet_work, ct_work = to_working_grid(pet, read_image(case.ct), prep)
    lab = resample_to_grid(label, pet_work, "nearest", 0).array > 0
    return Volume(case.name, scale(pet_work.array, prep.pet_window), scale(ct_work.array, prep.ct_window),
                  lab.astype(np.uint8))


def load_volumes(cases: Sequence[Case], prep: L2SPreprocessing) -> list[Volume]:
    """:func:`load_case` of every case, with progress."""
    out = []
    with progress.task("loading cases", total=len(cases)) as tick:
        for n, case in enumerate(cases):
            out.append(load_case(case, prep))
            tick(n + 1, len(cases))
    return out


def _window(shape: Sequence[int], size: Sequence[int], rng: np.random.Generator,
            inside: Optional[Sequence[int]] = None) -> tuple[slice, ...]:
    """Random window of ``size`` within ``shape`` (axes shorter than ``size`` give the whole axis), holding the
    index ``inside`` when given."""
    out = []
    for axis, (n, s) in enumerate(zip(shape, size)):
        lo_min, lo_max = 0, max(n - s, 0)
        if inside is not None:
            lo_min, lo_max = max(lo_min, int(inside[axis]) - s + 1), min(lo_max, int(inside[axis]))
        start = int(rng.integers(lo_min, max(lo_min, lo_max) + 1))
        out.append(slice(start, start + s))
    return tuple(out)


def _pad(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``array`` zero-padded at the far end of each axis up to ``size``."""
    pad = [(0, max(s - n, 0)) for n, s in zip(array.shape, size)]
    return np.pad(array, pad) if any(p[1] for p in pad) else array


def sample_slice(volumes: Sequence[Volume], size: Sequence[int], rng: np.random.Generator,
                 lesion_fraction: float = LESION_SLICE_FRACTION,
                 max_angle: float = MAX_ROTATION_DEG) -> tuple[np.ndarray, np.ndarray]:
    """One localisation training sample: a coronal PET slice, ``size = (rows, columns)`` window of it.

    With probability ``lesion_fraction`` (when any volume has lesions) a slice with lesion, the window
    placed to hold one lesion voxel; otherwise a slice with body but no lesion. Then a left-right flip
    (probability 1/2) and a rotation by up to ``max_angle`` degrees (linear for the image, nearest for the
    label, 0 outside). Returns ``(image (1, rows, cols) float32, label (rows, cols) float32)``.
    """
    with_lesion = [v for v in volumes if v.lesion_slices.size]
    if with_lesion and rng.random() < lesion_fraction:
        volume = with_lesion[int(rng.integers(len(with_lesion)))]
        index = int(rng.choice(volume.lesion_slices))
    else:
        candidates = [v for v in volumes if v.body_slices.size] or list(volumes)
        volume = candidates[int(rng.integers(len(candidates)))]
        pool = volume.body_slices if volume.body_slices.size else np.arange(volume.pet.shape[CORONAL_AXIS])
        index = int(rng.choice(pool))
    image, label = volume.pet[:, index, :], volume.label[:, index, :]
    where = np.argwhere(label)
    window = _window(label.shape, size, rng, where[int(rng.integers(len(where)))] if where.size else None)
    image, label = _pad(image[window], size), _pad(label[window].astype(np.float32), size)
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    if max_angle > 0:
        angle = float(rng.uniform(-max_angle, max_angle))
        image = ndimage.rotate(image, angle, reshape=False, order=1, mode="constant", cval=0.0)
        label = ndimage.rotate(label, angle, reshape=False, order=0, mode="constant", cval=0.0)
    return np.ascontiguousarray(image[None], np.float32), np.ascontiguousarray(label, np.float32)


def sample_patch(volume: Volume, patch: Sequence[int], rng: np.random.Generator,
                 lesion_probability: float = 0.5, use_cue: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One segmentation training sample: a ``patch`` ``(D, H, W)`` crop holding a lesion voxel with probability
    ``lesion_probability`` (when the volume has lesions), else one holding a random body voxel; flipped left-right
    with probability 1/2.

    Returns ``(image (2, D, H, W) PET and CT, label (D, H, W) float32, weight (D, H, W) float32)`` where the
    weight is the paper's ``1 + P_loc`` (``use_cue`` and a cue computed), else 1.
    """
    if use_cue and volume.cue is None:
        raise InputError(f"{volume.case}: the cue-weighted loss needs the location cue; compute it first")
    lesion = np.flatnonzero(volume.label) if rng.random() < lesion_probability else np.empty(0, int)
    if not lesion.size:
        body = np.flatnonzero(volume.pet > 0)
        lesion = body if body.size else np.arange(volume.pet.size)
    centre = np.unravel_index(int(rng.choice(lesion)), volume.pet.shape)
    window = _window(volume.pet.shape, patch, rng, centre)
    cue = volume.cue[window] if use_cue else np.zeros_like(volume.pet[window])
    parts = [_pad(a[window], patch) for a in (volume.pet, volume.ct, volume.label)] + [_pad(cue, patch)]
    if rng.random() < 0.5:
        parts = [p[..., ::-1] for p in parts]
    pet, ct, label, cue = (np.ascontiguousarray(p, np.float32) for p in parts)
    return np.stack([pet, ct]), label, 1.0 + cue


def held_out(cases: Sequence[Case], seed: int = 0, val_fraction: float = 0.0, folds: int = 0,
             fold: int = 0) -> list[str]:
    """Names of the cases kept aside: fold ``fold`` of ``folds`` (dealt round-robin, positives first, seeded),
    or a seeded ``val_fraction`` of each of positives and negatives (at least one case when > 0)."""
    rng = np.random.default_rng(seed)
    groups = [sorted(c.name for c in cases if c.positive), sorted(c.name for c in cases if not c.positive)]
    if folds:
        if not 2 <= folds <= len(cases) or not 0 <= fold < folds:
            raise InputError(f"need 2 <= --folds <= {len(cases)} and 0 <= --fold < --folds")
        order = [g[i] for g in groups for i in rng.permutation(len(g))]
        return sorted(order[fold::folds])
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    out = [g[i] for g in groups for i in rng.permutation(len(g))[: int(round(val_fraction * len(g)))]]
    if val_fraction > 0 and not out:
        out = [cases[int(rng.integers(len(cases)))].name]
    return sorted(out)


def copy_sts_cases(sts: Path, folder: Path, names: Sequence[str]) -> list[str]:
    """Copy IBSI crops ``sts/<name>/{PET_image,CT_image,PET_mask}.nii.gz`` into ``folder`` in this module's layout
    (``<name>_pet``, ``_ct``, ``_label``; the mask is on the PET grid). Returns the names copied."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = Path(sts) / name
        if not (source / "PET_image.nii.gz").is_file():
            raise InputError(f"{source} holds no PET_image.nii.gz (an IBSI STS crop folder is expected)")
        for key, file in (("pet", "PET_image"), ("ct", "CT_image"), ("label", "PET_mask")):
            target = folder / f"{name}{SUFFIXES[key]}"
            if target.exists():
                raise OutputExistsError(f"{target} exists")
            shutil.copyfile(source / f"{file}.nii.gz", target)
    return list(names)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic whole-body PET/CT cohort for autopet-l2snet, "
                                                 "or copy real IBSI STS crops into the same layout.")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--sts", type=Path, help="ibsi-sts-petct folder: copy --names from it instead")
    parser.add_argument("--names", nargs="+", default=[], help="STS cases to copy (e.g. STS_001 STS_002)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.sts:
        log.info("copied %s to %s", ", ".join(copy_sts_cases(args.sts, args.output, args.names)), args.output)
        return 0
    records = write_cohort(args.output, args.cases, args.seed, args.overwrite)
    log.info("wrote %d synthetic cases (%d with lesions) to %s", len(records),
             sum(r["with_lesions"] for r in records), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
