"""PET input for whole-body PET/CT methods: SUVbw from DICOM headers, explicit units for other files,
sanity checks of a PET/CT pair, and the CT resampled onto the PET grid.

SUVbw follows the QIBA FDG-PET/CT profile's vendor-neutral recipe (the "PET SUV" white paper)::

    SUVbw [g/mL] = activity concentration [Bq/mL] * factor,   factor = body weight [g] / decayed dose [Bq]
    decayed dose = RadionuclideTotalDose * 2 ** (-(scan start - injection) / RadionuclideHalfLife)

The scan start is the earliest SeriesDate/SeriesTime, or the earliest acquisition date/time when that is
earlier (post-processed series of some vendors); ``DecayCorrection ADMIN`` needs no decay. Units BQML
convert, GML (already SUVbw) pass with factor 1, others are refused. Headers are read with pydicom
(``stop_before_pixels``); voxels come through :func:`lesionseg.io.read_image` (SimpleITK applies each
slice's RescaleSlope). Nothing guesses units: a NIfTI/NRRD/MHA PET needs ``units="suv"`` or ``"bqml"``.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .errors import InputError, LesionSegWarning
from .image import Image
from .intensity import CT_LOW_HU, looks_like_ct, looks_like_pet, sample

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
UNITS = ("auto", "suv", "bqml")
UNITS_HINT = ("give the PET as a DICOM series folder (SUV from its tags), or say what the file holds: "
              "--pet-units suv, or --pet-units bqml with the weight (kg) and injected dose (Bq)")


@dataclass(frozen=True)
class SUVInfo:
    """How SUVbw was obtained: ``SUVbw = Bq/mL * factor``. Times are naive (local, as DICOM stores them).

    ``factor`` is weight (g) / decayed dose (Bq), in g/Bq (1.0 for GML input); ``weight_kg`` PatientWeight;
    ``injected_dose_bq`` RadionuclideTotalDose at ``injection_time`` (RadiopharmaceuticalStartDateTime, or
    SeriesDate + RadiopharmaceuticalStartTime); ``decayed_dose_bq`` that dose at ``reference_time`` (the scan
    start the voxels are decay-corrected to), ``decay_seconds`` later (0 for ADMIN), with ``half_life_s``
    (RadionuclideHalfLife); ``units`` the DICOM Units (BQML, GML) or "BQML (given)"; ``decay_correction``
    START or ADMIN ("" when not from DICOM); ``corrected_image``: CorrectedImage lists ATTN and DECY;
    ``notes``: what was assumed or worked around, in words.
    """

    factor: float
    weight_kg: Optional[float] = None
    injected_dose_bq: Optional[float] = None
    decayed_dose_bq: Optional[float] = None
    half_life_s: Optional[float] = None
    injection_time: Optional[datetime] = None
    reference_time: Optional[datetime] = None
    decay_seconds: Optional[float] = None
    units: str = "BQML"
    decay_correction: str = ""
    corrected_image: bool = False
    series_uid: str = ""
    notes: list[str] = field(default_factory=list)


def suv_factor_from_values(weight_kg: Optional[float], injected_dose_bq: Optional[float] = None,
                           decay_seconds: Optional[float] = None, half_life_s: Optional[float] = None,
                           decayed_dose_bq: Optional[float] = None, **info) -> SUVInfo:
    """SUVbw factor (g/Bq) from a weight (kg) and either ``decayed_dose_bq`` or an injected dose (Bq) with
    the decay time from injection to the reference time (s) and the half-life (s; not needed for 0 s).

    Extra keyword arguments are stored in the :class:`SUVInfo`. Raises :class:`InputError` for missing,
    non-positive or implausible values (a weight over 500 kg is taken as grams given by mistake).
    """
    def positive(value: Optional[float], name: str, allow_zero: bool = False) -> float:
        if value is None:
            raise InputError(f"{name} is needed to convert Bq/mL to SUVbw; {UNITS_HINT}")
        value = float(value)
        if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise InputError(f"{name} must be a positive number, got {value:g}")
        return value

    if (weight := positive(weight_kg, "the patient weight (kg)")) > 500:
        raise InputError(f"a patient weight of {weight:g} kg is not plausible; give it in kg, not g")
    if decayed_dose_bq is not None:
        decayed = positive(decayed_dose_bq, "the decayed dose (Bq)")
        dose = None if injected_dose_bq is None else positive(injected_dose_bq, "the injected dose (Bq)")
    else:
        dose = positive(injected_dose_bq, "the injected dose (Bq)")
        if decay_seconds is None:
            raise InputError("the time from injection to the scan (s) is needed with an injected dose "
                             "(0 when the image is decay-corrected to the injection), or give the decayed dose")
        decay_seconds = positive(decay_seconds, "the decay time (s)", allow_zero=True)
        decayed = dose if decay_seconds == 0 else dose * 2.0 ** (
            -decay_seconds / positive(half_life_s, "the radionuclide half-life (s; 18F: 6586.2 s)"))
    if dose is not None and dose < 1e5:
        raise InputError(f"an injected dose of {dose:g} Bq is not plausible; give it in Bq, not MBq")
    return SUVInfo(factor=weight * 1000.0 / decayed, weight_kg=weight, injected_dose_bq=dose, decayed_dose_bq=decayed,
                   half_life_s=half_life_s, decay_seconds=decay_seconds, **info)


def _tag(ds, keyword: str, what: str = "the PET DICOM header"):
    """``ds.<keyword>``; :class:`InputError` naming the tag when it is absent or empty."""
    from pydicom.datadict import tag_for_keyword

    value = ds.get(keyword)
    if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0):
        tag = tag_for_keyword(keyword)
        number = f"({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else ""
        raise InputError(f"{what} lacks {keyword} {number}, needed for SUV; {UNITS_HINT}")
    return value


def _when(names: str, date: str, time: Optional[str] = None) -> datetime:
    """A DICOM DT, or DA + TM, as a naive datetime (pydicom parses them); InputError naming the tags."""
    from pydicom.valuerep import DA, DT, TM

    try:
        return DT(str(date)).replace(tzinfo=None) if time is None else datetime.combine(DA(str(date)), TM(str(time)))
    except (TypeError, ValueError):
        raise InputError(f"cannot read {names} {date!r} {time or ''} as a DICOM date and time") from None


def _earliest(headers: list, date_kw: str, time_kw: str) -> Optional[datetime]:
    """Earliest ``date_kw`` + ``time_kw`` over the headers that have both; None when none has."""
    times = [_when(f"{date_kw}/{time_kw}", ds.get(date_kw), ds.get(time_kw)) for ds in headers
             if ds.get(date_kw) and ds.get(time_kw)]
    return min(times) if times else None


def _header(path: PathLike):
    """The pydicom header of one file, without pixel data; InputError when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, InvalidDicomError) as exc:
        raise InputError(f"cannot read {path} as DICOM: {exc}") from None


