"""A folder already in the nnU-Net v2 raw layout (``nnunet``): checked and copied, never modified.

``lesionseg train --data`` also accepts such a folder directly, without importing; importing makes a checked,
marked copy (``.nii.gz`` files byte for byte) with the source path recorded in ``dataset.json``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from ...errors import InputError
from ...progress import ProgressCallback
from ..dataset import PROMPTS_JSON, Dataset
from ._common import not_recognised, register, writer

log = logging.getLogger(__name__)
ENDING = ".nii.gz"
NNUNET_EXPECTED = ("an nnU-Net v2 raw dataset folder: dataset.json with 'channel_names' and 'labels', "
                   "imagesTr/<case>_XXXX.nii.gz and labelsTr/<case>.nii.gz")
DERIVED = ("channel_names", "modality", "labels", "numTraining", "numTest", "file_ending", "patients", "training",
           "test", "tensorImageSize")
"""``dataset.json`` fields the writer recomputes (or nnU-Net v1 fields that would be stale in the copy)."""


@register("nnunet", "a folder already in nnU-Net v2 raw layout -> a checked copy (train --data also reads it as is)",
          {"check": (bool, False, "read every case first: channels and label on one grid, label values known")})
def import_nnunet(source: Path, output: Path, overwrite: bool = False,
                  progress: Optional[ProgressCallback] = None, check: bool = False) -> Path:
    """Copy an nnU-Net v2 raw dataset: every training and test case (with ``labelsTs`` labels where present),
    patients, ``splits.json``, ``prompts.json`` and the other ``dataset.json`` fields; ``source`` is set to the
    source path and ``synthetic`` kept (false when absent). Files ending in ``.nii.gz`` are copied byte for byte;
    other endings (``.nrrd``, ``.mha``, ``.nii``) are read and written as ``.nii.gz``. The folder is checked
    with :class:`lesionseg.data.Dataset` (files and names) and, with ``check``, :meth:`~lesionseg.data.Dataset.check`
    (reading every case). ``lesionseg train --data`` also accepts such a folder directly without importing.
    """
    from ...io import read_image

    path = source / "dataset.json"
    if not path.is_file():
        raise not_recognised("nnunet", source, NNUNET_EXPECTED)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if isinstance(raw, dict) and "channel_names" not in raw and "training" in raw:
        raise not_recognised("nnunet", source, NNUNET_EXPECTED,
                             "; its dataset.json lists 'training' cases as a Medical Segmentation Decathlon task "
                             "does: use 'lesionseg data import msd'")
    dataset = Dataset(source)
    cases = dataset.cases("all")
    if check:
        dataset.check(cases, read=True)
    splits = dataset.splits()
    prompts: dict = {}
    if (source / PROMPTS_JSON).is_file():
        try:
            prompts = json.loads((source / PROMPTS_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {source / PROMPTS_JSON}: {exc}") from None
    meta = {k: v for k, v in dataset.meta.items() if k not in DERIVED}
    if dataset.file_ending != ENDING:
        meta.pop("overwrite_image_reader_writer", None)
    meta.setdefault("name", source.name)
    meta.setdefault("description", f"nnU-Net v2 raw dataset imported from {source.name}")
    for key in ("reference", "licence"):
        meta.setdefault(key, "not stated by the source dataset.json")
    meta.setdefault("synthetic", False)
    meta.update(source=str(source.resolve()), importer="nnunet")
    labels = {("background" if value == 0 else name): value for name, value in dataset.labels.items()}
    training = sum(not c.test for c in cases)
    with writer("nnunet", source, output, dataset.channel_names, labels, meta, overwrite, progress,
                len(cases), test_only=training == 0) as ds:
        for case in cases:
            files = list(case.images) + ([case.label] if case.label is not None else [])
            extra = dict(patient=case.patient, test=case.test, prompts=prompts.get(case.name))
            if all(str(f).endswith(ENDING) for f in files):
                ds.add_files(case.name, list(case.images), case.label, **extra)
            else:
                label = read_image(case.label) if case.label is not None else None
                ds.add(case.name, [read_image(p) for p in case.images], label, **extra)
        if splits is not None:
            ds.set_splits(splits)
    log.info("copied %d training and %d test cases of %s", training, len(cases) - training, source)
    return Path(output)
