"""The case list of a batch: from a dataset folder (the project's convention) or from a CSV with one row per case.

A **dataset folder** (``dataset.json``; :mod:`lesionseg.data.dataset`) gives the cases of ``imagesTs`` (``split``
``"test"``), ``imagesTr`` (``"train"``), both (``"all"``) or, by default (``"auto"``), ``imagesTs`` when it holds a
case, else ``imagesTr``. Channel ``XXXX`` of ``<case>_XXXX<ending>`` is input ``XXXX`` of the method. Prompts come
from ``prompts.json``. A case that lacks a channel file, or that ``prompts.json`` names but whose images are
missing, is listed with its problem (:attr:`BatchCase.problem`): it fails on its own, the others run.

A **CSV** (header row, one row per case; paths relative to the CSV's folder) has:

- one column per input of the method, named as the method names it (``CT``, ``PET``; case-insensitive), or
  ``image`` for a method taking one image; a file or a DICOM series folder each; trailing optional inputs may be
  empty;
- ``case`` (optional): the case id (default: the first image's name without ``_0000`` and its suffix);
- ``series`` (optional): SeriesInstanceUID(s), separated by spaces, for DICOM folders holding several series;
- for prompt methods: ``box`` (six numbers ``x0 y0 z0 x1 y1 z1``, LPS mm) or ``box_ijk`` (six voxel indices,
  inclusive), ``recist`` and ``recist_short`` (six numbers each, LPS mm), or ``prompt`` (the JSON of a prompt's
  ``to_dict()``, or a list of them); numbers separated by spaces, commas or semicolons.

Case ids name output folders: letters, digits, ``.``, ``_``, ``+`` and ``-``, not starting with a dot, unique.
No torch here.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from ..errors import InputError

PathLike = Union[str, os.PathLike]
SPLITS = ("auto", "test", "train", "all")
CASE_ID = re.compile(r"^[A-Za-z0-9_+\-][A-Za-z0-9._+\-]*$")
RESERVED = {"summary.csv", "summary.json"}
PROMPT_COLUMNS = ("box", "box_ijk", "recist", "recist_short", "prompt")


@dataclass(frozen=True)
class BatchCase:
    """One case: its id, its input paths (method input order; absolute), its prompts (``to_dict()`` form, or
    ``{"kind": "box_ijk", "lo": [i, j, k], "hi": [...]}``, converted on the image's grid), the SeriesInstanceUIDs
    to read, and a problem found while listing it (the case then fails with that message)."""

    name: str
    images: tuple[str, ...]
    prompts: tuple[dict, ...] = ()
    series: tuple[str, ...] = ()
    problem: Optional[str] = None
    source: str = field(default="", compare=False)


def check_case_id(name: str, where: str) -> str:
    """``name`` when it can name an output folder; InputError naming ``where`` otherwise."""
    if not CASE_ID.match(name) or name in RESERVED:
        raise InputError(f"case id {name!r} ({where}) cannot name an output folder: use letters, digits, '.', '_', "
                         "'+' and '-', not starting with '.'")
    return name


def _check_unique(cases: Sequence[BatchCase], where: str) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise InputError(f"case id {case.name!r} appears twice in {where}; give each case its own id")
        seen.add(case.name)


def list_cases(source: PathLike, inputs: Sequence[str], optional_inputs: int = 0, split: str = "auto") -> list[BatchCase]:
    """The cases of a dataset folder or a CSV file (see the module docstring) for a method taking ``inputs``.

    Raises:
        InputError: a missing source, a folder that is not a dataset, a dataset whose channels do not match the
            method's inputs, an empty or malformed CSV, bad or duplicated case ids, no case at all.
    """
    path = Path(source)
    if not path.exists():
        raise InputError(f"no such dataset folder or CSV file: {path}")
    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    cases = _from_dataset(path, inputs, optional_inputs, split) if path.is_dir() else _from_csv(path, inputs,
                                                                                                 optional_inputs)
    if not cases:
        raise InputError(f"{path} lists no case")
    _check_unique(cases, str(path))
    return cases


def _from_dataset(root: Path, inputs: Sequence[str], optional_inputs: int, split: str) -> list[BatchCase]:
    from ..data.dataset import FOLDERS, PROMPTS_JSON, Dataset

    dataset = Dataset(root)
    channels = dataset.channel_names
    if not len(inputs) - optional_inputs <= len(channels) <= len(inputs):
        raise InputError(f"{root} has {len(channels)} channel(s) ({', '.join(channels)}); the method takes "
                         f"{', '.join(inputs)}")
    prompts: dict = {}
    if (root / PROMPTS_JSON).is_file():
        try:
            prompts = json.loads((root / PROMPTS_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {root / PROMPTS_JSON}: {exc}") from None
    if split == "auto":
        split = "test" if _scan(root / FOLDERS["test"][0], dataset.file_ending) else "train"
    splits = ("test", "train") if split == "all" else (split,)
    found = {s: _scan(root / FOLDERS[s][0], dataset.file_ending) for s in ("test", "train")}
    cases = []
    for name_split in splits:
        folder = root / FOLDERS[name_split][0]
        names = set(found[name_split])
        other = set(found["train" if name_split == "test" else "test"])
        if name_split == splits[0]:
            names |= {str(n) for n in prompts if n not in other}  # named in prompts.json, images missing
        for name in sorted(names):
            files = found[name_split].get(name, {})
            missing = [f"{i:04d} ({channels[i]})" for i in range(len(channels)) if i not in files]
            problem = None
            if missing:
                problem = (f"case {name} of {root} lacks channel {', '.join(missing)} in {folder.name}"
                           if files else f"no image {folder.name}/{name}_0000{dataset.file_ending} for this case "
                                         f"(named in {PROMPTS_JSON})")
            cases.append(BatchCase(check_case_id(name, f"in {folder}"),
                                   tuple(str(files[i].absolute()) for i in sorted(files) if i < len(channels)),
                                   tuple(prompts.get(name, ())), (), problem, str(folder)))
    return cases


def _scan(folder: Path, ending: str) -> dict[str, dict[int, Path]]:
    """``{case: {channel: path}}`` of the ``<case>_XXXX<ending>`` files in ``folder`` (others are ignored)."""
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
    out: dict[str, dict[int, Path]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(ending):
            continue
        match = pattern.match(path.name[: -len(ending)])
        if match:
            out.setdefault(match["case"], {})[int(match["channel"])] = path
    return out


def _numbers(text: str, n: int, column: str, row: int, kind=float) -> list:
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != n:
        raise InputError(f"row {row}: column {column!r} needs {n} {'whole ' if kind is int else ''}numbers, got "
                         f"{text!r}")
    return values


def prompts_from_row(row: dict, number: int) -> tuple[dict, ...]:
    """The prompts of one CSV row (see the module docstring) in ``to_dict()`` form (``box_ijk`` kept as such)."""
    from ..prompts import prompt_from_dict

    get = {k: (row.get(k) or "").strip() for k in PROMPT_COLUMNS}
    out: list[dict] = []
    if get["prompt"]:
        try:
            data = json.loads(get["prompt"])
        except ValueError as exc:
            raise InputError(f"row {number}: column 'prompt' is not JSON ({exc})") from None
        items = data if isinstance(data, list) else [data]
        for item in items:
            if not isinstance(item, dict):
                raise InputError(f"row {number}: column 'prompt' must hold prompt objects")
            prompt_from_dict(item)
            out.append(item)
    if get["box"]:
        v = _numbers(get["box"], 6, "box", number)
        out.append({"kind": "box", "corner_a": v[:3], "corner_b": v[3:]})
    if get["box_ijk"]:
        v = _numbers(get["box_ijk"], 6, "box_ijk", number, int)
        out.append({"kind": "box_ijk", "lo": [min(a, b) for a, b in zip(v[:3], v[3:])],
                    "hi": [max(a, b) for a, b in zip(v[:3], v[3:])]})
    if get["recist"]:
        v = _numbers(get["recist"], 6, "recist", number)
        item = {"kind": "recist", "long": [v[:3], v[3:]]}
        if get["recist_short"]:
            s = _numbers(get["recist_short"], 6, "recist_short", number)
            item["short"] = [s[:3], s[3:]]
        prompt_from_dict(item)
        out.append(item)
    elif get["recist_short"]:
        raise InputError(f"row {number}: 'recist_short' needs 'recist' (the long axis) too")
    return tuple(out)


def _default_id(path: str) -> str:
    name = Path(path.rstrip("/\\")).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"_\d{4}$", "", name)


def _from_csv(path: Path, inputs: Sequence[str], optional_inputs: int) -> list[BatchCase]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip().lower(): (v or "") for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path} as a CSV file: {exc}") from None
    lower = [h.lower() for h in header]
    columns = [name.lower() for name in inputs]
    if len(inputs) == 1 and columns[0] not in lower and "image" in lower:
        columns = ["image"]
    needed = len(inputs) - optional_inputs
    absent = [c for c in columns[:needed] if c not in lower]
    if absent:
        raise InputError(f"{path} has no column {', '.join(repr(c) for c in absent)}; its columns: "
                         f"{', '.join(header) or 'none'} (one column per input: {', '.join(inputs)})")
    cases = []
    for number, row in enumerate(rows, start=2):
        values = [row.get(c, "").strip() for c in columns]
        if not any(values) and not any(v.strip() for v in row.values()):
            continue
        problem = None
        if not all(values[:needed]):
            problem = f"row {number} of {path.name} gives no {inputs[values.index('')]} image"
        images = [v for v in values if v]
        resolved = tuple(str((path.parent / v).absolute()) if not Path(v).is_absolute() else v for v in images)
        if problem is None:
            gone = [p for p in resolved if not Path(p).exists()]
            problem = f"no such file or folder: {gone[0]}" if gone else None
        name = row.get("case", "").strip() or (_default_id(images[0]) if images else f"row{number}")
        cases.append(BatchCase(check_case_id(name, f"row {number} of {path.name}"), resolved,
                               prompts_from_row(row, number), tuple(row.get("series", "").split()), problem,
                               f"{path.name} row {number}"))
    return cases