def _series_headers(folder_or_files: Union[PathLike, Sequence[PathLike]], series_uid: Optional[str]):
    """``(uid, [pydicom header per file])`` of the chosen series; InputError listing several series."""
    from .io import list_dicom_series

    if isinstance(folder_or_files, (str, os.PathLike)):
        if not Path(folder_or_files).is_dir():
            raise InputError(f"{folder_or_files} is not a DICOM series folder")
        series, where = list_dicom_series(folder_or_files), str(folder_or_files)
    else:
        series = {}
        for f in map(str, folder_or_files):
            series.setdefault(str(_header(f).get("SeriesInstanceUID", "")), []).append(f)
        where = f"the {sum(len(v) for v in series.values())} files given"
    if not series:
        raise InputError(f"no DICOM series found in {where}")
    if series_uid is None and len(series) > 1:
        listing = "; ".join(f"{uid} ({_header(files[0]).get('Modality', '?')}, {len(files)} files)"
                            for uid, files in series.items())
        raise InputError(f"{where} holds {len(series)} DICOM series; choose one with --series: {listing}")
    uid = series_uid or next(iter(series))
    if uid not in series:
        raise InputError(f"series {uid} is not in {where}; found: {', '.join(series)}")
    return uid, [_header(f) for f in series[uid]]


