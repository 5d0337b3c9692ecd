"""Training data for TS-FCN: image/mask NIfTI pairs, patient-wise splits, jittered boxes, slice crops.

A data folder holds ``image/X.nii.gz`` + ``nodule_mask/X.nii.gz`` (the layout of the LIDC nodule VOIs) or
``images/X`` + ``labels/X`` (any format :func:`lesionseg.read_image` reads). One pair is one tumour; its
mask is foreground where ``> 0``. Boxes are built from the masks in continuous voxel coordinates
``(i, j, k)`` and handed to the method as LPS boxes, exactly as a user's box would be.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ...errors import InputError
from ...geometry import IndexBox, index_to_world
from ...image import Image
from ...io import read_image
from ...prompts import Box
from .preprocess import Preprocessing, crop_slices, liberal_box, mask_to_network, to_network

log = logging.getLogger(__name__)

LAYOUTS = (("image", "nodule_mask"), ("images", "labels"))
"""Accepted ``(image folder, mask folder)`` names inside a data folder."""

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass(frozen=True)
class Case:
    """One tumour: its CT image, its ``(K, J, I)`` bool mask on the same grid, a name and a patient id."""

    name: str
    patient: str
    image: Image
    mask: np.ndarray

    @property
    def tight(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive voxel bounding box ``(lo, hi)`` of the mask, ``(i, j, k)`` order."""
        k, j, i = np.nonzero(self.mask)
        return np.array([i.min(), j.min(), k.min()]), np.array([i.max(), j.max(), k.max()])


def patient_of(name: str) -> str:
    """Patient id of a case file name: ``LIDC-IDRI-0011_R_10`` -> ``LIDC-IDRI-0011``; else the part
    before the first ``_R_`` or the whole stem."""
    match = re.match(r"(LIDC-IDRI-\d+)", name)
    return match.group(1) if match else name.split("_R_")[0]


def _stem(path: Path) -> str:
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def find_pairs(folder: Path | str) -> list[tuple[Path, Path]]:
    """``(image, mask)`` paths of a data folder, sorted by name; :class:`InputError` when none match."""
    root = Path(folder)
    for image_dir, mask_dir in LAYOUTS:
        if (root / image_dir).is_dir() and (root / mask_dir).is_dir():
            masks = {_stem(p): p for p in (root / mask_dir).iterdir() if p.name.endswith(SUFFIXES)}
            pairs = [(p, masks[_stem(p)]) for p in sorted((root / image_dir).iterdir())
                     if p.name.endswith(SUFFIXES) and _stem(p) in masks]
            if pairs:
                return pairs
    raise InputError(f"{root} holds no image/mask pairs: expected {' or '.join(f'{a}/ + {b}/' for a, b in LAYOUTS)}"
                     " with files of the same name")


def load_cases(folder: Path | str) -> list[Case]:
    """Read every pair of ``folder``; pairs with an empty mask or another grid raise :class:`InputError`."""
    cases = []
    for image_path, mask_path in find_pairs(folder):
        image, mask = read_image(image_path), read_image(mask_path)
        if not image.same_grid(mask):
            raise InputError(f"{mask_path} is not on the grid of {image_path}")
        if not np.any(mask.array > 0):
            raise InputError(f"{mask_path} is empty")
        name = _stem(image_path)
        cases.append(Case(name, patient_of(name), image, mask.array > 0))
    log.info("read %d cases from %s", len(cases), folder)
    return cases


def split_by_patient(cases: Sequence[Case], val_fraction: float = 0.2, seed: int = 0
                     ) -> tuple[list[Case], list[Case]]:
    """Split ``cases`` into (train, validation) so that no patient is in both; the validation part holds
    ``round(val_fraction * patients)`` patients drawn with ``seed``."""
    patients = sorted({c.patient for c in cases})
    if not 0.0 < val_fraction < 1.0 or len(patients) < 2:
        raise InputError("need 0 < val_fraction < 1 and at least two patients")
    rng = np.random.default_rng(seed)
    count = min(max(1, int(round(val_fraction * len(patients)))), len(patients) - 1)
    val = set(rng.choice(patients, size=count, replace=False).tolist())
    return [c for c in cases if c.patient not in val], [c for c in cases if c.patient in val]


