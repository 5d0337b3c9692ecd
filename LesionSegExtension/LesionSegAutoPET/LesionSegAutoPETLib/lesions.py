"""The backend's lesion table -> rows for the panel and the table node; lesions -> segment specs (pure).

``lesions.csv`` (one line per connected lesion, 18-connectivity, id 1 = largest) has the columns ``id``,
``voxels``, ``volume_ml`` (mL), ``suv_max``, ``suv_mean``, ``suv_peak`` (SUVbw, g/mL), ``tlg`` (SUVmean x mL)
and the centroid in LPS mm, read in any of the three spellings the backend has used: ``centroid_lps`` as
``"x;y;z"`` (or ``[x, y, z]``), ``centroid_x/_y/_z``, or ``centroid_l_mm/_p_mm/_s_mm``. ``suv_peak`` and
``voxels`` may be missing (NaN / None). The rows carry the centroid in RAS too (the PET node's coordinates).
No ``slicer`` import; ``LesionSegLib`` is imported inside the functions that need it.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

LESIONS_SEGMENT = "lesions"
LESIONS_COLOR = (0.90, 0.20, 0.20)
LESION_ID_TAG = "LesionSeg.lesionId"

TABLE_COLUMNS = ("ID", "Volume (mL)", "SUVmax", "SUVmean", "SUVpeak", "TLG (SUV*mL)", "Centroid R (mm)",
                 "Centroid A (mm)", "Centroid S (mm)")
"""Columns of the lesion table node, in order (all numeric)."""

PANEL_COLUMNS = ("ID", "Volume (mL)", "SUVmax", "SUVmean", "TLG", "Centre RAS (mm)")
"""Columns of the panel's lesion list (double-click a row to centre the views on the lesion)."""

_CENTROID_COLUMNS = (("centroid_x", "centroid_y", "centroid_z"), ("centroid_l_mm", "centroid_p_mm", "centroid_s_mm"))
_REQUIRED = ("id", "volume_ml", "suv_max", "suv_mean", "tlg")


@dataclass(frozen=True)
class LesionRow:
    """One lesion of the table.

    Attributes:
        id: 1 for the largest lesion, then by decreasing volume (the segment ``lesion <id>``).
        voxels: number of voxels (None when the table does not say).
        volume_ml, suv_max, suv_mean, suv_peak, tlg: mL, SUVbw (g/mL), SUVbw x mL (suv_peak NaN when absent).
        centroid_lps: ``(3,)`` LPS mm; centroid_ras: the same point in RAS mm (PET node coordinates).
    """

    id: int
    voxels: Optional[int]
    volume_ml: float
    suv_max: float
    suv_mean: float
    suv_peak: float
    tlg: float
    centroid_lps: tuple[float, float, float]
    centroid_ras: tuple[float, float, float]

    def as_dict(self) -> dict:
        """JSON-ready dict (the console API's row)."""
        return {"id": self.id, "voxels": self.voxels, "volume_ml": self.volume_ml, "suv_max": self.suv_max,
                "suv_mean": self.suv_mean, "suv_peak": self.suv_peak, "tlg": self.tlg,
                "centroid_lps": list(self.centroid_lps), "centroid_ras": list(self.centroid_ras)}

    def cells(self) -> tuple[str, ...]:
        """The panel's cells (:data:`PANEL_COLUMNS`)."""
        return (str(self.id), f"{self.volume_ml:.2f}", f"{self.suv_max:.2f}", f"{self.suv_mean:.2f}",
                f"{self.tlg:.1f}", "(" + ", ".join(f"{c:.1f}" for c in self.centroid_ras) + ")")


def _float(record: Mapping[str, str], key: str, line: int, required: bool = True) -> float:
    text = (record.get(key) or "").strip()
    if not text and not required:
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"lesion table line {line}: {key} is {text!r}, not a number") from None
    if required and not math.isfinite(value):
        raise ValueError(f"lesion table line {line}: {key} is {text!r}, not a finite number")
    return value


def parse_centroid(record: Mapping[str, str], line: int = 0) -> tuple[float, float, float]:
    """The LPS centroid (mm) of one CSV record, from any of the spellings in the module docstring.

    Raises:
        ValueError: none present, or not three finite numbers.
    """
    text = (record.get("centroid_lps") or "").strip()
    if text:
        parts = [p for p in re.split(r"[;,\s\[\]()]+", text) if p]
    else:
        names = next((names for names in _CENTROID_COLUMNS if all((record.get(n) or "").strip() for n in names)),
                     None)
        if names is None:
            raise ValueError(f"lesion table line {line} has no centroid (centroid_lps, centroid_x/y/z or "
                             "centroid_l_mm/p_mm/s_mm)")
        parts = [record[n].strip() for n in names]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"lesion table line {line}: the centroid {text or parts!r} is not numeric") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"lesion table line {line}: the centroid {text or parts!r} is not three finite numbers")
    return values


