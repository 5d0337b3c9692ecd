"""Folds and held-out splits that never split a patient, written once for every method.

Patients (not cases) are dealt: a patient's cases always land in the same fold. With ``stratify`` (a case ->
group function, e.g. positive / negative), patients are grouped by the group of their first case and each
group is dealt in turn, continuing the round-robin across groups, so fold sizes differ by at most one patient
and every fold gets its share of each group. Seeded: the same cases, patients, ``k`` and ``seed`` give the same
folds. A dataset's ``splits.json`` (nnU-Net's ``splits_final.json``) overrides the dealt folds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Optional, Sequence

import numpy as np

from ..errors import InputError
from .dataset import Case, Dataset


@dataclass(frozen=True)
class Split:
    """Training and held-out (validation / test) case names of one fold or one hold-out split."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]
    fold: Optional[int] = None
    folds: int = 0

    def to_dict(self) -> dict:
        """The card's record: ``train_cases``, ``held_out_cases``, ``fold``, ``folds``."""
        return {"train_cases": list(self.train), "held_out_cases": list(self.held_out), "fold": self.fold,
                "folds": self.folds}


def _patient_groups(cases: Sequence[Case], stratify: Optional[Callable[[Case], Hashable]]) -> list[list[str]]:
    """Patients (sorted) split into strata by ``stratify`` of each patient's first case (sorted by name)."""
    first: dict[str, Case] = {}
    for case in sorted(cases, key=lambda c: c.name):
        first.setdefault(case.patient, case)
    if stratify is None:
        return [sorted(first)]
    strata: dict[Hashable, list[str]] = {}
    for patient in sorted(first):
        strata.setdefault(stratify(first[patient]), []).append(patient)
    return [strata[key] for key in sorted(strata, key=repr, reverse=True)]


def deal_patients(cases: Sequence[Case], k: int, seed: int = 0,
                  stratify: Optional[Callable[[Case], Hashable]] = None) -> list[list[str]]:
    """``k`` disjoint, sorted lists of case names covering ``cases``; no patient in two lists."""
    patients = {c.patient for c in cases}
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(patients):
        raise InputError(f"cross-validation needs 2 <= folds <= {len(patients)} (the number of patients), got {k!r}")
    rng = np.random.default_rng(seed)
    slots: list[list[str]] = [[] for _ in range(k)]
    slot = 0
    for group in _patient_groups(cases, stratify):
        for idx in rng.permutation(len(group)):
            slots[slot % k].append(group[idx])
            slot += 1
    return [sorted(c.name for c in cases if c.patient in set(fold)) for fold in slots]


def fold_split(dataset_or_cases, k: int, fold: int, seed: int = 0,
               stratify: Optional[Callable[[Case], Hashable]] = None) -> Split:
    """Fold ``fold`` of ``k`` as a :class:`Split`: from the dataset's ``splits.json`` when it has ``k`` folds,
    else dealt by patient (:func:`deal_patients`)."""
    cases = _training_cases(dataset_or_cases)
    if isinstance(dataset_or_cases, Dataset):
        given = dataset_or_cases.splits()
        if given is not None and len(given) == k:
            if not 0 <= fold < k:
                raise InputError(f"--fold must be in 0..{k - 1}, got {fold}")
            val = sorted(given[fold]["val"])
            return Split(tuple(sorted(c.name for c in cases if c.name not in set(val))), tuple(val), fold, k)
    folds = deal_patients(cases, k, seed, stratify)
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < k:
        raise InputError(f"--fold must be in 0..{k - 1}, got {fold!r}")
    held = set(folds[fold])
    return Split(tuple(sorted(c.name for c in cases if c.name not in held)), tuple(folds[fold]), int(fold), k)


def holdout_split(dataset_or_cases, val_fraction: float, seed: int = 0,
                  stratify: Optional[Callable[[Case], Hashable]] = None) -> Split:
    """A seeded share ``val_fraction`` of the patients of each stratum held out (at least one patient when
    ``val_fraction > 0`` and at least one left for training); ``val_fraction == 0`` holds out nothing."""
    cases = _training_cases(dataset_or_cases)
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    held: list[str] = []
    groups = _patient_groups(cases, stratify)
    for group in groups:
        count = int(round(val_fraction * len(group)))
        held += [group[i] for i in rng.permutation(len(group))[:count]]
    patients = sorted({c.patient for c in cases})
    if val_fraction > 0 and not held and len(patients) > 1:
        held = [patients[int(rng.integers(len(patients)))]]
    if held and len(set(held)) == len(patients):
        raise InputError(f"--val-fraction {val_fraction} holds out every patient; lower it")
    names = sorted(c.name for c in cases if c.patient in set(held))
    return Split(tuple(sorted(c.name for c in cases if c.name not in set(names))), tuple(names))


def _training_cases(dataset_or_cases) -> list[Case]:
    if isinstance(dataset_or_cases, Dataset):
        return dataset_or_cases.cases("train")
    cases = list(dataset_or_cases)
    if not cases:
        raise InputError("no cases to split")
    return cases
