"""Class name -> tissue table of :mod:`.labelmap` (TotalSegmentator v2 ``total`` names and similar).

A class's tissue is the first rule whose pattern is a substring of its lower-case name; names no rule matches
are ``soft`` (other soft tissue, 40 HU). Enhancing tissues get per-case arterial/venous HU from
:func:`.randomise.tissue_values` with the typical values of :data:`TYPICAL_HU`; the non-enhancing ones of
:data:`FIXED_HU` get one HU for both phases; ``bone`` is painted in plain HU with a trabecular texture and
gut organs (:data:`GUT`) get a wall of their class plus a content of gas, fluid or both. All values are CT
numbers in HU.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ..errors import InputError
from ..image import Image

from .pancreas import TISSUE_HU

RULES = (
    ("kidney_cyst", "fluid"), ("kidney", "cortex"), ("adrenal", "adrenal"), ("pancreas", "pancreas"),
    ("liver", "liver"), ("spleen", "spleen"), ("gallbladder", "bile"), ("urinary_bladder", "fluid"),
    ("lung", "lung"), ("trachea", "gas"),
    ("stomach", "gut_wall"), ("duodenum", "gut_wall"), ("small_bowel", "gut_wall"), ("colon", "gut_wall"),
    ("esophagus", "gut_wall"),
    ("costal_cartilage", "cartilage"), ("spinal_cord", "spinal_cord"),
    ("vertebra", "bone"), ("sacrum", "bone"), ("rib", "bone"), ("sternum", "bone"), ("hip", "bone"),
    ("femur", "bone"), ("humerus", "bone"), ("scapula", "bone"), ("clavicula", "bone"), ("skull", "bone"),
    ("autochthon", "muscle"), ("iliopsoas", "muscle"), ("gluteus", "muscle"), ("muscle", "muscle"),
    ("heart", "heart"), ("atrial_appendage", "heart"), ("pulmonary_vein", "heart"),
    ("aorta", "artery"), ("artery", "artery"), ("brachiocephalic_trunk", "artery"),
    ("inferior_vena_cava", "ivc"), ("iliac_vena", "ivc"), ("vena_cava", "vein"), ("brachiocephalic_vein", "vein"),
    ("portal_vein", "vein"), ("vein", "vein"),
)
"""(substring of the class name, tissue), first match wins (``kidney_cyst`` before ``kidney``)."""

GUT = ("stomach", "duodenum", "small_bowel", "colon", "esophagus")
"""Hollow organs: their class becomes a wall of one source voxel around a content (:data:`CONTENTS`)."""
CONTENTS = {"gas": 0.3, "fluid": 0.4, "mixed": 0.3}
"""Odds of each gut organ's content per case: gas (-1000 HU), fluid (:data:`FLUID_HU`) or gas over fluid."""
FLUID_HU = (5.0, 20.0)

TYPICAL_HU: dict[str, tuple[float, float]] = {
    **{name: TISSUE_HU[name] for name in ("fat", "muscle", "liver", "spleen", "cortex", "pancreas", "artery",
                                          "vein", "ivc", "gut_wall", "bile", "fluid")},
    "heart": (250.0, 160.0), "adrenal": (80.0, 75.0), "soft": (40.0, 45.0)}
"""Typical (arterial, venous) HU of the enhancing tissues (:data:`.pancreas.TISSUE_HU` plus heart blood,
adrenal and other soft tissue), randomised per case by :func:`.randomise.tissue_values`."""

FIXED_HU = {"lung": (-850.0, 50.0), "cartilage": (100.0, 15.0), "spinal_cord": (30.0, 5.0)}
"""(mean, sd) of the non-enhancing tissues, one draw per case for both phases."""
BONE_HU, BONE_TEXTURE_HU = (200.0, 600.0), (40.0, 100.0)
"""Per-case bone HU range and sd range of its trabecular texture (smooth noise of about 1 mm)."""
AIR_HU = -1000.0


def tissue_of(name: str) -> str:
    """Tissue of a class named ``name`` (:data:`RULES`; ``soft`` when none matches)."""
    low = name.lower()
    return next((tissue for pattern, tissue in RULES if pattern in low), "soft")


def gut_organs(names: Mapping[int, str]) -> dict[int, str]:
    """``{class: organ}`` of the classes that are hollow organs of :data:`GUT`."""
    return {c: organ for c, name in names.items() for organ in GUT if organ in name.lower()}


def read_names(path: Path) -> dict[int, str]:
    """``{class value: name}`` from a CSV with ``label`` and ``name`` columns (``example_seg_labels.csv``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no label names file {path} (a CSV with columns label,name)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"label", "name"} <= set(rows[0]):
        raise InputError(f"{path} must be a CSV with columns label,name")
    try:
        return {int(row["label"]): row["name"].strip() for row in rows}
    except ValueError:
        raise InputError(f"{path}: every label must be an integer") from None


def names_beside(labelmap: Path, names: Optional[Path] = None) -> Path:
    """The names CSV of ``labelmap``: ``names`` when given, else ``example_seg_labels.csv`` next to it."""
    found = Path(names) if names is not None else Path(labelmap).parent / "example_seg_labels.csv"
    if not found.is_file():
        raise InputError(f"no label names for {labelmap}: give --labelmap-names CSV (label,name) or put "
                         f"example_seg_labels.csv next to it ({found} does not exist)")
    return found


def find_pancreas(labels: Image, names: Mapping[int, str]) -> int:
    """The class value named ``pancreas`` (any case) in ``names``; InputError unless ``labels`` holds it."""
    found = next((int(c) for c, n in names.items() if str(n).strip().lower() == "pancreas"), None)
    if found is None or not np.any(np.asarray(labels.array) == found):
        raise InputError("the label map has no pancreas: " + ("no class is named 'pancreas' in its names"
                         if found is None else f"none of its voxels holds class {found} (pancreas)"))
    return found
