"""Writing a dataset in the convention of :mod:`.dataset`: importers and synthetic cohort generators use this.

::

    with DatasetWriter(out, channels=("PET", "CT"), labels={"background": 0, "lesion": 1},
                       meta={"name": "STS PET/CT", "licence": "CC BY 3.0"}, overwrite=False) as ds:
        ds.add("STS_001", [pet, ct], label, patient="STS_001")            # Images: written as NIfTI
        ds.add_files("STS_002", [pet_path, ct_path], label_path)          # files: copied byte for byte

The folder is assembled in a temporary sibling and renamed at the end (:func:`lesionseg.outputs.output_folder`):
an error leaves nothing, and ``overwrite`` replaces only an earlier LesionSeg output. ``dataset.json`` gets
``numTraining``, ``file_ending``, ``patients`` (where a case's patient is not the case itself) and ``meta``;
``prompts.json`` and ``splits.json`` are written when prompts or splits were given.
"""
from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from ..errors import InputError
from ..image import Image
from .dataset import DATASET_JSON, FOLDERS, PROMPTS_JSON, SPLITS_JSON, channel_file

ENDING = ".nii.gz"


class DatasetWriter:
    """Context manager that writes one dataset folder (see the module docstring).

    Args:
        output: the dataset folder to create.
        channels: channel names in order (``channel_names`` of ``dataset.json``).
        labels: ``{name: value}``, background 0 first.
        meta: further ``dataset.json`` fields (``name``, ``description``, ``reference``, ``licence``,
            ``synthetic``, ``source``, ...).
        overwrite: replace an earlier LesionSeg output at ``output``.
        inputs: source paths the output must not hold or be (e.g. the folder imported from).
        command: recorded in the folder's output marker.
        test_only: allow a dataset of test cases only (``numTraining`` 0), e.g. DeepLesion, whose RECIST axes
            in ``prompts.json`` are its only annotation.
    """

    def __init__(self, output, channels: Sequence[str], labels: Mapping[str, int], meta: Optional[dict] = None,
                 overwrite: bool = False, inputs: Iterable = (), command: str = "", test_only: bool = False) -> None:
        from ..outputs import check_output_folder

        if not channels:
            raise InputError("a dataset needs at least one channel")
        if labels.get("background", 0) != 0:
            raise InputError("label 'background' must be 0")
        self.output = Path(output)
        self.channels = tuple(channels)
        self.labels = {"background": 0, **{k: int(v) for k, v in labels.items() if k != "background"}}
        self.meta = dict(meta or {})
        self.overwrite, self.inputs, self.command = overwrite, list(inputs), command
        self.test_only = test_only
        self.patients: dict[str, str] = {}
        self.prompts: dict[str, list[dict]] = {}
        self.splits: Optional[list[dict]] = None
        self.counts = {"train": 0, "test": 0}
        self._stack: Optional[ExitStack] = None
        self.work: Optional[Path] = None
        check_output_folder(self.output, overwrite, self.inputs)

    def __enter__(self) -> "DatasetWriter":
        from ..outputs import output_folder

        self._stack = ExitStack()
        self.work = self._stack.enter_context(output_folder(self.output, self.overwrite, self.inputs, self.command))
        for split in FOLDERS.values():
            for folder in split:
                (self.work / folder).mkdir()
        return self

    def __exit__(self, kind, value, tb) -> bool:
        if kind is None:
            try:
                self._finish()
            except BaseException as exc:
                self._stack.__exit__(type(exc), exc, exc.__traceback__)
                raise
        return bool(self._stack.__exit__(kind, value, tb))

    def _finish(self) -> None:
        if self.counts["train"] == 0 and not (self.test_only and self.counts["test"]):
            raise InputError(f"no training case was written to {self.output}")
        for split in FOLDERS.values():
            for folder in split:
                if not any((self.work / folder).iterdir()):
                    (self.work / folder).rmdir()
        data = {"channel_names": {str(i): name for i, name in enumerate(self.channels)}, "labels": self.labels,
                "numTraining": self.counts["train"], "file_ending": ENDING, **self.meta}
        if self.patients:
            data["patients"] = dict(sorted(self.patients.items()))
        (self.work / DATASET_JSON).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        if self.prompts:
            (self.work / PROMPTS_JSON).write_text(json.dumps(self.prompts, indent=1) + "\n", encoding="utf-8")
        if self.splits is not None:
            (self.work / SPLITS_JSON).write_text(json.dumps(self.splits, indent=1) + "\n", encoding="utf-8")

    def _paths(self, case: str, test: bool) -> tuple[list[Path], Path]:
        if self.work is None:
            raise InputError("use DatasetWriter in a with block")
        if not case or "/" in case or case.startswith("."):
            raise InputError(f"invalid case name {case!r}")
        images_dir, labels_dir = (self.work / f for f in FOLDERS["test" if test else "train"])
        images = [images_dir / channel_file(case, i, ENDING) for i in range(len(self.channels))]
        if images[0].exists():
            raise InputError(f"case {case} was written twice")
        return images, labels_dir / f"{case}{ENDING}"

    def _record(self, case: str, patient: Optional[str], test: bool, prompts: Optional[Sequence]) -> None:
        if patient is not None and patient != case:
            self.patients[case] = str(patient)
        if prompts:
            self.prompts[case] = [p if isinstance(p, dict) else p.to_dict() for p in prompts]
        self.counts["test" if test else "train"] += 1

    def add(self, case: str, images: Sequence[Image], label: Optional[Image], patient: Optional[str] = None,
            test: bool = False, prompts: Optional[Sequence] = None) -> None:
        """Write one case from images in channel order (all on one grid, checked) and its label (uint8; None
        only for a test case)."""
        from ..io import write_image

        if len(images) != len(self.channels):
            raise InputError(f"case {case}: {len(images)} images for {len(self.channels)} channels "
                             f"({', '.join(self.channels)})")
        for name, image in zip(self.channels[1:], images[1:]):
            if not image.same_grid(images[0]):
                raise InputError(f"case {case}: channel {name} is not on the grid of channel {self.channels[0]}")
        if label is None and not test:
            raise InputError(f"training case {case} needs a label")
        if label is not None and not label.same_grid(images[0]):
            raise InputError(f"case {case}: the label is not on the grid of its images")
        paths, label_path = self._paths(case, test)
        for image, path in zip(images, paths):
            write_image(image, path)
        if label is not None:
            write_image(label, label_path)
        self._record(case, patient, test, prompts)

    def add_files(self, case: str, images: Sequence[Path], label: Optional[Path], patient: Optional[str] = None,
                  test: bool = False, prompts: Optional[Sequence] = None) -> None:
        """Copy one case's NIfTI (``.nii.gz``) files byte for byte; the grids are checked by
        :meth:`lesionseg.data.Dataset.check` (``lesionseg data check``)."""
        if len(images) != len(self.channels):
            raise InputError(f"case {case}: {len(images)} files for {len(self.channels)} channels")
        paths, label_path = self._paths(case, test)
        for source in list(images) + ([label] if label is not None else []):
            if not str(source).lower().endswith(ENDING):
                raise InputError(f"{source} is not a {ENDING} file; read it and use add()")
        if label is None and not test:
            raise InputError(f"training case {case} needs a label")
        for source, path in zip(images, paths):
            shutil.copyfile(source, path)
        if label is not None:
            shutil.copyfile(label, label_path)
        self._record(case, patient, test, prompts)

    def set_splits(self, splits: Sequence[Mapping[str, Sequence[str]]]) -> None:
        """Folds to write as ``splits.json``: ``[{"train": [...], "val": [...]}, ...]``."""
        self.splits = [{"train": sorted(s.get("train", [])), "val": sorted(s["val"])} for s in splits]
