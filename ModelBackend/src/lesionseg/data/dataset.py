"""One dataset convention for every method: the nnU-Net v2 raw layout, plus three optional files.

::

    DatasetNNN_Name/
        dataset.json        {"channel_names": {"0": "PET", "1": "CT"}, "labels": {"background": 0, "lesion": 1},
                             "numTraining": 36, "file_ending": ".nii.gz", ...}
        imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ...   one file per channel (4-digit channel index)
        labelsTr/<case>.nii.gz                                   labels, on the grid of the case's channels
        imagesTs/<case>_0000.nii.gz ...                          optional test cases
        labelsTs/<case>.nii.gz                                   optional labels of test cases (for scoring)
        splits.json         optional: [{"train": [case, ...], "val": [case, ...]}, ...] (nnU-Net's splits_final)
        prompts.json        optional: {"<case>": [prompt dict, ...]} in LPS mm (e.g. DeepLesion's RECIST axes)

``dataset.json`` may also hold ``"patients": {"<case>": "<patient>"}`` (folds never split a patient; a case
without an entry is its own patient), ``"synthetic": true`` (the generator says so), ``"numTraining": 0`` (a
dataset of test cases only, e.g. DeepLesion with RECIST axes but no masks), and free provenance
(``"name"``, ``"description"``, ``"reference"``, ``"licence"``, ``"source"``). nnU-Net's own datasets are read
as they are. Channels and the label of a case share one grid (nnU-Net's rule): :meth:`Dataset.check`
says which case breaks it. No torch here.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from ..errors import InputError
from ..image import Image, grid_mismatch

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
DATASET_JSON = "dataset.json"
SPLITS_JSON = "splits.json"
PROMPTS_JSON = "prompts.json"
FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Case:
    """One case of a dataset: its channel files in channel order, its label file (None for an unlabelled test
    case), its patient and whether it is a test case (``imagesTs``)."""

    name: str
    images: tuple[Path, ...]
    label: Optional[Path]
    patient: str
    test: bool = False
    channel_names: tuple[str, ...] = field(default=(), compare=False)

    def image(self, channel: Union[int, str]) -> Path:
        """The file of ``channel`` (its index, or its name as ``dataset.json`` gives it, case-insensitive)."""
        if isinstance(channel, str):
            names = [n.lower() for n in self.channel_names]
            if channel.lower() not in names:
                raise InputError(f"case {self.name} has no channel {channel!r}; its channels: "
                                 f"{', '.join(self.channel_names)}")
            channel = names.index(channel.lower())
        return self.images[channel]

    def read_images(self) -> tuple[Image, ...]:
        """All channels as :class:`~lesionseg.image.Image` (through :func:`lesionseg.io.read_image`)."""
        from ..io import read_image

        return tuple(read_image(p) for p in self.images)

    def read_label(self) -> Image:
        """The label image; :class:`InputError` for an unlabelled case."""
        from ..io import read_image

        if self.label is None:
            raise InputError(f"case {self.name} has no label file")
        return read_image(self.label)


class Dataset:
    """A dataset folder in the convention above (read-only).

    Args:
        root: the ``DatasetNNN_Name`` folder (with ``dataset.json``).

    Attributes:
        channel_names: channel names in index order, e.g. ``("PET", "CT")``.
        labels: ``{name: value}`` from ``dataset.json`` (values may be ints or, for nnU-Net region labels,
            lists; only ints are accepted here).
        meta: the whole ``dataset.json``.
    """

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        path = self.root / DATASET_JSON
        if not self.root.is_dir():
            raise InputError(f"no such dataset folder: {self.root}")
        if not path.is_file():
            raise InputError(f"{self.root} is not a dataset folder (no {DATASET_JSON}); write one with "
                             f"'lesionseg data import KIND SRC -o {self.root}' or 'lesionseg data synthetic ...'")
        try:
            self.meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        channels = self.meta.get("channel_names") or self.meta.get("modality")
        if not isinstance(channels, dict) or not channels:
            raise InputError(f"{path} lacks 'channel_names' (e.g. {{\"0\": \"CT\"}})")
        try:
            order = sorted(channels, key=int)
        except ValueError:
            raise InputError(f"{path}: channel_names keys must be channel indices 0, 1, ...") from None
        if [int(k) for k in order] != list(range(len(order))):
            raise InputError(f"{path}: channel_names must number the channels 0..{len(order) - 1}, got {order}")
        self.channel_names: tuple[str, ...] = tuple(str(channels[k]) for k in order)
        labels = self.meta.get("labels")
        if not isinstance(labels, dict) or not labels:
            raise InputError(f"{path} lacks 'labels' (e.g. {{\"background\": 0, \"lesion\": 1}})")
        bad = {k: v for k, v in labels.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}
        if bad:
            raise InputError(f"{path}: label values must be whole numbers >= 0 (region labels are not supported); "
                             f"got {bad}")
        if len(set(labels.values())) != len(labels):
            raise InputError(f"{path}: two label names share one value: {labels}")
        self.labels: dict[str, int] = dict(labels)
        self.file_ending = str(self.meta.get("file_ending", ".nii.gz"))
        patients = self.meta.get("patients") or {}
        if not isinstance(patients, dict):
            raise InputError(f"{path}: 'patients' must map case names to patient ids")
        self.patients: dict[str, str] = {str(k): str(v) for k, v in patients.items()}
        self._cases: dict[str, list[Case]] = {}

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.root.name)

    @property
    def synthetic(self) -> bool:
        """``dataset.json`` says its data was generated (phantoms, or lesions inserted into real images)."""
        return bool(self.meta.get("synthetic", False))

    def group(self, case: str) -> str:
        """The lesion kind of ``case`` (``"groups"`` of a merged dataset, :mod:`.merge`); ``""`` without one."""
        groups = self.meta.get("groups") or {}
        return str(groups.get(case, "")) if isinstance(groups, dict) else ""

    def __repr__(self) -> str:
        return (f"Dataset({str(self.root)!r}, channels={list(self.channel_names)}, labels={self.labels}, "
                f"training cases={len(self.cases('train'))})")

    def cases(self, split: str = "train") -> list[Case]:
        """The cases of ``split`` (``"train"``: imagesTr, ``"test"``: imagesTs, ``"all"``: both), sorted by name.

        Raises :class:`InputError` naming the case for a missing channel file or (training cases) a missing
        label, and when ``imagesTr`` holds no case.
        """
        if split == "all":
            return self.cases("train") + self.cases("test")
        if split not in FOLDERS:
            raise InputError(f"split must be train, test or all, not {split!r}")
        if split not in self._cases:
            self._cases[split] = self._scan(split)
        return list(self._cases[split])

    def _scan(self, split: str) -> list[Case]:
        images_dir, labels_dir = (self.root / f for f in FOLDERS[split])
        test_only = split == "train" and self.meta.get("numTraining") == 0
        if not images_dir.is_dir():
            if split == "train" and not test_only:
                raise InputError(f"{self.root} has no imagesTr folder")
            return []
        found: dict[str, dict[int, Path]] = {}
        for path in sorted(images_dir.iterdir()):
            if path.name.startswith(".") or not path.name.endswith(self.file_ending):
                continue
            match = _CHANNEL.match(path.name[: -len(self.file_ending)])
            if not match:
                raise InputError(f"{path} is not named <case>_<XXXX>{self.file_ending} (a 4-digit channel index)")
            found.setdefault(match["case"], {})[int(match["channel"])] = path
        cases = []
        for name in sorted(found):
            channels = found[name]
            missing = [f"{i:04d} ({self.channel_names[i]})" for i in range(len(self.channel_names)) if i not in channels]
            extra = sorted(set(channels) - set(range(len(self.channel_names))))
            if missing:
                raise InputError(f"case {name} of {self.root} lacks channel {', '.join(missing)} in {images_dir.name}")
            if extra:
                raise InputError(f"case {name} of {self.root} has channel file(s) {extra} that dataset.json does "
                                 f"not name (channels: {', '.join(self.channel_names)})")
            label = labels_dir / f"{name}{self.file_ending}"
            if not label.is_file():
                if split == "train":
                    raise InputError(f"case {name} of {self.root} has no label {labels_dir.name}/{label.name}")
                label = None
            cases.append(Case(name, tuple(channels[i] for i in range(len(self.channel_names))), label,
                              self.patients.get(name, name), split == "test", self.channel_names))
        if split == "train" and not cases and not test_only:
            raise InputError(f"{images_dir} holds no case files ending in {self.file_ending}")
        return cases

    def case(self, name: str) -> Case:
        """The training or test case called ``name``."""
        for case in self.cases("all"):
            if case.name == name:
                return case
        raise InputError(f"{self.root} has no case {name!r}")

    def select(self, names: Iterable[str]) -> list[Case]:
        """The cases called ``names`` (in that order); one error naming all that are missing."""
        names = list(names)
        known = {c.name: c for c in self.cases("all")}
        missing = [n for n in names if n not in known]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise InputError(f"{self.root} has no case {', '.join(missing[:5])}{more}: is it the dataset the model "
                             "was trained on?")
        return [known[n] for n in names]

    def check(self, cases: Optional[Sequence[Case]] = None, read: bool = True) -> None:
        """Check ``cases`` (default: all) and raise one :class:`InputError` naming the first broken case.

        Without ``read`` only the files are checked (done by :meth:`cases`). With ``read``: every channel
        and the label are read; they must share one grid, and label values must be ones ``dataset.json``
        names.
        """
        cases = self.cases("all") if cases is None else list(cases)
        allowed = set(self.labels.values())
        if not read:
            return
        for case in cases:
            images = case.read_images()
            for name, image in zip(self.channel_names[1:], images[1:]):
                if not image.same_grid(images[0]):
                    raise InputError(f"case {case.name}: channel {name} is on another grid than channel "
                                     f"{self.channel_names[0]} ({grid_mismatch(image, images[0])})")
            if case.label is None:
                continue
            label = case.read_label()
            if not label.same_grid(images[0]):
                raise InputError(f"case {case.name}: the label is on another grid than its images "
                                 f"({grid_mismatch(label, images[0])})")
            values = set(np.unique(label.array).tolist())
            unknown = sorted(values - allowed)
            if unknown:
                raise InputError(f"case {case.name}: label values {unknown} are not in dataset.json's labels "
                                 f"{self.labels}")

    def prompts(self, case: str) -> list:
        """The prompts ``prompts.json`` gives for ``case`` (``[]`` when none)."""
        from ..prompts import prompt_from_dict

        path = self.root / PROMPTS_JSON
        if not path.is_file():
            return []
        if not hasattr(self, "_prompts"):
            try:
                self._prompts = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read {path}: {exc}") from None
        return [prompt_from_dict(p) for p in self._prompts.get(case, [])]

    def splits(self) -> Optional[list[dict[str, list[str]]]]:
        """``splits.json`` (nnU-Net's ``splits_final.json`` format) when present, checked against the cases."""
        path = self.root / SPLITS_JSON
        if not path.is_file():
            return None
        try:
            splits = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        if not isinstance(splits, list) or not all(isinstance(s, dict) and "val" in s for s in splits):
            raise InputError(f"{path} must be a list of {{\"train\": [...], \"val\": [...]}}")
        self.select(n for s in splits for n in s["val"])
        return splits


def is_dataset(folder: PathLike) -> bool:
    """True when ``folder`` holds a ``dataset.json``."""
    return (Path(folder) / DATASET_JSON).is_file()


def channel_file(case: str, channel: int, ending: str = ".nii.gz") -> str:
    """``<case>_<XXXX><ending>``: the file name of one channel."""
    return f"{case}_{channel:04d}{ending}"
