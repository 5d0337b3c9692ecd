"""Per-lesion PET quantification: one row per connected lesion of a label image, and one for a whole VOI.

Every function takes a label image and an SUV image **on the same grid** (:class:`~lesionseg.image.Image`,
voxels ``> 0`` of the label are lesion) and returns JSON-ready rows:

- ``id``: 1 for the largest lesion, then by decreasing volume (ties in array scan order); the MIP picture
  (:mod:`.mip`) numbers its outlines with the same ids (:func:`lesion_ids`).
- ``voxels``, ``volume_ml`` (metabolic tumour volume, MTV = voxels x voxel volume), ``suv_max``, ``suv_mean``
  over the lesion's voxels, ``tlg`` (total lesion glycolysis = SUVmean x MTV, in SUV x mL).
- ``suv_peak``: mean SUV of *all* voxels (lesion or not) whose centres lie within the radius of a 1 mL
  sphere (6.20 mm) of the centre of the lesion's hottest voxel (on ties, the last in scan order). This is
  the common simplification of PERCIST's SUVpeak, which would instead search the lesion for the 1 mL sphere
  of highest mean.
- ``centroid_lps``: mean LPS position (mm) of the lesion's voxel centres (unweighted); ``box_ijk``:
  ``[[i0, j0, k0], [i1, j1, k1]]`` inclusive voxel range.

Connected components come from :func:`lesionseg.metrics.lesion_components` (18-connectivity by default, the
autoPET evaluation's choice, so the table counts the lesions that FPV/FNV count); statistics per component
from ``numpy.bincount`` and ``scipy.ndimage`` over the labelled voxels only (a whole-body table takes tens of
ms). :func:`write_table` writes CSV or JSON atomically.
"""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ...errors import InputError, LesionSegWarning
from ...geometry import index_to_world
from ...image import Image
from ...io import atomic_write_bytes_via
from ...metrics import lesion_components

PEAK_RADIUS_MM = float((3.0 / (4.0 * np.pi) * 1000.0) ** (1.0 / 3.0))
"""Radius (mm) of a 1 mL sphere, for SUVpeak."""

COLUMNS = ("id", "voxels", "volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg", "centroid_l_mm",
           "centroid_p_mm", "centroid_s_mm", "box_i0", "box_j0", "box_k0", "box_i1", "box_j1", "box_k1")
"""CSV columns of a lesion table (``centroid_lps`` and ``box_ijk`` flattened)."""

UNITS = {"volume_ml": "mL", "suv_max": "SUVbw (g/mL)", "suv_mean": "SUVbw (g/mL)", "suv_peak": "SUVbw (g/mL)",
         "tlg": "SUVbw x mL", "centroid_lps": "LPS mm", "box_ijk": "voxel index (i, j, k), inclusive"}


def check_label_and_suv(label: Optional[Image], suv: Image) -> None:
    """:class:`InputError` unless ``suv`` is a finite numeric image in SUV and ``label`` (when given) a numeric
    image on its grid; warns (:class:`LesionSegWarning`) when the values do not look like SUV."""
    if not isinstance(suv, Image) or not (label is None or isinstance(label, Image)):
        raise InputError("the lesion table takes lesionseg Image objects (label, SUV)")
    if label is not None and not label.same_grid(suv):
        raise InputError(f"the label {label!r} and the SUV image {suv!r} are not on the same grid; resample the "
                         "label onto the PET grid first (lesionseg.resample.resample_to_grid(label, suv, 'nearest'))")
    if label is not None and not (np.issubdtype(label.array.dtype, np.number) or label.array.dtype == np.bool_):
        raise InputError(f"the label must be a numeric image, got {label.array.dtype}")
    if not np.issubdtype(suv.array.dtype, np.number):
        raise InputError(f"the SUV image must be numeric, got {suv.array.dtype}")
    suv.check_finite()
    units = str(suv.meta.get("units", "SUV")).upper()
    if not units.startswith("SUV"):
        raise InputError(f"the PET image is in {units}, not SUV; convert it to SUV first (lesionseg suv)")
    if float(suv.array.min()) < -100.0 or float(suv.array.max()) > 1000.0:
        warnings.warn(f"PET values {float(suv.array.min()):.1f}..{float(suv.array.max()):.1f} do not look like SUV "
                      "(CT in HU, or PET in Bq/mL?)", LesionSegWarning, stacklevel=3)


def lesion_ids(label: Image, connectivity: int = 18) -> tuple[Image, int]:
    """Connected lesions of ``label`` numbered as in :func:`lesion_table`: an int32 image on the grid of
    ``label`` (0 background, ``1..n`` by decreasing volume, ties in scan order) and ``n``."""
    if not isinstance(label, Image):
        raise InputError("lesion_ids takes a lesionseg Image")
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


