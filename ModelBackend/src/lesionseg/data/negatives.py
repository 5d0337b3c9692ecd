"""Real CT without the lesions a method looks for, as true negatives of its training (issue #18).

Trained on phantoms only, networks called lesion in real CT that showed none. Real CT without such lesions is
plentiful, so a trainer's ``--negatives DIR`` (repeatable) adds the cases of datasets in the one convention
(:mod:`lesionseg.data`) as samples whose target is background. This module is the method-independent part:

* :func:`negative_cases`: the datasets' training cases, ``--exclude-negatives`` names (case or patient) left out;
* :func:`iter_negatives`: every channel of every case on the caller's working grid (a function the caller
  gives, e.g. its resampling to isotropic voxels), with its **ignore mask**: the datasets' own labels mark
  lesions of other kinds (a lung nodule, a sarcoma): what the method should call them is unknown, so those
  voxels and a :data:`LESION_MARGIN_MM` margin around them are left out of the loss instead of counted as
  background (:func:`lesion_margin`);
* :func:`describe_negatives`: the model card's record.

The methods' adapters (:mod:`lesionseg.methods.s4c.negatives`, :mod:`lesionseg.methods.smalllesion.train`) turn
each channel into their own training sample. No torch here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

from .. import progress
from ..errors import InputError
from ..image import Image
from ..io import read_image
from ..resample import resample_to_grid
from .dataset import Case, Dataset

log = logging.getLogger(__name__)
LESION_MARGIN_MM = 5.0
"""Margin (mm) around a negatives dataset's labelled lesions that is ignored by the loss as well."""
IGNORE = 255
"""Label value of a voxel the loss leaves out (uint8 targets)."""
TARGET = "background; the datasets' labelled lesions and a margin ignored by the loss"


def negative_cases(roots: Sequence[Path], exclude: Sequence[str] = (),
                   training: Optional[Path] = None) -> list[tuple[Dataset, list[Case]]]:
    """The datasets at ``roots`` and their training cases, without the cases whose name or patient is in
    ``exclude`` (a name matching nothing is logged as a warning).

    Raises:
        InputError: a folder that is not a dataset (from :class:`~lesionseg.data.Dataset`), no folder at all, a
            folder that is the ``training`` dataset itself (its lesions would be called background), or no case
            left after the exclusion.
    """
    if not roots:
        raise InputError("--negatives: no dataset folder given")
    for root in roots:
        if training is not None and Path(root).resolve() == Path(training).resolve():
            raise InputError(f"--negatives {root} is the training dataset itself; give datasets without the "
                             f"lesions the method segments")
    left_out = {str(name) for name in exclude}
    out, matched = [], set()
    for root in roots:
        dataset = Dataset(root)
        cases = []
        for case in dataset.cases("train"):
            hits = {case.name, case.patient} & left_out
            matched |= hits
            if not hits:
                cases.append(case)
        out.append((dataset, cases))
    unmatched = sorted(left_out - matched)
    if unmatched:
        log.warning("--exclude-negatives names no case or patient of the negatives: %s", ", ".join(unmatched))
    if not any(cases for _, cases in out):
        raise InputError(f"--negatives: no case is left in {', '.join(str(r) for r in roots)} after "
                         f"--exclude-negatives ({len(left_out)} name(s) excluded)")
    return out


def lesion_margin(lesion: np.ndarray, spacing_mm: Union[float, Sequence[float]],
                  margin_mm: float = LESION_MARGIN_MM) -> np.ndarray:
    """``lesion`` (a ``(D, H, W)`` bool mask) dilated by ``margin_mm``: every voxel whose centre lies within
    ``margin_mm`` of a lesion voxel's centre (a Euclidean ball), computed in the lesions' bounding box plus the
    margin only. ``spacing_mm``: one voxel edge (isotropic) or three, in array axis order ``(D, H, W)``."""
    from scipy import ndimage

    out = lesion.astype(bool, copy=True)
    if not out.any():
        return out
    sampling = np.broadcast_to(np.asarray(spacing_mm, float), (3,))
    reach = np.ceil(margin_mm / sampling).astype(int)
    where = np.argwhere(out)
    box = tuple(slice(max(int(lo) - r, 0), int(hi) + r + 1) for lo, hi, r in zip(where.min(0), where.max(0), reach))
    distance = ndimage.distance_transform_edt(~out[box], sampling=sampling)
    out[box] = distance <= margin_mm + 1e-6
    return out


@dataclass
class NegativeChannel:
    """One channel of one negatives case on the caller's grid: ``image`` (what ``to_grid`` made of the channel,
    e.g. HU on isotropic voxels) and ``ignore``, a bool array of ``image``'s ``(K, J, I)`` shape, True on the
    voxels the loss must leave out. ``name`` is ``"<dataset folder name>/<case>"``; ``channel`` the channel's
    index in the case."""

    name: str
    case: Case
    channel: int
    image: Image
    ignore: np.ndarray


def iter_negatives(roots: Sequence[Path], to_grid: Callable[[Image], Image], exclude: Sequence[str] = (),
                   margin_mm: float = LESION_MARGIN_MM, training: Optional[Path] = None) -> Iterator[NegativeChannel]:
    """Every channel of every training case of the datasets at ``roots`` (cases whose name or patient is in
    ``exclude`` left out; :func:`negative_cases`) on the grid ``to_grid`` makes of it, with its ignore mask.

    The ignore mask: the voxels the dataset labels non-zero, resampled linearly onto the channel's new grid
    where **every voxel it touches counts** (a lesion thinner than a working voxel is not lost), dilated by
    ``margin_mm`` (:func:`lesion_margin`, the new grid's spacing).

    Raises:
        InputError: see :func:`negative_cases` (before anything is read).
    """
    datasets = negative_cases(roots, exclude, training)
    total = sum(len(cases) for _, cases in datasets)
    channels = ignored = done = 0
    with progress.task("loading negatives", total=total) as tick:
        for dataset, cases in datasets:
            for case in cases:
                lesion = case.read_label()
                lesion = lesion.with_array((lesion.array != 0).astype(np.float32))
                for index, path in enumerate(case.images):
                    work = to_grid(read_image(path))
                    touched = resample_to_grid(lesion, work, "linear", 0.0).array > 0
                    mask = lesion_margin(touched, work.spacing[::-1], margin_mm)
                    ignored += int(mask.sum())
                    channels += 1
                    yield NegativeChannel(f"{dataset.root.name}/{case.name}", case, index, work, mask)
                done += 1
                tick(done, total)
    log.info("negatives: %d channels of %d cases of %d dataset(s); %d voxels around their lesions ignored",
             channels, total, len(datasets), ignored)


def describe_negatives(roots: Sequence[Path], names: Sequence[str], exclude: Sequence[str], share: float,
                       margin_mm: float = LESION_MARGIN_MM) -> dict:
    """The card's record of the negatives: folders, dataset names, number of volumes (one per entry of
    ``names``, the volumes' ``"<dataset>/<case>"``) and of cases, excluded names, share, margin, target."""
    return {"folders": [str(r) for r in roots], "datasets": [Dataset(root).name for root in roots],
            "volumes": len(names), "cases": len(set(names)), "excluded": sorted(str(e) for e in exclude),
            "share": float(share), "lesion_margin_mm": float(margin_mm), "target": TARGET}