def _check_static(uid: str, headers: list) -> None:
    """InputError for a dynamic or gated series: several files at one slice position."""
    positions = [tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 2)) for ds in headers
                 if ds.get("ImagePositionPatient")]
    if positions and len(positions) > len(set(positions)):
        frames = len(positions) // len(set(positions))
        raise InputError(f"series {uid} is a 4D PET ({frames} frames of {len(set(positions))} slices, "
                         f"SeriesType {'/'.join(headers[0].get('SeriesType', ['?']))}); export one static frame")


def suv_factor_from_dicom(folder_or_files: Union[PathLike, Sequence[PathLike]],
                          series_uid: Optional[str] = None) -> SUVInfo:
    """SUVbw factor of a PET DICOM series from its headers (module docstring: the recipe).

    Args:
        folder_or_files: a folder holding the series (several series need ``series_uid``) or its files.
        series_uid: SeriesInstanceUID to use.

    Raises :class:`InputError` for several series without a choice, a non-PET or 4D series, Units other
    than BQML/GML, DecayCorrection other than START/ADMIN, images not attenuation-corrected, and each
    missing tag (named). Notes record every assumption.
    """
    uid, headers = _series_headers(folder_or_files, series_uid)
    first = headers[0]
    if (modality := str(first.get("Modality", ""))) != "PT":
        raise InputError(f"series {uid} has Modality {modality or 'missing'}, not PT (PET); "
                         "are the PET and CT swapped?")
    _check_static(uid, headers)
    units = str(_tag(first, "Units")).upper()
    notes: list[str] = []
    corrected = [str(v).upper() for v in (first.get("CorrectedImage") or [])]
    if not corrected:
        notes.append("CorrectedImage (0028,0051) absent: attenuation and decay correction not stated")
    elif "ATTN" not in corrected:
        raise InputError(f"series {uid} is not attenuation-corrected (CorrectedImage {'/'.join(corrected)}); "
                         "SUV is not defined for it")
    common = dict(units=units, series_uid=uid, corrected_image={"ATTN", "DECY"} <= set(corrected), notes=notes)
    if units == "GML":
        if (suv_type := str(first.get("SUVType") or "BW").upper()) != "BW":
            raise InputError(f"series {uid} is in SUV of type {suv_type}, not body-weight SUV (BW)")
        notes.append("Units GML: voxels are already SUVbw; factor 1")
        return SUVInfo(factor=1.0, **common)
    if units != "BQML":
        raise InputError(f"series {uid} has Units {units}; only BQML (Bq/mL) converts to SUV from the tags"
                         + (" (CNTS are vendor counts)" if units == "CNTS" else "") + f"; {UNITS_HINT}")
    if (decay_kind := str(_tag(first, "DecayCorrection")).upper()) not in ("START", "ADMIN"):
        raise InputError(f"series {uid} has DecayCorrection {decay_kind}; only START and ADMIN are supported")
    if corrected and "DECY" not in corrected:
        notes.append(f"CorrectedImage lacks DECY although DecayCorrection is {decay_kind}; trusting the latter")
    weight = float(_tag(first, "PatientWeight"))
    radio = _tag(first, "RadiopharmaceuticalInformationSequence")[0]
    what = "the RadiopharmaceuticalInformationSequence"
    dose = float(_tag(radio, "RadionuclideTotalDose", what))
    half_life = float(_tag(radio, "RadionuclideHalfLife", what))
    common.update(decay_correction=decay_kind)
    if decay_kind == "ADMIN":
        notes.append("DecayCorrection ADMIN: voxels are decay-corrected to the injection; no decay applied")
        return suv_factor_from_values(weight, dose, 0.0, half_life, **common)
    series_dt = _earliest(headers, "SeriesDate", "SeriesTime")
    if series_dt is None:  # no file has both: name the missing tag
        _tag(first, "SeriesDate")
        _tag(first, "SeriesTime")
    reference = series_dt
    acquisition_dt = _earliest(headers, "AcquisitionDate", "AcquisitionTime")
    if acquisition_dt is not None and acquisition_dt < series_dt:
        reference = acquisition_dt
        notes.append(f"SeriesTime {series_dt:%H:%M:%S} is after the earliest AcquisitionTime "
                     f"{acquisition_dt:%H:%M:%S} (post-processed series): decay to the acquisition time")
    if radio.get("RadiopharmaceuticalStartDateTime"):
        injection = _when("RadiopharmaceuticalStartDateTime", radio.RadiopharmaceuticalStartDateTime)
        notes.append("injection time from RadiopharmaceuticalStartDateTime")
    else:
        start = _tag(radio, "RadiopharmaceuticalStartTime", what)
        injection = _when("SeriesDate/RadiopharmaceuticalStartTime", series_dt.strftime("%Y%m%d"), start)
        notes.append("injection time from RadiopharmaceuticalStartTime on the SeriesDate")
        if injection > reference and injection - timedelta(days=1) > reference - timedelta(hours=12):
            injection -= timedelta(days=1)
            notes.append("RadiopharmaceuticalStartTime is later in the day than the scan start: injection "
                         "taken on the previous day (scan after midnight)")
    if (decay := (reference - injection).total_seconds()) < 0:
        raise InputError(f"the injection ({injection}) is after the scan start ({reference}) in series {uid}")
    return suv_factor_from_values(weight, dose, decay, half_life, injection_time=injection,
                                  reference_time=reference, **common)


