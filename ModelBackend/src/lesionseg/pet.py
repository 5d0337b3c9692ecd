"""PET input for whole-body PET/CT methods: reading a PET as SUVbw (DICOM tags or explicit units, through
:mod:`lesionseg.suv`), sanity checks of a PET/CT pair, and the CT resampled onto the PET grid.

Voxels come through :func:`lesionseg.io.read_image` (SimpleITK applies each slice's RescaleSlope). Nothing
guesses units: a NIfTI/NRRD/MHA PET needs ``units="suv"`` or ``"bqml"``.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .errors import InputError, LesionSegWarning
from .image import Image
from .intensity import CT_LOW_HU, SUV_P999_RANGE, looks_like_ct, looks_like_pet, sample
from .suv import UNITS, UNITS_HINT, SUVInfo, suv_factor_from_dicom, suv_factor_from_values  # noqa: F401 (API)

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
MIN_SLICES = 3
"""Fewest voxels a PET may have along each axis: fewer is a slice or a slab, not a whole-body volume."""

def _range_text(array: np.ndarray) -> str:
    values = sample(array)
    return f"{values.min():.4g}..{values.max():.4g}, 99.9th percentile {np.percentile(values, 99.9):.4g}"


def _check_varies(image: Image, name: str) -> None:
    """InputError when every voxel of ``image`` holds one value (an empty or blank volume)."""
    lo, hi = float(np.min(image.array)), float(np.max(image.array))
    if lo == hi:
        raise InputError(f"the {name} is constant (every voxel is {lo:g}): an empty or blank volume")


def _check_3d(image: Image, name: str) -> None:
    """InputError when ``image`` has fewer than :data:`MIN_SLICES` voxels along an axis (a 2D slice or a slab)."""
    if min(image.shape) < MIN_SLICES:
        shape = "x".join(str(n) for n in image.shape[::-1])
        raise InputError(f"the {name} is {shape} voxels (I x J x K): a 3D PET volume is needed (at least "
                         f"{MIN_SLICES} voxels along each axis), not a single slice or a slab")


def _looks_like_bqml(array: np.ndarray) -> bool:
    """True when a PET said to be in SUV plainly holds Bq/mL: nothing clearly negative (so not a CT) and a
    99.9th percentile above any SUV (:data:`lesionseg.intensity.SUV_P999_RANGE`)."""
    values = sample(array)
    return bool(np.mean(values < -1.0) <= 0.001 and np.percentile(values, 99.9) > SUV_P999_RANGE[1])


def _check_suv(image: Image, name: str) -> None:
    """InputError when a PET (already in SUV) is constant or does not look like SUV."""
    _check_varies(image, name)
    if looks_like_pet(image.array):
        return
    if looks_like_ct(image.array):
        raise InputError(f"the {name} looks like a CT in HU (values {_range_text(image.array)}); "
                         "are the PET and CT swapped?")
    if _looks_like_bqml(image.array):
        raise InputError(f"the {name} does not look like SUV: its values ({_range_text(image.array)}) look like "
                         "Bq/mL; convert it to SUVbw first (lesionseg.pet.read_pet(path, units='bqml', ...), "
                         "'lesionseg suv', or --pet-units bqml with --weight-kg and --dose-bq)")
    raise InputError(f"the {name} does not look like SUV (values {_range_text(image.array)}); "
                     f"check the units, weight and dose; {UNITS_HINT}")


def _check_pet_file(path: Path) -> None:
    """InputError for one DICOM slice (the folder is wanted) or a 4D image file (frames counted); headers only."""
    import SimpleITK as sitk

    with open(path, "rb") as fh:
        if fh.read(132)[128:] == b"DICM":
            raise InputError(f"{path} is one DICOM file; give the folder holding the PET series")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return  # read_image reports unreadable files with its own message
    if reader.GetDimension() == 4:
        size = reader.GetSize()
        raise InputError(f"{path} is a 4D PET ({size[3]} frames of {size[0]}x{size[1]}x{size[2]} voxels); "
                         "give one static 3D frame")


def read_pet(path: PathLike, units: str = "auto", weight_kg: Optional[float] = None,
             dose_bq: Optional[float] = None, decay_s: Optional[float] = None, half_life_s: Optional[float] = None,
             decayed_dose_bq: Optional[float] = None, series_uid: Optional[str] = None) -> Image:
    """Read a PET as SUVbw: float32 ``(K, J, I)`` on its own grid, ``meta["units"] == "SUVbw"``,
    ``meta["suv"]`` the :class:`SUVInfo` (None for SUV input).

    ``path`` is a PET DICOM series folder (SUV from its tags; ``series_uid`` picks one of several) or a
    NIfTI/NRRD/MHA file whose ``units`` must be said: "suv", or "bqml" with ``weight_kg`` (kg) and
    ``decayed_dose_bq``, or ``dose_bq`` with ``decay_s`` and ``half_life_s`` (s). "auto" is for DICOM only.
    Raises :class:`InputError` for unknown units (never a silent guess), 4D PET, a 2D PET (fewer than
    :data:`MIN_SLICES` voxels along an axis), missing tags or values, a constant volume, a file given as
    ``suv`` that holds Bq/mL (the message names ``--pet-units bqml``), and values that do not look like SUV
    after conversion.
    """
    if units not in UNITS:
        raise InputError(f"PET units must be one of {', '.join(UNITS)}, not {units!r}")
    from .io import read_image

    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file or folder: {p}")
    if p.is_dir():
        given = [k for k, v in dict(weight_kg=weight_kg, dose_bq=dose_bq, decay_s=decay_s, half_life_s=half_life_s,
                                    decayed_dose_bq=decayed_dose_bq).items() if v is not None]
        if given:
            raise InputError(f"{', '.join('--' + k.replace('_', '-') + f' ({k})' for k in given)} cannot be given "
                             "for a DICOM folder: its tags are used")
        info: Optional[SUVInfo] = suv_factor_from_dicom(p, series_uid)
        if units != "auto" and (units == "suv") != (info.units == "GML"):
            raise InputError(f"--pet-units {units} contradicts the DICOM Units {info.units}; use auto for DICOM")
        image = read_image(p, info.series_uid)
        source = f"DICOM series {info.series_uid}"
    else:
        _check_pet_file(p)
        if units == "auto":
            raise InputError(f"the units of {p.name} are unknown; {UNITS_HINT}")
        if units == "suv":
            info = None
        else:
            info = suv_factor_from_values(weight_kg, dose_bq, decay_s, half_life_s, decayed_dose_bq,
                                          units="BQML (given)")
        image = read_image(p)
        source = f"{p.name} as {units}"
    factor = 1.0 if info is None else info.factor
    suv = image.with_array((image.array.astype(np.float64) * factor).astype(np.float32),
                           units="SUVbw", suv=info)
    _check_3d(suv, f"PET ({source})")
    if units == "suv" and float(np.min(suv.array)) != float(np.max(suv.array)) and _looks_like_bqml(suv.array):
        raise InputError(f"the PET {p.name} holds Bq/mL-like values ({_range_text(suv.array)}; SUV stays below "
                         f"{SUV_P999_RANGE[1]:g}), not SUV as --pet-units suv says: give --pet-units bqml "
                         "with --weight-kg and --dose-bq (with --decay-s and --half-life-s) or --decayed-dose-bq, "
                         "or convert it first with 'lesionseg suv'")
    _check_suv(suv, f"PET ({source})")
    log.info("PET %s: SUVbw factor %.6e g/Bq", source, factor)
    return suv


def check_pet(pet: Image) -> None:
    """Check a PET (SUV) used without a CT; raises :class:`InputError`, returns None when fine.

    Errors: a constant volume (e.g. all zero); a 2D PET (fewer than :data:`MIN_SLICES` voxels along an axis);
    a PET that looks like a CT in HU or not like SUV (e.g. Bq/mL).
    """
    _check_varies(pet, "PET")
    _check_3d(pet, "PET")
    _check_suv(pet, "PET")


def check_pet_ct(pet: Image, ct: Image, overlap_hint: str = "") -> None:
    """Check a PET (SUV) / CT (HU) pair before use; raises :class:`InputError`, returns None when fine.

    Errors: a constant volume; a 2D PET (see :func:`check_pet`); swapped inputs (the PET looks like HU, or the
    CT like SUV, both said with "swapped"); a PET that is not SUV; volumes that do not overlap in LPS space
    (:func:`lesionseg.resample.check_overlap`; ``overlap_hint``, e.g. a flag that drops the CT, is appended to
    that message). A CT that looks like neither is only warned about (:class:`LesionSegWarning`): it may be a
    crop without fat or air.
    """
    from .resample import check_overlap

    _check_varies(pet, "PET")
    _check_3d(pet, "PET")
    _check_varies(ct, "CT")
    ct_is_ct, ct_is_pet = looks_like_ct(ct.array), looks_like_pet(ct.array)
    if looks_like_ct(pet.array) and not looks_like_pet(pet.array) and ct_is_pet and not ct_is_ct:
        raise InputError(f"the PET and CT look swapped: the PET holds CT-like values ({_range_text(pet.array)}) "
                         f"and the CT SUV-like values ({_range_text(ct.array)}); give the PET first, then the CT")
    _check_suv(pet, "PET")
    if ct_is_pet and not ct_is_ct:
        raise InputError(f"the CT looks like a PET in SUV (values {_range_text(ct.array)}, nothing below "
                         f"{CT_LOW_HU:g} HU); are the PET and CT swapped?")
    if not ct_is_ct:
        warnings.warn(f"the CT has almost no voxels below {CT_LOW_HU:g} HU (values {_range_text(ct.array)}); "
                      "is it in HU?", LesionSegWarning, stacklevel=2)
    try:
        check_overlap(pet, ct, ("PET", "CT"))
    except InputError as exc:
        if not overlap_hint:
            raise
        raise InputError(f"{exc} {overlap_hint}") from None


def pair_pet_ct(pet: Image, ct: Image) -> Image:
    """The CT on the PET grid (linear interpolation in LPS space, -1000 HU outside), after
    :func:`check_pet_ct`. Returns ``ct`` itself when it is already on the PET grid; keeps the CT's dtype."""
    from .resample import resample_to_grid

    check_pet_ct(pet, ct)
    if ct.same_grid(pet):
        return ct
    return resample_to_grid(ct, pet, "linear", default=-1000.0)
