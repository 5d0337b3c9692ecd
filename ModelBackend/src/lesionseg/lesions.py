"""One lesion table for every method: one row per connected lesion of a label image, written and read as one format.

:func:`lesion_table` takes a label image, the image whose intensities it describes (the CT in HU, or the PET
itself) and, for PET/CT, the PET in SUV -- all :class:`~lesionseg.image.Image` on ONE grid -- and returns
JSON-ready rows, keys in this order:

- ``id``: 1 for the largest lesion, then by decreasing voxel count (ties in array scan order); :func:`lesion_ids`
  numbers a label image the same way (the Slicer panels and autoPET's MIP picture rely on it).
- ``voxels``; ``volume_ml`` (voxels x voxel volume, mL; the metabolic tumour volume MTV for a PET label).
- ``mean``: mean of ``image`` over the lesion's voxels, in the image's units (HU for a CT).
- ``centroid_lps``: ``[x, y, z]`` LPS mm, the unweighted mean of the lesion's voxel centres;
  ``bbox_ijk``: ``[[i0, j0, k0], [i1, j1, k1]]`` inclusive voxel index range.
- only with ``pet``: ``suv_max``, ``suv_mean`` over the lesion's voxels; ``suv_peak``: mean SUV of *all* voxels
  (lesion or not) whose centres lie within the radius of a 1 mL sphere (6.20 mm) of the centre of the lesion's
  hottest voxel (on ties the last in scan order: the common simplification of PERCIST's SUVpeak);
  ``tlg_ml``: total lesion glycolysis = ``suv_mean x volume_ml`` (SUVbw x mL).

Values are not rounded (these computations reproduce the IBSI reference SUVmax / SUVmean / MTV / TLG). Components
come from :func:`lesionseg.metrics.lesion_components` (6, 18 or 26 neighbours; 18 by default, the autoPET
evaluation's choice); statistics from ``numpy.bincount`` and ``scipy.ndimage`` over the labelled voxels only, so
a whole-body table costs little more than its lesions.

Files (:func:`write_lesion_table`, atomic; :func:`read_lesion_table`):

- ``.json``: ``{"method": str, "image": str, "units": {field: unit}, "lesions": [rows]}``.
- ``.csv``: one line per lesion under a header naming the units (:func:`csv_columns`): ``id, voxels, volume_ml,
  mean_hu`` (``mean_suv`` for a PET image, else ``mean``), ``centroid_x_mm, centroid_y_mm, centroid_z_mm`` (LPS),
  ``bbox_i0, bbox_j0, bbox_k0, bbox_i1, bbox_j1, bbox_k1``, then ``suv_max, suv_mean, suv_peak, tlg_ml``.

The reader also takes the two formats this replaced, so old outputs still load: autoPET's (``tlg``, ``box_ijk``,
``centroid_l_mm/_p_mm/_s_mm``, also ``centroid_x/_y/_z`` and ``centroid_lps`` as ``"x;y;z"``) and small-lesion's
(``volume_mm3``, ``mean_hu``, ``centroid_x_mm/...``). No torch here.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage

from .errors import InputError, LesionSegWarning
from .geometry import index_to_world
from .image import Image
from .io import atomic_write_bytes_via
from .metrics import lesion_components
from .outputs import check_output_file

PEAK_RADIUS_MM = float((3.0 / (4.0 * np.pi) * 1000.0) ** (1.0 / 3.0))
"""Radius (mm) of a 1 mL sphere, for SUVpeak."""

SUV_UNITS = "SUVbw (g/mL)"
FIELDS = ("id", "voxels", "volume_ml", "mean", "centroid_lps", "bbox_ijk", "suv_max", "suv_mean", "suv_peak",
          "tlg_ml")
"""The fields of a row, in order (``suv_*`` and ``tlg_ml`` only for PET)."""
UNITS = {"volume_ml": "mL", "centroid_lps": "LPS mm", "bbox_ijk": "voxel index (i, j, k), inclusive",
         "suv_max": SUV_UNITS, "suv_mean": SUV_UNITS, "suv_peak": SUV_UNITS, "tlg_ml": "SUVbw x mL"}
"""Units of the fields (``mean`` has the units of the image it was taken from)."""
TABLE_SUFFIXES = (".csv", ".json")

_CENTROID = ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm")
_BBOX = ("bbox_i0", "bbox_j0", "bbox_k0", "bbox_i1", "bbox_j1", "bbox_k1")
_OLD_CENTROIDS = (_CENTROID, ("centroid_l_mm", "centroid_p_mm", "centroid_s_mm"),
                  ("centroid_x", "centroid_y", "centroid_z"))
_OLD_BBOX = ("box_i0", "box_j0", "box_k0", "box_i1", "box_j1", "box_k1")
_MEAN_COLUMNS = {"mean_hu": "HU", "mean_suv": SUV_UNITS, "mean": ""}
_ALIASES = {"volume_ml": ("volume_ml", "volume_mm3"), "mean": tuple(_MEAN_COLUMNS), "tlg_ml": ("tlg_ml", "tlg"),
            "bbox_ijk": ("bbox_ijk", "box_ijk")}
"""Keys a field may have in a file: this format's first, then those of the formats it replaced."""


