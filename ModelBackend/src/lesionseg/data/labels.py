"""Mapping a dataset's label values onto a method's classes (``--labels pancreas=1,tumour=2`` or a JSON file).

A method declares its classes in order, background first (e.g. s4c: ``("background", "pancreas", "tumour",
"duct")``): class ``i`` is label value ``i`` in what the method trains on. A dataset names its labels in
``dataset.json`` (MSD Task07: ``{"background": 0, "pancreas": 1, "cancer": 2}``). :func:`resolve` finds for
each method class the dataset values that make it, by the mapping the user gave, else by name (with the
aliases of :data:`ALIASES`), else — for a method with one foreground class and a dataset with one foreground
label — that label. Dataset values no class takes become background. One clear error when the names do not
say enough, showing the ``--labels`` to write.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import InputError

ALIASES = {
    "lesion": ("lesion", "lesions", "tumour", "tumor", "gtv", "nodule", "cancer", "mass", "foreground"),
    "tumour": ("tumour", "tumor", "cancer", "lesion", "mass", "gtv", "neoplasm"),
    "pancreas": ("pancreas",),
    "duct": ("duct", "dilated duct", "pancreatic duct", "dilated_duct", "pancreatic_duct", "mpd"),
}
"""Names a dataset may use for a method class (compared case-insensitively, with '_' as ' ')."""

LabelSpec = Union[None, str, Path, Mapping[str, Union[int, Sequence[int]]]]


def parse(spec: LabelSpec) -> dict[str, list[int]]:
    """``"pancreas=1,tumour=2+3"`` / a JSON file / a dict -> ``{class: [dataset values]}`` (``{}`` for None)."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        items = spec.items()
    else:
        text = str(spec)
        if text.lower().endswith(".json") or (Path(text).is_file() and "=" not in text):
            try:
                data = json.loads(Path(text).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read the label map {text}: {exc}") from None
            if not isinstance(data, dict):
                raise InputError(f"the label map {text} must be a JSON object {{\"class\": value}}")
            items = data.items()
        else:
            items = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                if "=" not in part:
                    raise InputError(f"--labels takes CLASS=VALUE[+VALUE...] pairs separated by commas, got {part!r}")
                name, values = part.split("=", 1)
                items.append((name.strip(), values.split("+")))
    out: dict[str, list[int]] = {}
    for name, values in items:
        values = values if isinstance(values, (list, tuple)) else [values]
        try:
            ints = [int(str(v).strip()) for v in values]
        except ValueError:
            raise InputError(f"--labels: the values of {name!r} must be whole numbers, got {values!r}") from None
        if any(v < 0 for v in ints):
            raise InputError(f"--labels: label values must be >= 0, got {ints} for {name!r}")
        out[str(name).strip().lower()] = ints
    return out


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def resolve(classes: Sequence[str], dataset_labels: Mapping[str, int], spec: LabelSpec = None) -> dict[int, list[int]]:
    """``{method class index: [dataset values]}`` for every foreground class of ``classes`` (index 0 is the
    background). Raises :class:`InputError` when a class cannot be found, a mapped value is not one of the
    dataset's, or two classes take one value."""
    given = parse(spec)
    known = {_norm(c) for c in classes}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InputError(f"--labels names {', '.join(unknown)}, not a class of this method ({', '.join(classes[1:])})")
    values = set(int(v) for v in dataset_labels.values())
    by_name = {_norm(k): int(v) for k, v in dataset_labels.items()}
    foreground = sorted(v for v in values if v != 0)
    out: dict[int, list[int]] = {}
    for index, cls in enumerate(classes):
        if index == 0:
            continue
        key = _norm(cls)
        if key in given:
            out[index] = given[key]
            continue
        if given:
            continue  # a class the user's map leaves out is not in this dataset
        names = ALIASES.get(key, (key,))
        hit = next((by_name[_norm(n)] for n in names if _norm(n) in by_name), None)
        if hit is not None:
            out[index] = [hit]
    if not given and not out and len(classes) == 2 and len(foreground) == 1:
        out[1] = foreground
    if not out:
        example = ",".join(f"{c}={v}" for c, v in zip(classes[1:], foreground or [1]))
        raise InputError(f"the dataset's labels {dict(dataset_labels)} do not name this method's classes "
                         f"({', '.join(classes[1:])}); map them, e.g. --labels {example}")
    taken: dict[int, str] = {}
    for index, vals in out.items():
        for v in vals:
            if v not in values:
                raise InputError(f"--labels maps {classes[index]} to {v}, which is not a label of the dataset "
                                 f"({dict(dataset_labels)})")
            if v in taken:
                raise InputError(f"--labels maps label value {v} to both {taken[v]} and {classes[index]}")
            taken[v] = classes[index]
    return out


def apply(label: np.ndarray, mapping: Mapping[int, Sequence[int]]) -> np.ndarray:
    """The uint8 label array in the method's class indices (dataset values no class takes become 0)."""
    lut = np.zeros(max([int(label.max(initial=0))] + [v for vals in mapping.values() for v in vals]) + 1, np.uint8)
    for index, vals in mapping.items():
        lut[list(vals)] = index
    return lut[np.asarray(label).astype(np.int64, copy=False)]


def describe(classes: Sequence[str], mapping: Mapping[int, Sequence[int]]) -> str:
    """The mapping as ``--labels`` text, e.g. ``pancreas=1,tumour=2`` (recorded in model cards)."""
    return ",".join(f"{classes[i]}={'+'.join(map(str, mapping[i]))}" for i in sorted(mapping))


def class_map(classes: Sequence[str], dataset_labels: Mapping[str, int], spec: LabelSpec = None
              ) -> tuple[dict[int, list[int]], Optional[str]]:
    """:func:`resolve` and its :func:`describe` text: what trainers and evaluators call."""
    mapping = resolve(classes, dataset_labels, spec)
    return mapping, describe(classes, mapping)