def read_lesion_csv(path: Path) -> list[LesionRow]:
    """The rows of the backend's ``lesions.csv`` (file order), centroids also in RAS.

    Raises:
        ValueError: no file, a missing column, a non-numeric value, no centroid, or repeated ids.
    """
    from LesionSegLib.scene import lps_to_ras

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"the backend wrote no lesion table ({path} is missing)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in _REQUIRED if name not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"the lesion table {path.name} lacks the column(s) {', '.join(missing)}")
        rows = []
        for line, record in enumerate(reader, start=2):
            number = _float(record, "id", line)
            if number != int(number) or number < 1:
                raise ValueError(f"lesion table line {line}: id {record['id']!r} is not a positive whole number")
            voxels = _float(record, "voxels", line, required=False)
            lps = parse_centroid(record, line)
            rows.append(LesionRow(int(number), None if math.isnan(voxels) else int(voxels),
                                  _float(record, "volume_ml", line), _float(record, "suv_max", line),
                                  _float(record, "suv_mean", line), _float(record, "suv_peak", line, required=False),
                                  _float(record, "tlg", line), lps,
                                  tuple(float(c) for c in lps_to_ras(np.array(lps)))))
    ids = [row.id for row in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the lesion table {path.name} repeats lesion ids: {ids}")
    return rows


def table_columns(rows: Sequence[LesionRow]) -> list[np.ndarray]:
    """One 1D array per :data:`TABLE_COLUMNS` (ID int32, the rest float64), for ``slicer.util.updateTableFromArray``."""
    ras = np.array([row.centroid_ras for row in rows], dtype=np.float64).reshape(-1, 3)
    return [np.array([row.id for row in rows], dtype=np.int32),
            *(np.array([getattr(row, key) for row in rows], dtype=np.float64)
              for key in ("volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg")),
            ras[:, 0].copy(), ras[:, 1].copy(), ras[:, 2].copy()]


def count_mismatch(rows: Sequence[LesionRow], voxel_counts: Sequence[int]) -> Optional[str]:
    """Why the table does not describe the lesions of the label (``None`` when it does).

    Args:
        voxel_counts: voxels of lesion ``1..n`` of the label as numbered by the backend (largest first).
    """
    if len(rows) != len(voxel_counts):
        return f"the lesion table lists {len(rows)} lesions, the label holds {len(voxel_counts)}"
    for row in rows:
        if not 1 <= row.id <= len(voxel_counts):
            return f"the lesion table's id {row.id} is not a lesion of the label"
        if row.voxels is not None and row.voxels != int(voxel_counts[row.id - 1]):
            return (f"lesion {row.id} has {row.voxels} voxels in the table and {int(voxel_counts[row.id - 1])} in "
                    "the label")
    return None


def segment_specs(lesion_ids: Sequence[int], per_lesion: bool) -> list:
    """The segments of a result (``LesionSegLib.labelmaps.SegmentSpec``).

    One segment :data:`LESIONS_SEGMENT` (label value 1) holding every lesion, or one segment ``lesion <id>``
    per lesion (label value = id, palette colour of ``LesionSegLib.results``, tag :data:`LESION_ID_TAG`).
    All carry the terminology "Morphologically altered structure / Mass".
    """
    from LesionSegLib import results
    from LesionSegLib.labelmaps import SegmentSpec

    if not per_lesion:
        return [SegmentSpec(1, LESIONS_SEGMENT, LESIONS_COLOR, results.TERMINOLOGY_MASS,
                            {"LesionSeg.lesions": str(len(lesion_ids))})]
    return [SegmentSpec(int(i), f"lesion {int(i)}", results.lesion_color(f"lesion {int(i)}"),
                        results.TERMINOLOGY_MASS, {LESION_ID_TAG: str(int(i))}) for i in lesion_ids]


def summary(rows: Sequence[LesionRow]) -> str:
    """One line for the panel, e.g. ``"3 lesions: 12.4 mL in total, TLG 61.0, highest SUVmax 9.87"``."""
    if not rows:
        return "No lesion found."
    noun = "lesion" if len(rows) == 1 else "lesions"
    return (f"{len(rows)} {noun}: {sum(r.volume_ml for r in rows):.1f} mL in total, "
            f"TLG {sum(r.tlg for r in rows):.1f}, highest SUVmax {max(r.suv_max for r in rows):.2f}")


def segmentation_name(pet_name: str) -> str:
    """Name of a new segmentation: ``"<PET volume> lesions"``."""
    return f"{pet_name} lesions".strip()
