"""SUVbw of a PET: from a DICOM series' tags, or from values the user gives (weight, dose, times).

SUVbw follows the QIBA FDG-PET/CT profile's vendor-neutral recipe (the "PET SUV" white paper)::

    SUVbw [g/mL] = activity concentration [Bq/mL] * factor,   factor = body weight [g] / decayed dose [Bq]
    decayed dose = RadionuclideTotalDose * 2 ** (-(scan start - injection) / RadionuclideHalfLife)

The scan start is the earliest SeriesDate/SeriesTime, or the earliest acquisition date/time when that is
earlier (post-processed series of some vendors); ``DecayCorrection ADMIN`` needs no decay. Units BQML
convert, GML (already SUVbw) pass with factor 1, others are refused. The tags SUV depends on must agree
across the files of the series (SeriesTime and AcquisitionTime may differ per slice: the earliest is used).
Headers are read with pydicom (``stop_before_pixels``). No torch, no SimpleITK here.
"""
from __future__ import annotations

import logging
import os
from collections import abc
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
UNITS = ("auto", "suv", "bqml")
UNITS_HINT = ("give the PET as a DICOM series folder (SUV from its tags), or say what the file holds: "
              "--pet-units suv, or --pet-units bqml with the weight (kg) and injected dose (Bq)")
MAX_MIDNIGHT_UPTAKE = timedelta(hours=6)
"""An injection time of day later than the scan start is taken as the previous day (a scan after midnight)
only when that gives an uptake time up to this long; otherwise the times are refused."""
MIN_MAX_UPTAKE = timedelta(hours=12)
"""Uptake times (injection to scan start) over this, and over 5 half-lives, are refused as a likely wrong
date: 12 h for 18F, 68Ga, 11C; 5 half-lives (16 days) lets 89Zr scans days after injection through."""
RADIO_KEYWORDS = ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
                  "RadiopharmaceuticalStartDateTime")
"""Keywords read from the first item of RadiopharmaceuticalInformationSequence."""
TAG_UNITS = {"PatientWeight": " kg", "RadionuclideTotalDose": " Bq", "RadionuclideHalfLife": " s"}


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
    def positive(value: Optional[float], name: str, allow_zero: bool = False, flag: str = "") -> float:
        if value is None:
            raise InputError(f"{name} is needed to convert Bq/mL to SUVbw: give {flag}" if flag else
                             f"{name} is needed to convert Bq/mL to SUVbw; {UNITS_HINT}")
        value = float(value)
        if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise InputError(f"{name} must be a positive number, got {value:g}")
        return value

    if (weight := positive(weight_kg, "the patient weight (kg)", flag="--weight-kg (weight_kg)")) > 500:
        raise InputError(f"a patient weight of {weight:g} kg is not plausible; give it in kg, not g")
    if decayed_dose_bq is not None:
        decayed = positive(decayed_dose_bq, "the decayed dose (Bq)")
        dose = None if injected_dose_bq is None else positive(injected_dose_bq, "the injected dose (Bq)")
    else:
        dose = positive(injected_dose_bq, "the injected dose (Bq)", flag="--dose-bq (dose_bq) with --decay-s and "
                        "--half-life-s, or --decayed-dose-bq (decayed_dose_bq)")
        if decay_seconds is None:
            raise InputError("the time from injection to the scan (s) is needed with an injected dose: give --decay-s "
                             "(decay_s; 0 when the image is decay-corrected to the injection), or give the decayed "
                             "dose with --decayed-dose-bq (decayed_dose_bq) instead")
        decay_seconds = positive(decay_seconds, "the decay time (s)", allow_zero=True)
        decayed = dose if decay_seconds == 0 else dose * 2.0 ** (
            -decay_seconds / positive(half_life_s, "the radionuclide half-life (s; 18F: 6586.2 s)",
                                      flag="--half-life-s (half_life_s)"))
    if dose is not None and dose < 1e5:
        raise InputError(f"an injected dose of {dose:g} Bq is not plausible; give it in Bq, not MBq")
    return SUVInfo(factor=weight * 1000.0 / decayed, weight_kg=weight, injected_dose_bq=dose, decayed_dose_bq=decayed,
                   half_life_s=half_life_s, decay_seconds=decay_seconds, **info)


