"""autoPET's per-lesion PET quantification: the shared lesion table (:mod:`lesionseg.lesions`) of a label on the PET
grid with the PET as both the image and the SUV source, and one summary row for a whole VOI.

Rows have :mod:`lesionseg.lesions`' fields (``id`` 1 = largest, ``voxels``, ``volume_ml`` = MTV, ``mean`` = SUVmean,
``centroid_lps``, ``bbox_ijk``, ``suv_max``, ``suv_mean``, ``suv_peak``, ``tlg_ml``); lesions are 18-connected by
default, the autoPET evaluation's choice, so the table counts the lesions that FPV/FNV count. The MIP picture
(:mod:`.mip`) numbers its outlines with the same ids (:func:`lesion_ids`). :func:`write_table` writes the shared
CSV or JSON format atomically; :func:`write_output` is ``lesionseg predict autopet-l2snet --table``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ... import lesions
from ...errors import InputError
from ...image import Image
from ...lesions import PEAK_RADIUS_MM, SUV_UNITS, check_label_and_suv, lesion_ids  # noqa: F401 (this module's API)
from ...metrics import lesion_components

METHOD = "autopet-l2snet"


def lesion_table(label: Image, suv: Image, connectivity: int = 18) -> list[dict]:
    """One row per connected lesion of ``label`` (on the grid of ``suv``), largest first:
    :func:`lesionseg.lesions.lesion_table` with the PET as image and SUV source.

    Raises:
        InputError: not images, not on the same grid (resample first), non-numeric or non-finite, PET not in
        SUV, or a bad ``connectivity``.
    """
    return lesions.lesion_table(label, suv, pet=suv, connectivity=connectivity)


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
    row = lesions.region_rows(voi, 1, suv, suv)[0]
    row["components"] = lesion_components(label, connectivity)[1]
    return row


def write_table(rows: Sequence[dict], path: str | Path, overwrite: bool = False) -> Path:
    """Write ``rows`` (from :func:`lesion_table`) as the shared ``.csv`` or ``.json`` lesion table
    (:func:`lesionseg.lesions.write_lesion_table`; ``mean`` in SUV). Atomic; an existing file is kept unless
    ``overwrite``.

    Raises:
        InputError: another suffix or a missing folder. OutputExistsError: the file exists.
    """
    return lesions.write_lesion_table(rows, path, method=METHOD, mean_units=SUV_UNITS, overwrite=overwrite)


def write_output(segmenter, label: Image, path: str | Path, overwrite: bool = False) -> Path:
    """``--table`` of ``lesionseg predict autopet-l2snet`` (the spec's output writer): the lesion table of
    ``label`` with the PET given to ``segmenter.set_image`` (SUV) as image and SUV source, written by
    :func:`write_table`."""
    return write_table(lesion_table(label, segmenter.image), path, overwrite=overwrite)
