"""The backend's lesion table in a panel: rows (mL, LPS -> RAS; SUV fields when the table has them), their cells in
the panel's list and the columns of a table node, segment specs, a summary line (no ``slicer`` import).

Every whole-volume lesion method writes one table format (``lesionseg.lesions``: ``id`` 1 = largest, ``voxels``,
``volume_ml``, ``mean`` of the image, ``centroid_lps``, ``bbox_ijk``; with a PET ``suv_max``, ``suv_mean``,
``suv_peak``, ``tlg_ml``), read by the backend's own reader, which also takes the two older autoPET and
small-lesion formats. The backend (``lesionseg``) and ``LesionSegLib.scene``/``results``/``labelmaps``, which
import it, are imported inside the functions: the module files import this before the backend may be installed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

LESIONS_SEGMENT = "lesions"
"""Name of the one segment holding every lesion (when not one segment per lesion)."""
LESION_ID_TAG = "LesionSeg.lesionId"
LESION_COUNT_TAG = "LesionSeg.lesions"

PET_PANEL_COLUMNS = ("ID", "Volume (mL)", "SUVmax", "SUVmean", "TLG", "Centre RAS (mm)")
"""Columns of a panel's lesion list for a PET table (double-click a row to centre the views on the lesion)."""
CT_PANEL_COLUMNS = ("#", "Volume (mm\u00b3)", "Mean HU", "Centre RAS (mm)")
"""Columns of a panel's lesion list for a CT table (small lesions: volumes in mm³)."""
PET_TABLE_COLUMNS = ("ID", "Volume (mL)", "SUVmax", "SUVmean", "SUVpeak", "TLG (SUV*mL)", "Centroid R (mm)",
                     "Centroid A (mm)", "Centroid S (mm)")
CT_TABLE_COLUMNS = ("ID", "Volume (mL)", "Mean (HU)", "Centroid R (mm)", "Centroid A (mm)", "Centroid S (mm)")
"""Columns of the lesion table node (all numeric; a missing value is NaN)."""

_SUV_FIELDS = ("suv_max", "suv_mean", "suv_peak", "tlg_ml")


def format_volume(mm3: float) -> str:
    """``"41"`` for 41.2 mm³, ``"8.4"`` below 10 mm³ (small lesions keep a decimal)."""
    return f"{mm3:.1f}" if abs(mm3) < 10 else f"{mm3:.0f}"