def jittered_box(case: Case, rng: np.random.Generator, scale: float = 0.15, shift: float = 0.15,
                 axes: int = 3) -> Box:
    """LPS box around the tumour, jittered: each side scaled by ``U(1-scale, 1+scale)``, the centre moved
    by ``U(-shift, shift)`` x side, independently per axis (the first ``axes`` of i, j, k).

    The unjittered box spans the outer faces of the mask's edge voxels (``lo - 0.5 .. hi + 0.5``), so
    :func:`lesionseg.geometry.box_to_index` of it gives back exactly the mask's bounding voxels.
    """
    lo, hi = case.tight
    centre, side = (lo + hi) / 2.0, (hi - lo + 1).astype(float)
    n = np.zeros(3, bool)
    n[:axes] = True
    side = np.where(n, side * rng.uniform(1 - scale, 1 + scale, 3), side)
    centre = np.where(n, centre + rng.uniform(-shift, shift, 3) * side, centre)
    corners = np.array([centre - side / 2.0, centre + side / 2.0])
    world = index_to_world(case.image, corners)
    return Box(world.min(axis=0), world.max(axis=0))


def jitter_boxes(cases: Sequence[Case], seed: int = 0, scale: float = 0.15, shift: float = 0.15) -> list[Box]:
    """One :func:`jittered_box` per case from one generator seeded with ``seed`` (reproducible)."""
    rng = np.random.default_rng(seed)
    return [jittered_box(c, rng, scale, shift) for c in cases]


def _index_range(case: Case, lo_f: np.ndarray, hi_f: np.ndarray) -> IndexBox:
    """Voxels whose centres lie in the continuous range, clipped to the image (nearest voxel if thin)."""
    lo, hi = np.ceil(lo_f - 1e-6).astype(int), np.floor(hi_f + 1e-6).astype(int)
    centre = np.round((lo_f + hi_f) / 2).astype(int)
    lo, hi = np.where(hi < lo, centre, lo), np.where(hi < lo, centre, hi)
    size = case.image.size_ijk
    return IndexBox(np.clip(lo, 0, size - 1), np.clip(hi, 0, size - 1))


def box_crops(case: Case, box: IndexBox, prep: Preprocessing, pad_mode: str = "constant"
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(n, side, side)`` HU crops and 0/1 mask crops of the box's slices in its liberal square."""
    lb = liberal_box(box, prep)
    crops = crop_slices(case.image.array, lb, prep.pad_value, pad_mode)
    masks = crop_slices(case.mask.astype(np.float32), lb, 0.0, pad_mode)
    return crops, masks


def dihedral(x: np.ndarray, index: int) -> np.ndarray:
    """One of the 8 mirror/rotation variants of the last two axes (``index`` 0 = identity)."""
    out = np.rot90(x, index % 4, axes=(-2, -1))
    return np.flip(out, axis=-1) if index >= 4 else out


def epoch_samples(cases: Sequence[Case], prep: Preprocessing, rng: np.random.Generator, jitter: float = 0.25,
                  augment: bool = True, reflect_probability: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of training slices: ``x`` ``(N, 3, size, size)`` float32 and ``y`` ``(N, size, size)`` int64.

    Per case: one jittered box (scale and shift ``± jitter``), every slice of it (including slices past the
    tumour's ends, which teach empty outputs), padding by air or, with ``reflect_probability``, by
    reflection; with ``augment`` each slice gets one random mirror/rotation of the 8 (the paper's 8x).
    """
    xs, ys = [], []
    for case in cases:
        lo, hi = case.tight
        centre, side = (lo + hi) / 2.0, (hi - lo + 1).astype(float) * rng.uniform(1 - jitter, 1 + jitter, 3)
        centre = centre + rng.uniform(-jitter, jitter, 3) * side
        box = _index_range(case, centre - side / 2.0, centre + side / 2.0)
        mode = "reflect" if rng.random() < reflect_probability else "constant"
        crops, masks = box_crops(case, box, prep, mode)
        x, y = to_network(crops, prep).numpy(), mask_to_network(masks, prep.size).numpy()
        if augment:
            for s in range(len(x)):
                t = int(rng.integers(8))
                x[s], y[s] = dihedral(x[s], t), dihedral(y[s], t)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled mini-batches of ``(x, y)`` (the last one may be smaller)."""
    order = rng.permutation(len(x))
    for first in range(0, len(order), batch_size):
        idx = order[first:first + batch_size]
        yield x[idx], y[idx]


def intensity_statistics(cases: Sequence[Case], prep: Preprocessing) -> tuple[float, float, float]:
    """Mean and std of the windowed 0..255 network input over the unjittered training crops, and the
    tumour pixel fraction (for the inverse-frequency class weights)."""
    raw = dataclasses.replace(prep, mean=(0.0,) * 3, std=(1.0,) * 3)
    total = sq = count = tumour = 0.0
    for case in cases:
        lo, hi = case.tight
        crops, masks = box_crops(case, IndexBox(lo, hi), raw)
        x = to_network(crops, raw)[:, 0].double()
        total += float(x.sum())
        sq += float((x * x).sum())
        count += x.numel()
        tumour += float(mask_to_network(masks, prep.size).sum())
    mean = total / count
    return mean, float(np.sqrt(max(sq / count - mean * mean, 1e-12))), tumour / count