def _range_text(array: np.ndarray) -> str:
    values = sample(array)
    return f"{values.min():.4g}..{values.max():.4g}, 99.9th percentile {np.percentile(values, 99.9):.4g}"


def _check_varies(image: Image, name: str) -> None:
    """InputError when every voxel of ``image`` holds one value (an empty or blank volume)."""
    lo, hi = float(np.min(image.array)), float(np.max(image.array))
    if lo == hi:
        raise InputError(f"the {name} is constant (every voxel is {lo:g}): an empty or blank volume")


def _check_suv(image: Image, name: str) -> None:
    """InputError when a PET (already in SUV) is constant or does not look like SUV."""
    _check_varies(image, name)
    if looks_like_pet(image.array):
        return
    if looks_like_ct(image.array):
        raise InputError(f"the {name} looks like a CT in HU (values {_range_text(image.array)}); "
                         "are the PET and CT swapped?")
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
    Raises :class:`InputError` for unknown units (never a silent guess), 4D PET, missing tags or values,
    a constant volume, and values that do not look like SUV after conversion.
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
            raise InputError(f"{', '.join(given)} cannot be given for a DICOM folder: its tags are used")
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
    _check_suv(suv, f"PET ({source})")
    log.info("PET %s: SUVbw factor %.6e g/Bq", source, factor)
    return suv


def check_pet_ct(pet: Image, ct: Image) -> None:
    """Check a PET (SUV) / CT (HU) pair before use; raises :class:`InputError`, returns None when fine.

    Errors: a constant volume; swapped inputs (the PET looks like HU, or the CT like SUV, both said with
    "swapped"); a PET that is not SUV; volumes that do not overlap in LPS space
    (:func:`lesionseg.resample.check_overlap`). A CT that looks like neither is only warned about
    (:class:`LesionSegWarning`): it may be a crop without fat or air.
    """
    from .resample import check_overlap

    _check_varies(pet, "PET")
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
    check_overlap(pet, ct, ("PET", "CT"))


def pair_pet_ct(pet: Image, ct: Image) -> Image:
    """The CT on the PET grid (linear interpolation in LPS space, -1000 HU outside), after
    :func:`check_pet_ct`. Returns ``ct`` itself when it is already on the PET grid; keeps the CT's dtype."""
    from .resample import resample_to_grid

    check_pet_ct(pet, ct)
    if ct.same_grid(pet):
        return ct
    return resample_to_grid(ct, pet, "linear", default=-1000.0)
