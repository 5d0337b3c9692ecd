"""Medical Segmentation Decathlon task folders (``msd``), converted to the nnU-Net v2 raw layout.

An MSD task holds ``dataset.json`` (``"modality": {"0": "CT"}``, ``"labels": {"0": "background", "1":
"pancreas", "2": "cancer"}``, ``"training": [{"image": "./imagesTr/pancreas_001.nii.gz", "label":
"./labelsTr/pancreas_001.nii.gz"}]``, ``"test": ["./imagesTs/pancreas_002.nii.gz"]``) and one image file per
case, 4D for multi-modal tasks (BraTS, prostate). The archives also carry macOS ``._*`` files, which are
skipped. This is what nnU-Net's ``nnUNetv2_convert_MSD_dataset`` does, without renumbering the dataset.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from ...errors import InputError
from ...progress import ProgressCallback
from ._common import not_recognised, provenance, read_header, register, require_same_grid, writer

log = logging.getLogger(__name__)
ENDING = ".nii.gz"
MSD_EXPECTED = ("a Medical Segmentation Decathlon task folder: dataset.json with 'modality', 'labels' and "
                "'training' ([{\"image\": \"./imagesTr/<case>.nii.gz\", \"label\": \"./labelsTr/<case>.nii.gz\"}]) "
                "beside imagesTr/ and labelsTr/")
MSD_REFERENCE = ("Antonelli M, Reinke A, Bakas S, et al. The Medical Segmentation Decathlon. Nat Commun "
                 "2022;13:4128, doi:10.1038/s41467-022-30695-9; Simpson AL et al. arXiv:1902.09063 (2019)")


def read_msd_json(source: Path) -> dict:
    """The task's ``dataset.json``; the one "not recognised" error when it is absent or not an MSD one."""
    path = source / "dataset.json"
    if not path.is_file():
        raise not_recognised("msd", source, MSD_EXPECTED, " (it has no dataset.json)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict) or not all(k in meta for k in ("modality", "labels", "training")):
        hint = ("; it has 'channel_names': it is an nnU-Net v2 dataset, use 'lesionseg data import nnunet'"
                if isinstance(meta, dict) and "channel_names" in meta else " (its dataset.json lacks them)")
        raise not_recognised("msd", source, MSD_EXPECTED, hint)
    return meta


def _numbered(mapping: object, what: str, path: Path) -> list[tuple[int, str]]:
    """``{"0": name, ...}`` as ``[(0, name), ...]`` sorted by number."""
    if not isinstance(mapping, dict) or not mapping:
        raise InputError(f"{path}: '{what}' must map numbers to names, e.g. {{\"0\": \"CT\"}}")
    try:
        return sorted((int(k), str(v)) for k, v in mapping.items())
    except ValueError:
        raise InputError(f"{path}: the keys of '{what}' must be numbers, got {list(mapping)}") from None


def _entry(source: Path, entry: object, key: str) -> Optional[Path]:
    """The file a ``training`` / ``test`` entry names (None for a macOS ``._`` file); InputError when absent."""
    text = entry.get(key) if isinstance(entry, dict) else entry
    if not isinstance(text, str) or not text:
        raise InputError(f"{source / 'dataset.json'}: an entry lacks its '{key}' path: {entry!r}")
    path = source / text
    if path.name.startswith("._"):
        return None
    if not path.is_file():
        raise InputError(f"{source / 'dataset.json'} names {text}, which does not exist")
    if not path.name.endswith(ENDING):
        raise InputError(f"{path} is not a {ENDING} file (the MSD ships NIfTI)")
    return path


def _channels(image: Path, count: int, case: str):
    """The channels of a 4D file as :class:`~lesionseg.image.Image` (volume ``t`` of the 4th axis is channel
    ``t``), each on the 3D grid of the file's first three axes."""
    import SimpleITK as sitk

    from ...io import from_sitk

    try:
        volume = sitk.ReadImage(str(image))
    except RuntimeError:
        raise InputError(f"cannot read {image}: not a readable NIfTI image") from None
    size = list(volume.GetSize())
    if size[3] != count:
        raise InputError(f"case {case}: {image.name} holds {size[3]} volumes along its 4th axis but dataset.json "
                         f"names {count} modalities")
    images = []
    for t in range(count):
        part = sitk.Extract(volume, size[:3] + [0], [0, 0, 0, t])
        images.append(from_sitk(part))
    for channel in images:
        channel.check_finite()
    return images


@register("msd", "Medical Segmentation Decathlon task folder (dataset.json + imagesTr/labelsTr, 4D multi-modal) "
                 "-> nnU-Net v2 layout")
def import_msd(source: Path, output: Path, overwrite: bool = False,
               progress: Optional[ProgressCallback] = None) -> Path:
    """Import an MSD task: channel names from ``"modality"`` in index order, labels inverted to ``{name:
    value}`` (value 0 is called ``background``), cases named after their image file (``pancreas_001``), each
    its own patient (the MSD gives no patient ids). 3D cases are copied byte for byte (image -> ``<case>_0000``,
    label) after a header-only grid check; 4D images are split along the 4th axis into ``<case>_0000``,
    ``<case>_0001``, ... (read with SimpleITK); ``"test"`` images go to ``imagesTs`` without label."""
    from ...io import read_image

    meta_in = read_msd_json(source)
    json_path = source / "dataset.json"
    channels = [name for _, name in _numbered(meta_in["modality"], "modality", json_path)]
    labels: dict[str, int] = {}
    for value, name in _numbered(meta_in["labels"], "labels", json_path):
        name = "background" if value == 0 else name
        if name in labels:
            raise InputError(f"{json_path}: two labels are called {name!r}")
        labels[name] = value
    training = meta_in.get("training") or []
    test = meta_in.get("test") or []
    if not isinstance(training, list) or not isinstance(test, list):
        raise InputError(f"{json_path}: 'training' and 'test' must be lists")
    cases = []
    for entry in training:
        image = _entry(source, entry, "image")
        if image is not None:
            cases.append((image, _entry(source, entry, "label"), False))
    for entry in test:
        image = _entry(source, entry, "image")
        if image is not None:
            cases.append((image, None, True))
    if not any(not is_test for _, _, is_test in cases):
        raise InputError(f"{json_path} lists no training case")
    meta = provenance(source, str(meta_in.get("name") or source.name), str(meta_in.get("description") or ""),
                      "; ".join(filter(None, [str(meta_in.get("reference") or ""), MSD_REFERENCE])),
                      str(meta_in.get("licence") or meta_in.get("license") or "see the MSD task's dataset.json"),
                      importer="msd", msd_release=meta_in.get("release"))
    with writer("msd", source, output, channels, labels, meta, overwrite, progress, len(cases)) as ds:
        for image, label, is_test in cases:
            case = image.name[: -len(ENDING)]
            header = read_header(image)
            if header.dim == 3:
                if len(channels) != 1:
                    raise InputError(f"case {case}: {image.name} is 3D but dataset.json names {len(channels)} "
                                     "modalities (a 4D image was expected)")
                if label is not None:
                    require_same_grid(case, header, read_header(label))
                ds.add_files(case, [image], label, test=is_test)
            elif header.dim == 4:
                images = _channels(image, len(channels), case)
                ds.add(case, images, read_image(label) if label is not None else None, test=is_test)
            else:
                raise InputError(f"case {case}: {image.name} is {header.dim}D; expected 3D or 4D")
    return Path(output)