def _text(value: Optional[float], digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class LesionRow:
    """One lesion of the table.

    Attributes:
        id: 1 for the largest lesion, then by decreasing volume (the label value of a per-lesion segment).
        voxels: voxels of the lesion (None when the table does not say).
        volume_ml: mL; mean: mean image value in the lesion (HU of a CT; None when the table does not say).
        centroid_lps: ``(3,)`` LPS mm; centroid_ras: the same point in RAS mm (the input volume's node coordinates).
        suv_max, suv_mean, suv_peak, tlg_ml: SUVbw (g/mL) and SUVbw x mL; None for a table without PET.
    """

    id: int
    voxels: Optional[int]
    volume_ml: float
    mean: Optional[float]
    centroid_lps: tuple[float, float, float]
    centroid_ras: tuple[float, float, float]
    suv_max: Optional[float] = None
    suv_mean: Optional[float] = None
    suv_peak: Optional[float] = None
    tlg_ml: Optional[float] = None

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> "LesionRow":
        """A row of ``lesionseg.lesions.read_lesion_table`` (LPS) with the centroid in RAS too."""
        from LesionSegLib.scene import lps_to_ras

        lps = tuple(float(c) for c in row["centroid_lps"])
        return cls(int(row["id"]), row.get("voxels"), float(row["volume_ml"]), row.get("mean"), lps,
                   tuple(float(c) for c in lps_to_ras(np.array(lps))), *(row.get(key) for key in _SUV_FIELDS))

    @property
    def has_suv(self) -> bool:
        return self.suv_max is not None

    @property
    def volume_mm3(self) -> float:
        return self.volume_ml * 1000.0

    def as_dict(self) -> dict:
        """JSON-ready dict (the console API's row; the SUV fields only for a PET table)."""
        found = {"id": self.id, "voxels": self.voxels, "volume_ml": self.volume_ml, "mean": self.mean,
                 "centroid_lps": list(self.centroid_lps), "centroid_ras": list(self.centroid_ras)}
        return {**found, **({key: getattr(self, key) for key in _SUV_FIELDS} if self.has_suv else {})}

    def cells(self) -> tuple[str, ...]:
        """The panel's cells: :data:`PET_PANEL_COLUMNS` for a PET row, else :data:`CT_PANEL_COLUMNS`."""
        centre = "(" + ", ".join(f"{c:.1f}" for c in self.centroid_ras) + ")"
        if self.has_suv:
            return (str(self.id), f"{self.volume_ml:.2f}", _text(self.suv_max, 2), _text(self.suv_mean, 2),
                    _text(self.tlg_ml, 1), centre)
        return str(self.id), format_volume(self.volume_mm3), _text(self.mean, 0), centre


def read_lesion_rows(path: Path) -> list[LesionRow]:
    """The rows of the backend's lesion table (``.csv`` or ``.json``, file order), centroids also in RAS.

    Raises:
        ValueError: no file, or a table the backend's reader refuses (``lesionseg.InputError``, a ValueError: a
            missing column, a value that is not a number, ids other than 1..n).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"the backend wrote no lesion table ({path} is missing)")
    from lesionseg.lesions import read_lesion_table

    return [LesionRow.from_dict(row) for row in read_lesion_table(path)["lesions"]]


def table_columns(rows: Sequence[LesionRow]) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """``(names, arrays)`` of the lesion table node (:data:`PET_TABLE_COLUMNS` when a row has SUV values, else
    :data:`CT_TABLE_COLUMNS`), for ``slicer.util.updateTableFromArray``: ID int32, the rest float64 (NaN: none)."""
    pet = any(row.has_suv for row in rows)
    keys = ("volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg_ml") if pet else ("volume_ml", "mean")
    ras = np.array([row.centroid_ras for row in rows], dtype=np.float64).reshape(-1, 3)
    values = [np.array([math.nan if getattr(row, key) is None else getattr(row, key) for row in rows], np.float64)
              for key in keys]
    return (PET_TABLE_COLUMNS if pet else CT_TABLE_COLUMNS,
            [np.array([row.id for row in rows], dtype=np.int32), *values, *(ras[:, a].copy() for a in range(3))])


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


def segment_specs(count: int, per_lesion: bool = True, names: Optional[Sequence[str]] = None,
                  tags: Optional[Mapping[str, str]] = None) -> list:
    """The segments of a result (``LesionSegLib.labelmaps.SegmentSpec``), all with the terminology "Morphologically
    altered structure / Mass" and ``tags``.

    Args:
        count: the lesions of the label (values ``1..count``).
        per_lesion: one segment per lesion (label value = id, ``names[id - 1]`` or ``"lesion <id>"``, palette colour
            of ``LesionSegLib.results``, tag :data:`LESION_ID_TAG`); else one segment :data:`LESIONS_SEGMENT` (label
            value 1) holding them all, tagged with their number (:data:`LESION_COUNT_TAG`).
    """
    from LesionSegLib import results
    from LesionSegLib.labelmaps import SegmentSpec

    tags = dict(tags or {})
    if not per_lesion:
        return [SegmentSpec(1, LESIONS_SEGMENT, results.lesion_color("lesion 1"), results.TERMINOLOGY_MASS,
                            {**tags, LESION_COUNT_TAG: str(int(count))})]
    if names is not None and len(names) != count:
        raise ValueError(f"{len(names)} segment names for {count} lesions")
    return [SegmentSpec(i, names[i - 1] if names is not None else f"lesion {i}", results.lesion_color(f"lesion {i}"),
                        results.TERMINOLOGY_MASS, {**tags, LESION_ID_TAG: str(i)}) for i in range(1, int(count) + 1)]


def summary(rows: Sequence[LesionRow]) -> str:
    """One line for the panel: ``"3 lesions: 12.4 mL in total, TLG 61.0, highest SUVmax 9.87"`` for a PET table,
    ``"3 lesions, 120 mm³ in total (largest 80 mm³)"`` otherwise."""
    if not rows:
        return "No lesion found."
    noun = "lesion" if len(rows) == 1 else "lesions"
    if all(row.has_suv for row in rows):
        return (f"{len(rows)} {noun}: {sum(r.volume_ml for r in rows):.1f} mL in total, "
                f"TLG {sum(r.tlg_ml or 0.0 for r in rows):.1f}, highest SUVmax {max(r.suv_max for r in rows):.2f}")
    return (f"{len(rows)} {noun}, {format_volume(sum(r.volume_mm3 for r in rows))} mm\u00b3 in total (largest "
            f"{format_volume(max(r.volume_mm3 for r in rows))} mm\u00b3)")
