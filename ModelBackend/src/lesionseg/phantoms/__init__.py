"""Seeded synthetic CT phantoms with lesion labels, for demos, tests and smoke-checks of the methods.

Each builder returns ``(image, label, info)``: an int16 HU :class:`~lesionseg.image.Image` with realistic
values, Gaussian noise and a slight blur (partial volume), a uint8 label image on the same grid and a
JSON-ready ``info`` dict listing every lesion (centre and box in LPS mm, diameter, volume). The same
arguments always give identical arrays (``numpy.random.default_rng(seed)``); origins are not zero and a
direction matrix is accepted, so geometry bugs show. The dual-phase pancreas phantom (:mod:`.pancreas`)
returns ``(arterial, venous, label, info)``. The whole-body PET/CT phantom
(:mod:`.wholebody`) returns ``(pet SUV, ct, label, info)``. The small-bowel phantom (:mod:`.smallbowel`, small
enhancing lesions at the bowel wall) returns ``(ct, label, info)``. All are built from the same parts: :mod:`.shapes` (grid, ellipsoid,
lobulated blob, tube along a polyline, blur in mm, a :class:`~.shapes.Canvas` that places lesions inside
an organ) and :mod:`.torso` (body wall, spine, ribs, vessel trees). No real data is used.
"""
from __future__ import annotations

from .abdomen import abdomen_ct
from .chest import chest_ct
from .pancreas import cohort as pancreas_cohort, pancreas_ct
from .smallbowel import smallbowel_ct
from .shapes import Canvas, Grid, Region, blur_mm, ellipsoid, lobulated, spheroid, tube, union
from .wholebody import wholebody_cohort, wholebody_petct

__all__ = ["Canvas", "Grid", "Region", "abdomen_ct", "blur_mm", "chest_ct", "ellipsoid", "lobulated",
           "pancreas_cohort", "pancreas_ct", "smallbowel_ct", "spheroid", "tube", "union", "wholebody_cohort", "wholebody_petct"]
