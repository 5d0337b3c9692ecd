"""One dataset from several: ``lesionseg data merge LIDC=lung STSCT=soft-tissue DL=abdomen -o MIX --folds 5``.

A lesion-agnostic model learns from lesions of several kinds that arrive as separate datasets (each imported
from its own public layout). Merging them gives one dataset in the convention whose cases keep their names,
patients and files, and which also records

- ``"groups": {case: group}``: the lesion kind of every case (the name after ``=``, default the source
  dataset's folder name), so that evaluations report each kind separately (``lesion_dice_by_group``);
- ``"sources"``: name, reference, licence and folder of every source dataset (a model card's attribution);
- ``splits.json`` with ``--folds K``: patient-wise folds dealt within each group, so every fold holds every
  kind in proportion (``lesionseg train ... --folds K --fold F`` then uses exactly these folds).

The sources must have the same channels (by name, case-insensitive) and exactly one foreground label each;
the merged label is ``lesion`` = 1 (a source whose foreground value is not 1 is re-labelled, else its files
are copied byte for byte). A case or patient name found in two sources is an error (names are not rewritten,
so that a case can always be traced back to its source). Synthetic sources make the merged dataset synthetic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import InputError
from .dataset import Dataset
from .splits import deal_patients
from .writer import DatasetWriter

LABELS = {"background": 0, "lesion": 1}


def parse_source(text: str) -> tuple[Path, str]:
    """``"FOLDER=GROUP"`` or ``"FOLDER"`` -> ``(folder, group)`` (group: the folder's name)."""
    folder, _, group = str(text).partition("=")
    if not folder:
        raise InputError(f"{text!r}: give a dataset folder, optionally followed by =GROUP")
    return Path(folder), (group or Path(folder).name)


def _foreground(dataset: Dataset) -> int:
    values = [v for k, v in dataset.labels.items() if k != "background" and v != 0]
    if len(values) != 1:
        raise InputError(f"{dataset.root} has {len(values)} foreground labels ({dataset.labels}); merge needs "
                         "exactly one per source (a lesion label)")
    return int(values[0])


def merge_datasets(sources: Sequence[tuple[Path, str]], output: Path, folds: int = 0, seed: int = 0,
                   overwrite: bool = False, progress: Optional[Callable[[int, int], None]] = None,
                   command: str = "") -> Path:
    """Write the merged dataset (module docstring) to ``output`` and return it."""
    from ..io import read_image

    if len(sources) < 2:
        raise InputError("merge needs at least two datasets")
    datasets = [(Dataset(folder), group) for folder, group in sources]
    channels = [n.lower() for n in datasets[0][0].channel_names]
    for dataset, _ in datasets[1:]:
        if [n.lower() for n in dataset.channel_names] != channels:
            raise InputError(f"{dataset.root} has channels {', '.join(dataset.channel_names)}, "
                             f"{datasets[0][0].root} has {', '.join(datasets[0][0].channel_names)}: merge needs "
                             "the same channels in the same order")
    owner: dict[str, str] = {}
    patient_owner: dict[str, str] = {}
    plan = []
    for dataset, group in datasets:
        value = _foreground(dataset)
        for case in dataset.cases("all"):
            if case.name in owner:
                raise InputError(f"case {case.name} is in both {owner[case.name]} and {dataset.root}")
            if patient_owner.setdefault(case.patient, str(dataset.root)) != str(dataset.root):
                raise InputError(f"patient {case.patient} is in both {patient_owner[case.patient]} and {dataset.root}")
            owner[case.name] = str(dataset.root)
            plan.append((case, group, value))
    meta = {"name": "merged: " + " + ".join(f"{d.name} ({g})" for d, g in datasets),
            "description": "Cases of several datasets in one, each with its lesion kind in 'groups' "
                           "(lesionseg data merge).",
            "synthetic": any(d.synthetic for d, _ in datasets),
            "sources": [{"folder": str(d.root), "group": g, "name": d.name,
                         **{k: d.meta[k] for k in ("reference", "licence", "source", "synthetic") if k in d.meta}}
                        for d, g in datasets],
            "groups": {case.name: group for case, group, _ in plan}}
    names = [datasets[0][0].channel_names[i] for i in range(len(channels))]
    with DatasetWriter(output, names, LABELS, meta, overwrite=overwrite, inputs=[f for f, _ in sources],
                       command=command) as writer:
        for n, (case, group, value) in enumerate(plan):
            if value == 1 or case.label is None:
                writer.add_files(case.name, case.images, case.label, case.patient, case.test)
            else:
                label = read_image(case.label)
                writer.add(case.name, case.read_images(), label.with_array((label.array == value).astype("uint8")),
                           case.patient, case.test)
            if progress is not None:
                progress(n + 1, len(plan))
        if folds:
            train = [c for c, _, _ in plan if not c.test]
            group_of = {c.name: g for c, g, _ in plan}
            dealt = deal_patients(train, folds, seed, lambda c: group_of[c.name])
            writer.set_splits([{"train": [c.name for c in train if c.name not in set(val)], "val": val}
                               for val in dealt])
    return Path(output)
