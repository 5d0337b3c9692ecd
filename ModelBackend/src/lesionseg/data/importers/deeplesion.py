"""DeepLesion importers: the official NIH release (``deeplesion``: ``DL_info.csv`` + 16-bit PNG slices, RECIST
axes only) and the MedSAM2 3D sub-volumes (``deeplesion-3d``: CT windowed to uint8 with a 3D lesion mask).

DeepLesion gives no patient position: a volume's origin is 0 and its direction the identity, so distances and
the RECIST prompts are physical (mm, from ``Spacing_mm_px_``) but positions are relative to the first voxel.
Patients are named ``DL<Patient_index:06d>`` in both importers (as recist-coseg's model cards name held-out
patients), so one patient's cases stay together.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...errors import InputError
from ...image import Image
from ...progress import ProgressCallback
from ._common import not_recognised, pick, positive, provenance, read_header, register, require_same_grid, writer

log = logging.getLogger(__name__)

DEEPLESION_REFERENCE = ("Yan K, Wang X, Lu L, Summers RM. DeepLesion: automated mining of large-scale lesion "
                        "annotations and universal lesion detection with deep learning. J Med Imaging "
                        "2018;5(3):036501, doi:10.1117/1.JMI.5.3.036501")
DEEPLESION_LICENCE = "DeepLesion terms of use (NIH Clinical Center public release; cite Yan et al. 2018)"
LESION_TYPES = {1: "bone", 2: "abdomen", 3: "mediastinum", 4: "liver", 5: "lung", 6: "kidney", 7: "soft tissue",
                8: "pelvis", -1: "unknown"}
"""``Coarse_lesion_type`` of ``DL_info.csv`` -> name."""
OFFICIAL_SPLIT = {1: "train", 2: "val", 3: "test"}
"""``Train_Val_Test`` of ``DL_info.csv`` -> name."""
HU_OFFSET = 32768
"""DeepLesion PNGs hold ``HU + 32768`` as uint16."""
COLUMNS = ("File_name", "Patient_index", "Key_slice_index", "Measurement_coordinates", "Coarse_lesion_type",
           "Slice_range", "Spacing_mm_px_", "Train_Val_Test")
DL_EXPECTED = ("the DeepLesion release: SRC/DL_info.csv and SRC/Images_png/<patient>_<study>_<series>/<slice>.png "
               "(16-bit PNG, HU + 32768)")

UINT8_WINDOW_HU = (-175.0, 275.0)
"""The window the MedSAM2 sub-volumes map linearly to 0..255."""
WIN_SUFFIX, MASK_SUFFIX = "_img_uint8win.nii.gz", "_lesion_mask.nii.gz"
DL3D_EXPECTED = "SRC/<name>_img_uint8win.nii.gz with SRC/<name>_lesion_mask.nii.gz (the MedSAM2 DeepLesion sub-volumes)"


def _numbers(text: str, count: int, column: str, row: int) -> list[float]:
    try:
        values = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if len(values) != count:
        raise InputError(f"DL_info.csv row {row}: {column} must hold {count} numbers, got {text!r}")
    return values


def _type_names(types: Optional[Sequence[str]]) -> Optional[set[str]]:
    """The lesion type names of ``--types`` (``soft_tissue`` / ``soft-tissue`` = ``soft tissue``)."""
    if not types:
        return None
    wanted = {str(t).strip().lower().replace("_", " ").replace("-", " ") for t in types}
    unknown = sorted(wanted - set(LESION_TYPES.values()))
    if unknown:
        raise InputError(f"--types: unknown lesion type {', '.join(unknown)}; DeepLesion's types: "
                         f"{', '.join(LESION_TYPES[k] for k in sorted(LESION_TYPES, key=lambda k: (k < 0, k)))}")
    return wanted


def _rows(source: Path) -> list[dict]:
    path = source / "DL_info.csv"
    if not path.is_file() or not (source / "Images_png").is_dir():
        raise not_recognised("deeplesion", source, DL_EXPECTED)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path} lacks the column(s) {', '.join(missing)} (expected {DL_EXPECTED})")
        return list(reader)


def _slices(folder: Path, key: int, lo: int, hi: int) -> list[int]:
    """The contiguous run of slice numbers ``lo..hi`` around ``key`` whose PNGs exist in ``folder``."""
    first = key
    while first - 1 >= lo and (folder / f"{first - 1:03d}.png").is_file():
        first -= 1
    last = key
    while last + 1 <= hi and (folder / f"{last + 1:03d}.png").is_file():
        last += 1
    return list(range(first, last + 1))


def read_png_hu(path: Path) -> np.ndarray:
    """One DeepLesion slice as int16 HU ``(J, I)``: the 16-bit PNG value minus :data:`HU_OFFSET`."""
    import cv2

    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise InputError(f"cannot read {path} as a PNG")
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise InputError(f"{path} is not a 16-bit grey PNG ({pixels.dtype}, shape {pixels.shape}); DeepLesion "
                         "slices hold HU + 32768")
    return (pixels.astype(np.int32) - HU_OFFSET).astype(np.int16)


def _lesion_case(row: dict, number: int, name: str, key: int, folder: Path, slices: int, volumes: dict):
    """The ``(Image, RecistLine)`` of one ``DL_info.csv`` row (see :func:`import_deeplesion`); ``volumes`` keeps
    the last volume read, which the next lesion on the same slices shares."""
    from ...prompts import RecistLine

    spacing = _numbers(row["Spacing_mm_px_"], 3, "Spacing_mm_px_", number)
    coords = np.array(_numbers(row["Measurement_coordinates"], 8, "Measurement_coordinates", number))
    if slices:
        lo, hi = key - slices, key + slices
    elif row["Slice_range"].strip():
        lo, hi = (int(v) for v in _numbers(row["Slice_range"], 2, "Slice_range", number))
    else:
        lo, hi = key - 1, key + 1
    run = tuple(_slices(folder, key, min(lo, key), max(hi, key)))
    if (folder, run) not in volumes:
        planes = [read_png_hu(folder / f"{s:03d}.png") for s in run]
        if len({p.shape for p in planes}) != 1:
            raise InputError(f"the slices {run[0]}..{run[-1]} of {folder} differ in size")
        volumes.clear()
        volumes[(folder, run)] = np.stack(planes)
    k = run.index(key)
    ends = [np.array([x * spacing[0], y * spacing[1], k * spacing[2]]) for x, y in coords.reshape(4, 2)]
    short = ends[2:] if np.linalg.norm(ends[3] - ends[2]) > 1e-6 else [None, None]
    try:
        prompt = RecistLine(ends[0], ends[1], *short)
    except InputError as exc:
        raise InputError(f"DL_info.csv row {number} ({name}): {exc}") from None
    return Image(volumes[(folder, run)], spacing), prompt


@register("deeplesion", "DeepLesion release (DL_info.csv + Images_png) -> CT test cases with RECIST prompts",
          {"types": (list, None, "import only these lesion types (bone, abdomen, mediastinum, liver, lung, kidney, "
                                 "soft_tissue, pelvis, unknown)"),
           "limit": (int, 0, "import only the first N lesions (DL_info.csv order); 0: all"),
           "slices": (int, 0, "slices on each side of the key slice; 0: the release's Slice_range")})
def import_deeplesion(source: Path, output: Path, overwrite: bool = False,
                      progress: Optional[ProgressCallback] = None, types: Optional[Sequence[str]] = None,
                      limit: int = 0, slices: int = 0) -> Path:
    """Import each lesion of ``DL_info.csv`` as one test case (``imagesTs``, no label: DeepLesion has no masks).

    The case is a CT volume (int16 HU = PNG - 32768, channel ``("CT",)``) of the key slice and its neighbours:
    the contiguous PNGs of ``Slice_range`` around the key slice (key +- ``slices`` when ``slices`` > 0, key +- 1
    when the row has no Slice_range), spacing ``Spacing_mm_px_`` (x, y, z mm), origin 0, identity direction.
    Its RECIST long and short axes (``Measurement_coordinates``: pixel x = column i, y = row j of the key slice)
    go to ``prompts.json`` as a :class:`lesionseg.prompts.RecistLine` in LPS mm of that volume:
    ``(x * sx, y * sy, k_key * sz)``. Case ``<File_name stem>_<n>`` (n: the lesion's number on its key slice in
    csv order, counted before any filter), patient ``DL<Patient_index:06d>``. ``dataset.json`` records
    ``lesion_types`` {case: type name}, ``official_split`` {case: train|val|test} and ``possibly_noisy``
    [cases]. Lesions whose key-slice PNG is absent (a partial download) are skipped with a warning.
    """
    wanted = _type_names(types)
    if isinstance(slices, bool) or int(slices) < 0:
        raise InputError(f"--slices must be a whole number >= 0, got {slices!r}")
    rows = _rows(source)
    lesions, counts, absent = [], {}, 0
    for number, row in enumerate(rows, start=2):
        stem = row["File_name"].strip()
        stem = stem[:-4] if stem.lower().endswith(".png") else stem
        counts[stem] = counts.get(stem, 0) + 1
        try:
            kind = LESION_TYPES.get(int(float(row["Coarse_lesion_type"])), "unknown")
            key, patient = int(float(row["Key_slice_index"])), int(float(row["Patient_index"]))
            split = OFFICIAL_SPLIT.get(int(float(row["Train_Val_Test"] or 0)), "unknown")
        except ValueError:
            raise InputError(f"DL_info.csv row {number}: Coarse_lesion_type, Key_slice_index, Patient_index and "
                             "Train_Val_Test must be numbers") from None
        if wanted is not None and kind not in wanted:
            continue
        folder = source / "Images_png" / stem.rsplit("_", 1)[0]
        if not (folder / f"{key:03d}.png").is_file():
            absent += 1
            continue
        lesions.append((f"{stem}_{counts[stem]}", f"DL{patient:06d}", kind, split, key, folder, row, number))
    if absent:
        log.warning("skipped %d lesion(s) whose key-slice PNG is not under %s", absent, source / "Images_png")
    if not lesions:
        of_types = f" of type {', '.join(sorted(wanted))}" if wanted else ""
        raise InputError(f"no lesion{of_types} in {source / 'DL_info.csv'} has its key-slice PNG under "
                         f"{source / 'Images_png'}")
    keep = set(pick([les[0] for les in lesions], None, limit, "lesion", source))
    lesions = [les for les in lesions if les[0] in keep]
    meta = provenance(source, "DeepLesion (RECIST)",
                      "DeepLesion CT key slices with their neighbouring slices. The RECIST long and short axes in "
                      "prompts.json are the only annotation (no masks): every case is a test case (imagesTs) "
                      "without label; the recist-coseg method makes GrabCut weak labels from the axes (weak "
                      "supervision). DeepLesion gives no patient position: origin 0, identity direction.",
                      DEEPLESION_REFERENCE, DEEPLESION_LICENCE, importer="deeplesion",
                      lesion_types={}, official_split={}, possibly_noisy=[])
    volumes: dict = {}
    with writer("deeplesion", source, output, ("CT",), {"background": 0, "lesion": 1}, meta, overwrite,
                progress, len(lesions), test_only=True) as ds:
        for name, patient, kind, split, key, folder, row, number in lesions:
            image, prompt = _lesion_case(row, number, name, key, folder, slices, volumes)
            ds.add(name, [image], None, patient=patient, test=True, prompts=[prompt])
            ds.meta["lesion_types"][name] = kind
            ds.meta["official_split"][name] = split
            if str(row.get("Possibly_noisy", "0")).strip() not in ("", "0"):
                ds.meta["possibly_noisy"].append(name)
    return Path(output)


def _medsam_cases(source: Path) -> list[tuple[str, Path, Path, str]]:
    """``(case, image, mask, patient)`` of the sub-volumes in ``source``, sorted by case name."""
    cases = []
    for image in sorted(source.glob(f"*{WIN_SUFFIX}")) if source.is_dir() else []:
        if image.name.startswith("."):
            continue
        name = image.name[: -len(WIN_SUFFIX)]
        mask = source / f"{name}{MASK_SUFFIX}"
        if not mask.is_file():
            raise InputError(f"{image.name} has no mask {mask.name} in {source}")
        match = re.search(r"Lesion_(\d+)_", image.name)
        cases.append((name, image, mask, "DL" + (match.group(1) if match else name)))
    if not cases:
        raise not_recognised("deeplesion-3d", source, DL3D_EXPECTED)
    return cases


def window_to_hu(pixels: np.ndarray) -> np.ndarray:
    """uint8 window values -> HU, float32: ``-175 + v * 450 / 255``, the very arithmetic of recist-coseg's reader
    before the dataset convention (so its shipped model sees the same values)."""
    arr = np.asarray(pixels).astype(np.float32)
    lo, hi = UINT8_WINDOW_HU
    return lo + arr * (hi - lo) / 255.0


@register("deeplesion-3d", "DeepLesion 3D sub-volumes of MedSAM2 (<name>_img_uint8win + <name>_lesion_mask) -> "
                           "CT dataset in HU",
          {"names": (list, None, "import only these cases (e.g. CT_Lesion_000002_03_01_035-047)"),
           "limit": (int, 0, "import only the first N cases (sorted by name); 0: all")})
def import_deeplesion_3d(source: Path, output: Path, overwrite: bool = False,
                         progress: Optional[ProgressCallback] = None, names: Optional[Sequence[str]] = None,
                         limit: int = 0) -> Path:
    """Import ``<name>_img_uint8win.nii.gz`` + ``<name>_lesion_mask.nii.gz``: channel ``("CT",)`` converted back
    to HU by :func:`window_to_hu` and written as float32 (the 256 window levels are not whole HU: int16 would
    shift them by up to 0.5 HU), labels ``{"background": 0, "lesion": 1}`` (``mask > 0``), case ``<name>``,
    patient ``DL`` + the DeepLesion patient number of the name. Geometry is kept as the files give it."""
    from ...io import read_image

    cases = _medsam_cases(source)
    keep = set(pick([c[0] for c in cases], names, limit, "case", source))
    meta = provenance(source, "DeepLesion 3D lesion sub-volumes (MedSAM2)",
                      f"DeepLesion CT sub-volumes with 3D lesion masks from the MedSAM2 RECIST-to-3D training data; "
                      f"the CT was windowed to uint8 over {list(UINT8_WINDOW_HU)} HU and is converted back to HU "
                      "here (values outside the window were clipped by the source). DeepLesion gives no patient "
                      "position.", f"{DEEPLESION_REFERENCE}; Ma J et al. MedSAM2, arXiv:2504.03600",
                      f"{DEEPLESION_LICENCE}; MedSAM2 repository Apache-2.0", importer="deeplesion-3d",
                      hu_window=list(UINT8_WINDOW_HU))
    with writer("deeplesion-3d", source, output, ("CT",), {"background": 0, "lesion": 1}, meta, overwrite,
                progress, len(keep)) as ds:
        for name, image_path, mask_path, patient in cases:
            if name not in keep:
                continue
            require_same_grid(name, read_header(image_path), read_header(mask_path))
            image = read_image(image_path)
            ct = image.with_array(window_to_hu(image.array))
            ds.add(name, [ct], positive(read_image(mask_path)), patient=patient)
    return Path(output)
