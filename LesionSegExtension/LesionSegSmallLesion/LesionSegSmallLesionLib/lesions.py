"""The backend's lesion table -> rows; rows <-> connected lesions of the mask; segment names and specs (pure).

``lesionseg predict small-lesion-il ... --table lesions.json`` writes ``{"method", "image", "lesions": [{"id",
"voxels", "volume_mm3", "mean_hu", "centroid_lps": [x, y, z]}, ...]}`` (largest first; ``id`` is the list
position, the mask itself stays 0/1); a ``.csv`` table has the header ``id,voxels,volume_mm3,mean_hu,
centroid_x_mm,centroid_y_mm,centroid_z_mm``. Lesions are 26-connected components of the mask. Rows carry the
centroid in RAS too (the CT node's coordinates). No ``slicer`` import; ``LesionSegLib`` is imported inside the
functions that need it.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

LESION_ID_TAG = "LesionSeg.lesionId"
PRIOR_TAG = "LesionSeg.prior"
ROI_TAG = "LesionSeg.roi"
CONNECTIVITY = 26
"""Neighbours that join voxels into one lesion (the backend's definition)."""

PANEL_COLUMNS = ("#", "Volume (mm\u00b3)", "Mean HU", "Centre RAS (mm)")
"""Columns of the panel's lesion list (double-click a row to centre the views on the lesion)."""

_CSV_CENTROID = ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm")


@dataclass(frozen=True)
class LesionRow:
    """One lesion of the table.

    Attributes:
        id: 1 for the largest lesion, then by decreasing volume (the segment ``Lesion <id> (...)``).
        voxels: voxels of the lesion (``None`` when the table does not say).
        volume_mm3: mm³; mean_hu: mean CT value in the lesion (HU).
        centroid_lps: ``(3,)`` LPS mm; centroid_ras: the same point in RAS mm (CT node coordinates).
    """

    id: int
    voxels: Optional[int]
    volume_mm3: float
    mean_hu: float
    centroid_lps: tuple[float, float, float]
    centroid_ras: tuple[float, float, float]

    @property
    def segment_name(self) -> str:
        return segment_name(self.id, self.volume_mm3)

    def as_dict(self) -> dict:
        """JSON-ready dict (the console API's row)."""
        return {"id": self.id, "voxels": self.voxels, "volume_mm3": self.volume_mm3, "mean_hu": self.mean_hu,
                "centroid_lps": list(self.centroid_lps), "centroid_ras": list(self.centroid_ras),
                "segment": self.segment_name}

    def cells(self) -> tuple[str, ...]:
        """The panel's cells (:data:`PANEL_COLUMNS`)."""
        return (str(self.id), format_volume(self.volume_mm3), f"{self.mean_hu:.0f}",
                "(" + ", ".join(f"{c:.1f}" for c in self.centroid_ras) + ")")


def format_volume(mm3: float) -> str:
    """``"41"`` for 41.2 mm³, ``"8.4"`` below 10 mm³ (small lesions keep a decimal)."""
    return f"{mm3:.1f}" if abs(mm3) < 10 else f"{mm3:.0f}"


def segment_name(lesion_id: int, volume_mm3: float) -> str:
    """``"Lesion 1 (41 mm³)"``."""
    return f"Lesion {int(lesion_id)} ({format_volume(volume_mm3)} mm\u00b3)"


def _number(value: Any, what: str, where: str, required: bool = True) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{where}: {what} is missing")
        return float("nan")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: {what} is {value!r}, not a finite number")
    return number


def _row(record: Mapping[str, Any], centroid: Any, where: str) -> LesionRow:
    from LesionSegLib.scene import lps_to_ras

    number = _number(record.get("id"), "id", where)
    if number != int(number) or number < 1:
        raise ValueError(f"{where}: id {record.get('id')!r} is not a positive whole number")
    voxels = _number(record.get("voxels"), "voxels", where, required=False)
    if not isinstance(centroid, (list, tuple)) or len(centroid) != 3:
        raise ValueError(f"{where}: the centroid {centroid!r} is not three numbers")
    lps = tuple(_number(c, "the centroid", where) for c in centroid)
    volume = _number(record.get("volume_mm3"), "volume_mm3", where)
    mean = _number(record.get("mean_hu"), "mean_hu", where)
    return LesionRow(int(number), None if math.isnan(voxels) else int(voxels), volume, mean, lps,
                     tuple(float(c) for c in lps_to_ras(np.array(lps))))


def read_lesion_table(path: Path) -> list[LesionRow]:
    """The rows of the backend's lesion table (``.json`` or ``.csv``, file order), centroids also in RAS.

    Raises:
        ValueError: no file, unreadable JSON, a missing field, a non-numeric value, ids other than 1..n.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"the backend wrote no lesion table ({path} is missing)")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
        rows = [_row(r, [r.get(n) for n in _CSV_CENTROID], f"lesion table line {line}")
                for line, r in enumerate(records, start=2)]
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"the lesion table {path.name} cannot be read: {exc}") from exc
        lesions = data.get("lesions") if isinstance(data, dict) else None
        if not isinstance(lesions, list) or not all(isinstance(r, dict) for r in lesions):
            raise ValueError(f"the lesion table {path.name} has no list of lesions")
        rows = [_row(r, r.get("centroid_lps"), f"lesion {n} of {path.name}") for n, r in enumerate(lesions, start=1)]
    ids = [row.id for row in rows]
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise ValueError(f"the lesion table {path.name} numbers its lesions {ids}, not 1..{len(ids)}")
    return rows


def match_components(rows: Sequence[LesionRow], voxel_counts: Sequence[int], centroids_lps: np.ndarray) -> list[int]:
    """Which connected component of the mask each row describes.

    Each row (in table order) takes the unused component with its voxel count (any count when the row does not
    say) whose centroid is nearest to the row's; ties of size are thus resolved by position, not by the order the
    backend happened to number them.

    Args:
        voxel_counts: voxels of components ``1..n``; centroids_lps: ``(n, 3)`` their centroids, LPS mm.

    Returns:
        the component number (1-based) of each row.

    Raises:
        ValueError: the table and the mask disagree (count of lesions, or no component of a row's size).
    """
    counts = np.asarray(voxel_counts, dtype=np.int64).reshape(-1)
    centres = np.asarray(centroids_lps, dtype=np.float64).reshape(-1, 3)
    if len(rows) != len(counts):
        raise ValueError(f"the backend's outputs disagree: the lesion table lists {len(rows)} lesions, the mask "
                         f"holds {len(counts)}")
    free = np.ones(len(counts), dtype=bool)
    found = []
    for row in rows:
        candidates = free & ((counts == row.voxels) if row.voxels is not None else True)
        if not candidates.any():
            raise ValueError(f"the backend's outputs disagree: no lesion of the mask has the {row.voxels} voxels of "
                             f"lesion {row.id}")
        distance = np.where(candidates, np.linalg.norm(centres - np.asarray(row.centroid_lps), axis=1), np.inf)
        best = int(np.argmin(distance))
        free[best] = False
        found.append(best + 1)
    return found


def relabel(components: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """``components`` (``(K, J, I)`` int, 0 background) renumbered so that component ``order[n]`` becomes
    ``n + 1`` (uint16)."""
    lookup = np.zeros(int(np.max(components, initial=0)) + 1, dtype=np.uint16)
    lookup[np.asarray(order, dtype=np.int64)] = np.arange(1, len(order) + 1, dtype=np.uint16)
    return lookup[np.asarray(components)]


def segment_specs(rows: Sequence[LesionRow], tags: Optional[Mapping[str, str]] = None) -> list:
    """One ``LesionSegLib.labelmaps.SegmentSpec`` per row: label value = row id, name ``"Lesion <id> (<V> mm³)"``,
    palette colour of ``LesionSegLib.results``, terminology "Morphologically altered structure / Mass", tag
    :data:`LESION_ID_TAG` plus ``tags`` (prior, ROI)."""
    from LesionSegLib import results
    from LesionSegLib.labelmaps import SegmentSpec

    return [SegmentSpec(row.id, row.segment_name, results.lesion_color(f"lesion {row.id}"), results.TERMINOLOGY_MASS,
                        {**(tags or {}), LESION_ID_TAG: str(row.id)}) for row in rows]


def summary(rows: Sequence[LesionRow]) -> str:
    """One line for the panel, e.g. ``"3 lesions, 120 mm³ in total (largest 80 mm³)"``."""
    if not rows:
        return "No lesion found."
    noun = "lesion" if len(rows) == 1 else "lesions"
    return (f"{len(rows)} {noun}, {format_volume(sum(r.volume_mm3 for r in rows))} mm\u00b3 in total (largest "
            f"{format_volume(max(r.volume_mm3 for r in rows))} mm\u00b3)")


def segmentation_name(volume_name: str) -> str:
    """Name of a new segmentation: ``"<CT volume> small lesions"``."""
    return f"{volume_name} small lesions".strip()