def _check_images(label: Any, image: Any, what: str) -> None:
    if not isinstance(label, Image) or not isinstance(image, Image):
        raise InputError(f"the lesion table takes lesionseg Image objects (label, {what})")
    if not label.same_grid(image):
        raise InputError(f"the label {label!r} and the {what} {image!r} are not on the same grid; resample the label "
                         f"onto the {what}'s grid first (lesionseg.resample.resample_to_grid(label, image, 'nearest'))")
    if not (np.issubdtype(label.array.dtype, np.number) or label.array.dtype == np.bool_):
        raise InputError(f"the label must be a numeric image, got {label.array.dtype}")
    if not np.issubdtype(image.array.dtype, np.number):
        raise InputError(f"the {what} must be numeric, got {image.array.dtype}")
    image.check_finite()


def check_label_and_suv(label: Optional[Image], suv: Image) -> None:
    """:class:`InputError` unless ``suv`` is a finite numeric image in SUV and ``label`` (when given) a numeric
    image on its grid; warns (:class:`LesionSegWarning`) when the values do not look like SUV."""
    _check_images(suv if label is None else label, suv, "SUV image")
    units = str(suv.meta.get("units", "SUV")).upper()
    if not units.startswith("SUV"):
        raise InputError(f"the PET image is in {units}, not SUV; convert it to SUV first (lesionseg suv)")
    if float(suv.array.min()) < -100.0 or float(suv.array.max()) > 1000.0:
        warnings.warn(f"PET values {float(suv.array.min()):.1f}..{float(suv.array.max()):.1f} do not look like SUV "
                      "(CT in HU, or PET in Bq/mL?)", LesionSegWarning, stacklevel=3)


def lesion_ids(label: Image, connectivity: int = 18, label_value: Optional[int] = None) -> tuple[Image, int]:
    """Connected lesions of ``label`` numbered as in :func:`lesion_table`: an int32 image on the grid of ``label``
    (0 background, ``1..n`` by decreasing voxel count, ties in scan order) and ``n``. Lesion voxels are those
    ``> 0``, or ``== label_value`` when given."""
    if not isinstance(label, Image):
        raise InputError("lesion_ids takes a lesionseg Image")
    if label_value is not None:
        label = label.with_array((label.array == label_value).astype(np.uint8))
    components, n = lesion_components(label, connectivity)
    counts = np.bincount(components.array.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-counts, kind="stable")  # component numbers - 1, largest first
    rank = np.zeros(n + 1, np.int32)
    rank[order + 1] = np.arange(1, n + 1, dtype=np.int32)
    return label.with_array(rank[components.array]), n


def _peak_offsets(image: Image) -> np.ndarray:
    """``(M, 3)`` ``(dk, dj, di)`` voxel offsets whose centres lie within :data:`PEAK_RADIUS_MM` (any direction)."""
    reach = np.ceil(PEAK_RADIUS_MM / image.spacing).astype(int)  # i, j, k; direction columns are unit vectors
    di, dj, dk = np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij")
    ijk = np.column_stack([di.ravel(), dj.ravel(), dk.ravel()])
    mm = np.linalg.norm(ijk @ (image.direction * image.spacing).T, axis=1)
    return ijk[mm <= PEAK_RADIUS_MM + 1e-9][:, ::-1]