def _rows(ids: np.ndarray, n: int, suv: Image) -> list[dict]:
    """Statistics of regions ``1..n`` of the int array ``ids`` (on the grid of ``suv``), one row per region.
    Only the labelled voxels are gathered (a 1D view in scan order), so a whole-body volume costs no more
    than its lesions."""
    if n == 0:
        return []
    where = np.flatnonzero(ids)
    labels, values = ids.ravel()[where], suv.array.ravel()[where].astype(np.float64)
    kji = np.column_stack(np.unravel_index(where, ids.shape))
    index = np.arange(1, n + 1)
    counts = np.bincount(labels, minlength=n + 1)[1:]
    sums = np.bincount(labels, weights=values, minlength=n + 1)[1:]
    maxima = ndimage.maximum(values, labels, index)
    hottest = kji[[position[0] for position in ndimage.maximum_position(values, labels, index)]]
    centroids = np.column_stack([np.bincount(labels, weights=kji[:, a], minlength=n + 1)[1:] for a in range(3)])
    lo, hi = np.full((n, 3), np.iinfo(np.int64).max), np.full((n, 3), -1)
    np.minimum.at(lo, labels - 1, kji)
    np.maximum.at(hi, labels - 1, kji)
    offsets, shape, full = _peak_offsets(suv), np.array(ids.shape), suv.array
    rows = []
    for number in range(n):
        around = hottest[number] + offsets
        around = around[np.all((around >= 0) & (around < shape), axis=1)]
        mean = float(sums[number] / counts[number])
        volume = float(counts[number] * suv.voxel_volume_ml)
        rows.append({
            "id": number + 1, "voxels": int(counts[number]), "volume_ml": volume,
            "suv_max": float(maxima[number]), "suv_mean": mean,
            "suv_peak": float(full[around[:, 0], around[:, 1], around[:, 2]].astype(np.float64).mean()),
            "tlg": mean * volume,
            "centroid_lps": index_to_world(suv, centroids[number, ::-1] / counts[number])[0].tolist(),
            "box_ijk": [lo[number, ::-1].tolist(), hi[number, ::-1].tolist()],
        })
    return rows


def lesion_table(label: Image, suv: Image, connectivity: int = 18) -> list[dict]:
    """One row per connected lesion of ``label`` (see the module docstring for the fields), largest first.

    Args:
        label: lesion label image (voxels > 0 are lesion), on the grid of ``suv``.
        suv: PET in SUV (float, finite); ``meta["units"]``, when set, must start with "SUV".
        connectivity: 6, 18 or 26 neighbours join voxels into one lesion.

    Returns:
        JSON-ready rows sorted by volume, descending; ``[]`` when the label is empty.

    Raises:
        InputError: not images, not on the same grid (resample first), non-numeric or non-finite, PET not in
        SUV, or a bad ``connectivity``.
    """
    check_label_and_suv(label, suv)
    ids, n = lesion_ids(label, connectivity)
    return _rows(ids.array, n, suv)


def mask_summary(label: Image, suv: Image, connectivity: int = 18) -> dict:
    """The whole label as ONE volume of interest (every voxel > 0, however many components): a row as in
    :func:`lesion_table` (``id`` 1) plus ``components``, the number of connected lesions in it. This is
    how IBSI and most PET studies report SUVmax / SUVmean / MTV / TLG of a delineated tumour.

    Raises:
        InputError: as :func:`lesion_table`, or an empty label.
    """
    check_label_and_suv(label, suv)
    voi = (label.array > 0).astype(np.int32)
    if not voi.any():
        raise InputError("the label is empty: no volume of interest to summarise")
    row = _rows(voi, 1, suv)[0]
    row["components"] = lesion_components(label, connectivity)[1]
    return row


def _flat(row: dict) -> dict:
    """A table row with ``centroid_lps`` and ``box_ijk`` spread over scalar CSV columns."""
    out = {key: value for key, value in row.items() if key not in ("centroid_lps", "box_ijk")}
    if "centroid_lps" in row:
        out.update(zip(("centroid_l_mm", "centroid_p_mm", "centroid_s_mm"), row["centroid_lps"]))
    if "box_ijk" in row:
        out.update(zip(COLUMNS[10:], [*row["box_ijk"][0], *row["box_ijk"][1]]))
    return out


def write_table(rows: Sequence[dict], path: str | Path, overwrite: bool = False) -> Path:
    """Write ``rows`` (from :func:`lesion_table`) to ``path``: ``.csv`` (one line per lesion, :data:`COLUMNS`
    first, then any other keys) or ``.json`` (``{"units": ..., "lesions": rows}``). Atomic; an existing file
    is kept unless ``overwrite``.

    Raises:
        InputError: another suffix or a missing folder. OutputExistsError: the file exists.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"lesion table must be written as .csv or .json, not {path.name!r}")
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist")
    if suffix == ".json":
        text = json.dumps({"units": UNITS, "lesions": list(rows)}, indent=1, allow_nan=False) + "\n"
    else:
        flat = [_flat(row) for row in rows]
        header = list(COLUMNS) + [key for row in flat for key in row if key not in COLUMNS]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(header)), lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        text = buffer.getvalue()
    atomic_write_bytes_via(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite)
    return path