def _number(keyword: str) -> str:
    """The DICOM tag number of ``keyword`` as ``(gggg,eeee)``; "" for an unknown keyword."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else ""


def _tag(ds, keyword: str, what: str = "the PET DICOM header"):
    """``ds.<keyword>``; :class:`InputError` naming the tag when it is absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0):
        raise InputError(f"{what} lacks {keyword} {_number(keyword)}, needed for SUV; {UNITS_HINT}")
    return value


def _listed(value) -> list:
    """A DICOM value as a list: a multi-valued one as is, one value as ``[value]``, absent as ``[]``."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, abc.Sequence) and not isinstance(value, (str, bytes)) else [value]


def _comparable(keyword: str, value) -> tuple:
    """``(key, text)``: ``value`` of ``keyword`` as it compares by meaning, and as said in messages. Numbers
    to 6 significant digits, times as times (103500.00 == 103500), CorrectedImage as the ATTN/DECY it
    states (other corrections do not change SUV), other text stripped and upper-cased."""
    from pydicom.valuerep import TM

    if not (items := _listed(value)):
        return None, "absent"
    try:
        if keyword in TAG_UNITS:
            return float(f"{float(value):.6g}"), f"{float(value):.6g}{TAG_UNITS[keyword]}"
        if keyword == "RadiopharmaceuticalStartTime":
            return TM(str(value).strip()), TM(str(value).strip()).isoformat()
    except (TypeError, ValueError):
        pass
    if keyword == "CorrectedImage":
        stated = tuple(sorted({"ATTN", "DECY"} & {str(v).strip().upper() for v in items}))
        return stated, "/".join(stated) or "neither ATTN nor DECY"
    return str(value).strip().upper(), str(value).strip().upper()


def _check_agree(uid: str, headers: list, keywords: Sequence[str]) -> None:
    """InputError naming the first of ``keywords`` (those in :data:`RADIO_KEYWORDS` read from the
    RadiopharmaceuticalInformationSequence) whose value differs between the files of series ``uid``, with
    each value and how many slices carry it."""
    for keyword in keywords:
        counts: dict = {}
        for ds in headers:
            holder = ds if keyword not in RADIO_KEYWORDS else (
                ds.get("RadiopharmaceuticalInformationSequence") or [{}])[0]
            key, text = _comparable(keyword, holder.get(keyword))
            counts.setdefault(key, [text, 0])[1] += 1
        if len(counts) > 1:
            ranked = sorted(counts.values(), key=lambda text_count: -text_count[1])
            listing = ", ".join(f"{text} on {n}{' slices' if i == 0 else ''}" for i, (text, n) in enumerate(ranked))
            raise InputError(f"{keyword} {_number(keyword)} differs within series {uid}: {listing}; "
                             "SUV would be wrong on part of the volume; fix the tags")


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
    from .dicom import list_dicom_series

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
    than BQML/GML, DecayCorrection other than START/ADMIN, images not attenuation-corrected, each
    missing tag (named), an SUV tag whose value differs between files (named, with the values and their
    slice counts), and implausible times: an injection time of day after the scan start that is not a
    scan after midnight (:data:`MAX_MIDNIGHT_UPTAKE`), an injection after the scan start, an uptake time
    over :data:`MIN_MAX_UPTAKE` and 5 half-lives. Notes record every assumption.
    """
    uid, headers = _series_headers(folder_or_files, series_uid)
    first = headers[0]
    if (modality := str(first.get("Modality", ""))) != "PT":
        raise InputError(f"series {uid} has Modality {modality or 'missing'}, not PT (PET); "
                         "are the PET and CT swapped?")
    _check_static(uid, headers)
    _check_agree(uid, headers, ("Units", "CorrectedImage"))
    units = str(_tag(first, "Units")).upper()
    notes: list[str] = []
    corrected = [str(v).upper() for v in _listed(first.get("CorrectedImage"))]
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
    _check_agree(uid, headers, ("DecayCorrection", "PatientWeight", "RadionuclideTotalDose", "RadionuclideHalfLife"))
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
    _check_agree(uid, headers, ("SeriesDate", "RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime"))
    series_dt = _earliest(headers, "SeriesDate", "SeriesTime")
    if series_dt is None:  # no file has both: name the missing tag
        _tag(first, "SeriesDate")
        _tag(first, "SeriesTime")
    reference, reference_names = series_dt, "SeriesDate/SeriesTime"
    acquisition_dt = _earliest(headers, "AcquisitionDate", "AcquisitionTime")
    if acquisition_dt is not None and acquisition_dt < series_dt:
        reference, reference_names = acquisition_dt, "AcquisitionDate/AcquisitionTime"
        notes.append(f"SeriesTime {series_dt:%H:%M:%S} is after the earliest AcquisitionTime "
                     f"{acquisition_dt:%H:%M:%S} (post-processed series): decay to the acquisition time")
    if radio.get("RadiopharmaceuticalStartDateTime"):
        injection = _when("RadiopharmaceuticalStartDateTime", radio.RadiopharmaceuticalStartDateTime)
        injection_names = "RadiopharmaceuticalStartDateTime"
        notes.append("injection time from RadiopharmaceuticalStartDateTime")
    else:
        start = _tag(radio, "RadiopharmaceuticalStartTime", what)
        injection = _when("SeriesDate/RadiopharmaceuticalStartTime", series_dt.strftime("%Y%m%d"), start)
        injection_names = "SeriesDate/RadiopharmaceuticalStartTime"
        notes.append("injection time from RadiopharmaceuticalStartTime on the SeriesDate")
        if injection > reference:
            if reference - (injection - timedelta(days=1)) > MAX_MIDNIGHT_UPTAKE:
                raise InputError(f"the injection time {injection:%H:%M:%S} (RadiopharmaceuticalStartTime) is after "
                                 f"the scan start {reference:%H:%M:%S} ({reference_names.split('/')[1]}) in series "
                                 f"{uid}; check the times")
            injection -= timedelta(days=1)
            notes.append("RadiopharmaceuticalStartTime is later in the day than the scan start: injection "
                         "taken on the previous day (scan after midnight)")
    _check_uptake(uid, injection, injection_names, reference, reference_names, half_life)
    return suv_factor_from_values(weight, dose, (reference - injection).total_seconds(), half_life,
                                  injection_time=injection, reference_time=reference, **common)


def _check_uptake(uid: str, injection: datetime, injection_names: str, reference: datetime,
                  reference_names: str, half_life_s: float) -> None:
    """InputError when the injection is after the scan start, or the uptake time between them is longer
    than :data:`MIN_MAX_UPTAKE` and 5 half-lives (s): a likely wrong date. Names the times and their tags."""
    times = (f"the injection {injection:%Y-%m-%d %H:%M:%S} ({injection_names}) and the scan start "
             f"{reference:%Y-%m-%d %H:%M:%S} ({reference_names}) in series {uid}")
    if injection > reference:
        raise InputError(f"the injection is after the scan start: {times}; check the dates and times")
    limit = max(MIN_MAX_UPTAKE, timedelta(seconds=5 * half_life_s)) if half_life_s > 0 else MIN_MAX_UPTAKE
    if (uptake := reference - injection) > limit:
        raise InputError(f"an uptake time of {uptake.total_seconds() / 3600:.1f} h between {times} is not plausible "
                         f"(over {limit.total_seconds() / 3600:g} h); check the dates and times")