def region_rows(ids: np.ndarray, n: int, image: Image, pet: Optional[Image] = None) -> list[dict]:
    """Rows (:func:`lesion_table`'s fields) of the regions ``1..n`` of the int ``(K, J, I)`` array ``ids``, which lies
    on the grid of ``image`` (and ``pet``). Only the labelled voxels are gathered (a 1D view in scan order)."""
    if n == 0:
        return []
    where = np.flatnonzero(ids)
    labels, kji = ids.ravel()[where], np.column_stack(np.unravel_index(where, ids.shape))

    def per_region(weights: Optional[np.ndarray] = None) -> np.ndarray:
        return np.bincount(labels, weights=weights, minlength=n + 1)[1:]

    counts = per_region()
    means = per_region(image.array.ravel()[where].astype(np.float64)) / counts
    centroids = index_to_world(image, np.column_stack([per_region(kji[:, a]) for a in (2, 1, 0)]) / counts[:, None])
    lo, hi = np.full((n, 3), np.iinfo(np.int64).max), np.full((n, 3), -1)
    np.minimum.at(lo, labels - 1, kji)
    np.maximum.at(hi, labels - 1, kji)
    volumes = counts * image.voxel_volume_ml
    rows = [{"id": number + 1, "voxels": int(counts[number]), "volume_ml": float(volumes[number]),
             "mean": float(means[number]), "centroid_lps": centroids[number].tolist(),
             "bbox_ijk": [lo[number, ::-1].tolist(), hi[number, ::-1].tolist()]} for number in range(n)]
    if pet is not None:
        _add_pet(rows, labels, kji, where, pet)
    return rows


def _add_pet(rows: list[dict], labels: np.ndarray, kji: np.ndarray, where: np.ndarray, pet: Image) -> None:
    """Add ``suv_max``, ``suv_mean``, ``suv_peak`` and ``tlg_ml`` to ``rows`` (regions ``1..n`` in ``labels``)."""
    n = len(rows)
    values, index = pet.array.ravel()[where].astype(np.float64), np.arange(1, n + 1)
    sums = np.bincount(labels, weights=values, minlength=n + 1)[1:]
    maxima = ndimage.maximum(values, labels, index)
    hottest = kji[[position[0] for position in ndimage.maximum_position(values, labels, index)]]
    offsets, shape, full = _peak_offsets(pet), np.array(pet.shape), pet.array
    for number, row in enumerate(rows):
        around = hottest[number] + offsets
        around = around[np.all((around >= 0) & (around < shape), axis=1)]
        mean = float(sums[number] / row["voxels"])
        row.update(suv_max=float(maxima[number]), suv_mean=mean,
                   suv_peak=float(full[around[:, 0], around[:, 1], around[:, 2]].astype(np.float64).mean()),
                   tlg_ml=mean * row["volume_ml"])


def lesion_table(label: Image, image: Image, *, pet: Optional[Image] = None, connectivity: int = 18,
                 label_value: Optional[int] = None) -> list[dict]:
    """One row per connected lesion of ``label`` (see the module docstring for the fields), largest first.

    Args:
        label: lesion label image (voxels > 0 are lesion, or == ``label_value``).
        image: the intensities ``mean`` is taken from (a CT in HU, or the PET), on the grid of ``label``.
        pet: PET in SUV (finite; ``meta["units"]``, when set, must start with "SUV") on the same grid: adds the
            SUV fields.
        connectivity: 6, 18 or 26 neighbours join voxels into one lesion.

    Returns:
        JSON-ready rows sorted by volume, descending; ``[]`` when the label has no lesion voxel.

    Raises:
        InputError: not images, not on one grid (resample first), non-numeric or non-finite, a PET not in SUV,
            or a bad ``connectivity``.
    """
    _check_images(label, image, "image")
    if pet is not None:
        check_label_and_suv(label, pet)
    ids, n = lesion_ids(label, connectivity, label_value)
    return region_rows(ids.array, n, image, pet)


def mean_column(mean_units: str) -> str:
    """CSV column of ``mean``: ``mean_hu`` for HU, ``mean_suv`` for SUV, else ``mean``."""
    units = mean_units.upper()
    return "mean_hu" if units == "HU" else "mean_suv" if units.startswith("SUV") else "mean"


def csv_columns(fields: Sequence[str] = FIELDS, mean_units: str = "HU") -> tuple[str, ...]:
    """The CSV header of rows holding ``fields`` (vectors spread over one column per component)."""
    spread = {"mean": (mean_column(mean_units),), "centroid_lps": _CENTROID, "bbox_ijk": _BBOX}
    return tuple(column for name in fields for column in spread.get(name, (name,)))


def check_table_path(path: Optional[Path], overwrite: bool = False) -> None:
    """Raise before any work unless a lesion table can be written at ``path`` (None: no table): InputError for a
    suffix other than .csv/.json or a missing folder, OutputExistsError for an existing file without
    ``overwrite``."""
    if path is None:
        return
    if Path(path).suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"a lesion table is written as .csv or .json, not {Path(path).name!r}")
    check_output_file(path, overwrite, what="lesion table")


def write_lesion_table(rows: Sequence[Mapping[str, Any]], path: str | Path, *, method: str = "", image: str = "",
                       mean_units: str = "HU", overwrite: bool = False) -> Path:
    """Write ``rows`` (from :func:`lesion_table`) to ``path`` (``.json`` or ``.csv``, see the module docstring),
    atomically (:func:`lesionseg.io.atomic_write_bytes_via`); an existing file is kept unless ``overwrite``.

    Args:
        method: the method that found the lesions; image: the input it segmented (both JSON only).
        mean_units: units of ``mean`` (the CSV column is named after them, :func:`mean_column`).

    Raises:
        InputError: another suffix, a missing folder, or rows that would not read back.
        OutputExistsError: the file exists and ``overwrite`` is false.
    """
    path = Path(path)
    check_table_path(path, overwrite)
    rows = [dict(row) for row in rows]
    present = [name for name in FIELDS if any(name in row for row in rows)] if rows else list(FIELDS)
    present += list(dict.fromkeys(key for row in rows for key in row if key not in FIELDS))
    if path.suffix.lower() == ".json":
        units = {name: UNITS.get(name, mean_units) for name in present if name == "mean" or name in UNITS}
        try:
            text = json.dumps({"method": method, "image": str(image), "units": units, "lesions": rows}, indent=1,
                              allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:  # NaN, infinity, or a value JSON has no type for
            raise InputError(f"the lesion table {path.name} cannot hold these rows: {exc}") from None
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(csv_columns(present, mean_units))
        for row in rows:
            writer.writerow(["" if value is None else value for value in _flat(row, present)])
        text = buffer.getvalue()
    _parse(text, path.suffix.lower(), path.name)  # what is written must read back
    atomic_write_bytes_via(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite)
    return path


def _flat(row: Mapping[str, Any], fields: Sequence[str]) -> list:
    """The CSV cells of ``row`` for ``fields`` (``centroid_lps`` and ``bbox_ijk`` spread; missing: None)."""
    cells: list = []
    for name in fields:
        value = row.get(name)
        if name == "centroid_lps":
            cells += list(value) if value is not None else [None] * 3
        elif name == "bbox_ijk":
            cells += [*value[0], *value[1]] if value is not None else [None] * 6
        else:
            cells.append(value)
    return cells


def read_lesion_table(path: str | Path) -> dict:
    """A lesion table file (``.json`` or ``.csv``; this format or the two it replaced) in this format's layout.

    Returns:
        ``{"method", "image", "units", "lesions": [rows]}``; each row has the fields the file has, renamed to
        :data:`FIELDS` (``volume_mm3`` becomes ``volume_ml``), ints for ``id``, ``voxels`` and ``bbox_ijk``,
        floats for the rest, None for an empty value (other keys are not read). The rows of :func:`lesion_table`
        read back from either file exactly as they were written.

    Raises:
        InputError: no such file, unreadable, a missing column or value (``id``, volume, centroid), a value that
            is not a (finite, whole where needed) number, or ids other than 1..n.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"there is no lesion table at {path}")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"a lesion table is a .csv or .json file, not {path.name!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"the lesion table {path.name} cannot be read: {exc}") from exc
    return _parse(text, path.suffix.lower(), path.name)


def _parse(text: str, suffix: str, name: str) -> dict:
    if suffix == ".csv":
        table = _parse_csv(text, name)
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"the lesion table {name} cannot be read: {exc}") from exc
        records = data.get("lesions") if isinstance(data, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InputError(f"the lesion table {name} has no list of lesions")
        mean = next((key for key in _MEAN_COLUMNS if any(key in r for r in records)), "mean")
        units = data.get("units") if isinstance(data.get("units"), dict) else {}
        table = {"method": str(data.get("method") or ""), "image": str(data.get("image") or ""),
                 "units": {"mean": _MEAN_COLUMNS[mean] or str(units.get("mean", ""))},
                 "lesions": [_row(r, r.get("centroid_lps"), f"lesion {n} of {name}") for n, r in enumerate(records, 1)]}
    ids = [row["id"] for row in table["lesions"]]
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise InputError(f"the lesion table {name} numbers its lesions {ids}, not 1..{len(ids)}")
    present = [key for key in FIELDS if any(key in row for row in table["lesions"])]
    table["units"] = {key: UNITS.get(key, table["units"]["mean"]) for key in present if key == "mean" or key in UNITS}
    return table


def _parse_csv(text: str, name: str) -> dict:
    reader = csv.DictReader(io.StringIO(text))
    columns = list(reader.fieldnames or ())
    centroid = next((names for names in _OLD_CENTROIDS if all(c in columns for c in names)),
                    ("centroid_lps",) if "centroid_lps" in columns else None)
    missing = [what for what, found in (("id", "id" in columns), ("volume_ml", "volume_ml" in columns
               or "volume_mm3" in columns), ("centroid_x_mm/_y_mm/_z_mm", centroid is not None)) if not found]
    if missing:
        raise InputError(f"the lesion table {name} lacks the column(s) {', '.join(missing)}")
    bbox = next((names for names in (_BBOX, _OLD_BBOX) if all(c in columns for c in names)), None)
    rows = []
    for line, record in enumerate(reader, start=2):
        where = f"lesion table {name} line {line}"
        if len(centroid) == 1:  # "x;y;z" (or "[x, y, z]") in one column
            point: Any = [part for part in re.split(r"[;,\s\[\]()]+", record.get("centroid_lps") or "") if part]
        else:
            point = [record.get(c) for c in centroid]
        cells = [record.get(c) for c in bbox or ()]
        box = [cells[:3], cells[3:]] if any((c or "").strip() for c in cells) else None
        rows.append(_row({**record, "bbox_ijk": box}, point if any((c or "").strip() for c in point) else None, where))
    if bbox is None:
        for row in rows:
            row.pop("bbox_ijk", None)
    mean = next((key for key in _MEAN_COLUMNS if key in columns), "mean")
    return {"method": "", "image": "", "units": {"mean": _MEAN_COLUMNS[mean]}, "lesions": rows}


def _number(value: Any, what: str, where: str, whole: bool = False) -> Any:
    """``value`` as a finite float (an int when ``whole``); None for None or an empty cell."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise InputError(f"{where}: {what} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise InputError(f"{where}: {what} is {value!r}, not a finite number")
    if whole:
        if number != int(number) or number < 0 or (what == "id" and number < 1):
            raise InputError(f"{where}: {what} {value!r} is not a {'positive ' if what == 'id' else ''}whole number")
        return int(number)
    return number


def _vector(value: Any, size: int, what: str, where: str, whole: bool = False) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise InputError(f"{where}: {what} {value!r} is not {size} numbers")
    numbers = [_number(v, what, where, whole) for v in value]
    if any(v is None for v in numbers):
        raise InputError(f"{where}: {what} {value!r} is not {size} numbers")
    return numbers


def _row(record: Mapping[str, Any], centroid: Any, where: str) -> dict:
    """One row in this format from a file's record (any of the spellings in the module docstring)."""
    row: dict = {}
    for field in FIELDS:
        key = next((k for k in _ALIASES.get(field, (field,)) if k in record), None)
        if field == "centroid_lps":
            if centroid is None:
                raise InputError(f"{where} has no centroid")
            row[field] = _vector(centroid, 3, "the centroid", where)
        elif key is None:
            if field in ("id", "volume_ml"):
                row[field] = None
        elif field == "bbox_ijk":
            box = record[key]
            row[field] = None if box is None else [_vector(corner, 3, "the bounding box", where, True)
                                                  for corner in (box if isinstance(box, (list, tuple)) else [box])]
            if row[field] is not None and len(row[field]) != 2:
                raise InputError(f"{where}: the bounding box {box!r} is not two corners")
        else:
            row[field] = _number(record[key], key, where, field in ("id", "voxels"))
            if key == "volume_mm3" and row[field] is not None:
                row[field] /= 1000.0
    for field in ("id", "volume_ml"):
        if row[field] is None:
            raise InputError(f"{where}: {field} is missing")
    return row
