"""Pure parts of the PET/CT panel: options -> ``lesionseg predict autopet-l2snet`` arguments, the SUV check.

No ``slicer`` import and no backend import at module level (the panel imports this before the backend may be
installed); tested offline. The backend command (issue #5)::

    lesionseg --progress lines predict autopet-l2snet PET [CT] -o OUT/seg.nii.gz --table OUT/lesions.csv
        --mip OUT/mip.png [--pet-units suv|bqml --weight-kg W --dose-bq D --decay-s T --half-life-s H]
        [--allow-pet-only] [--weights DIR] --device auto|cpu|cuda

Without a CT the backend runs in PET-only mode (:data:`PET_ONLY_NOTICE`), which only a model trained for it accepts;
``--allow-pet-only`` lets it drop a CT that does not overlap the PET.

PET is a DICOM folder (SUVbw from its tags; no unit options) or a file whose units the user states: ``suv``
(already converted) or ``bqml`` with the patient weight and the injected dose (the backend refuses Bq/mL
without them). Outputs lie on the PET grid: ``seg.nii.gz`` (uint8 0/1), ``lesions.csv`` (the shared lesion table,
``LesionSegLib.lesiontable``: mL, SUV, TLG), ``mip.png``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from LesionSegLib import wholevolume

METHOD = "autopet-l2snet"
OWNER = "LesionSegAutoPET"
"""Owner tag of the segments this panel writes (only these are replaced by a new run)."""

DICOM_INSTANCES_ATTRIBUTE = "DICOM.instanceUIDs"
"""Node attribute Slicer's DICOM loader sets: the SOP Instance UIDs of the files, space-separated."""

UNIT_CHOICES = {"SUV (already converted)": "suv", "Bq/mL": "bqml"}
"""What the panel's units combo shows -> the backend's ``--pet-units`` value (file PET only)."""

F18_HALF_LIFE_S = 6586.2
"""Half-life of fluorine-18 (s), used for Bq/mL input with a delay between injection and scan."""

SUV_MIN_MAXIMUM = 0.5
"""A PET in SUV has a maximum far above this (blood pool ~1.5, brain and bladder higher)."""
NEGATIVE_LIMIT = -0.5
NEGATIVE_FRACTION = 0.05
"""A PET's minimum is "negative" when below both :data:`NEGATIVE_LIMIT` and ``-NEGATIVE_FRACTION * maximum``:
reconstructions dip only slightly below 0 (faint noise, in SUV or Bq/mL), a CT reaches -1000 HU with a maximum
of a few thousand."""
SUV_MAX_MAXIMUM = 1000.0
"""A maximum above this is not SUV (Bq/mL PETs reach 1e3..1e6)."""
BQML_MIN_MAXIMUM = 100.0
"""A Bq/mL PET of an FDG scan reaches thousands; a maximum below this is SUV (or not a PET)."""

OUTPUT_FILES = {"label": "seg.nii.gz", "table": "lesions.csv", "mip": "mip.png"}
"""The backend's outputs, written into the run's ``out`` folder."""
CONNECTIVITY = 18
PET_ONLY_NOTICE = ("No CT was given: PET-only mode (the lesions are found from the PET alone; needs a model trained "
                   "for PET-only input)")
"""What the panel's status says when it runs without a CT (the backend logs the same as a warning)."""
"""Neighbours that join lesion voxels into one lesion of the backend's table (the autoPET evaluation's choice)."""


def unit_value(choice: str) -> str:
    """``"suv"`` or ``"bqml"`` for a combo text (:data:`UNIT_CHOICES`) or the value itself.

    Raises:
        ValueError: anything else.
    """
    if choice in UNIT_CHOICES.values():
        return choice
    if choice in UNIT_CHOICES:
        return UNIT_CHOICES[choice]
    raise ValueError(f"PET units must be one of {', '.join(UNIT_CHOICES)} (or suv / bqml), not {choice!r}")


@dataclass(frozen=True)
class PetUnits:
    """What a PET *file* holds (a DICOM PET needs none of this: its tags say it).

    Attributes:
        units: ``"suv"`` (already SUVbw, g/mL) or ``"bqml"`` (activity concentration, Bq/mL).
        weight_kg: patient weight (kg), needed for ``bqml``.
        dose_mbq: injected activity at injection time (MBq), needed for ``bqml``.
        minutes_to_scan: minutes from injection to the scan start the voxels are decay-corrected to
            (0 when they are decay-corrected to the injection time).
        half_life_s: radionuclide half-life (s); 18F by default.
    """

    units: str = "suv"
    weight_kg: Optional[float] = None
    dose_mbq: Optional[float] = None
    minutes_to_scan: float = 0.0
    half_life_s: float = F18_HALF_LIFE_S

    def check(self) -> None:
        """Raise ``ValueError`` with what to fill in when the values cannot give SUV."""
        unit_value(self.units)
        if self.units != "bqml":
            return
        missing = [name for name, value in (("the patient weight (kg)", self.weight_kg),
                                            ("the injected dose (MBq)", self.dose_mbq))
                   if not _positive(value)]
        if missing:
            raise ValueError(f"a PET in Bq/mL needs {' and '.join(missing)} to be converted to SUV; fill them "
                             "in, or load the PET from DICOM (its tags hold them)")
        if not _finite(self.minutes_to_scan) or self.minutes_to_scan < 0:
            raise ValueError(f"the minutes from injection to scan must be 0 or more, got {self.minutes_to_scan!r}")
        if not _positive(self.half_life_s):
            raise ValueError(f"the half-life must be a positive number of seconds, got {self.half_life_s!r}")

    def arguments(self) -> list[str]:
        """``--pet-units`` and, for Bq/mL, ``--weight-kg --dose-bq --decay-s --half-life-s`` (checked first)."""
        self.check()
        units = unit_value(self.units)
        if units == "suv":
            return ["--pet-units", "suv"]
        return ["--pet-units", "bqml", "--weight-kg", _number(self.weight_kg), "--dose-bq",
                _number(self.dose_mbq * 1e6), "--decay-s", _number(self.minutes_to_scan * 60.0),
                "--half-life-s", _number(self.half_life_s)]


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _finite(value) and value > 0


def _number(value: float) -> str:
    return repr(float(value))


def value_range_problem(minimum: float, maximum: float, units: str) -> Optional[str]:
    """Why the PET's voxel values do not fit the stated units (``None`` when they do).

    Args:
        minimum, maximum: the voxel value range of the PET volume.
        units: ``"suv"`` or ``"bqml"`` (or a :data:`UNIT_CHOICES` text).
    """
    units = unit_value(units)
    what = "PET in SUV" if units == "suv" else "PET in Bq/mL"
    span = f"values {minimum:.4g}..{maximum:.4g}"
    if not (_finite(minimum) and _finite(maximum)):
        return f"this does not look like {what}: {span} (not finite)"
    if minimum < NEGATIVE_LIMIT and minimum < -NEGATIVE_FRACTION * maximum:
        return f"this does not look like {what}: {span}, negative values (a CT in HU?); choose the PET volume"
    if units == "suv":
        if maximum < SUV_MIN_MAXIMUM:
            return f"this does not look like {what}: {span} (the maximum of a PET in SUV is far above 0.5)"
        if maximum > SUV_MAX_MAXIMUM:
            return (f"this does not look like {what}: {span} look like Bq/mL; choose Bq/mL and give the "
                    "weight and dose, or load the PET from DICOM")
    elif maximum < BQML_MIN_MAXIMUM:
        return (f"this does not look like {what}: {span} (an FDG PET in Bq/mL reaches thousands); "
                "choose SUV if it is already converted")
    return None


def modality_problem(pet_modality: str, ct_modality: str) -> Optional[str]:
    """Why the DICOM modalities of the chosen volumes look swapped or wrong (``None`` when fine or unknown)."""
    if pet_modality == "CT":
        return "the volume chosen as PET is a CT series (DICOM Modality CT); are PET and CT swapped?"
    if ct_modality in ("PT", "NM"):
        return f"the volume chosen as CT is a {ct_modality} series; are PET and CT swapped?"
    if pet_modality and pet_modality not in ("PT", "NM"):
        return f"the volume chosen as PET has DICOM Modality {pet_modality}, not PT"
    return None


@dataclass(frozen=True)
class UnitsPanelState:
    """The units widgets: combo enabled, weight/dose/minutes enabled, the PET source line."""

    units_enabled: bool
    bqml_enabled: bool
    source: str


def units_panel_state(pet_selected: bool, from_dicom: bool, choice: str) -> UnitsPanelState:
    """Units can be chosen only for a PET file; weight, dose and minutes only for Bq/mL."""
    if not pet_selected:
        return UnitsPanelState(False, False, "")
    if from_dicom:
        return UnitsPanelState(False, False, "DICOM: converted to SUV from its tags (no units to give)")
    bqml = choice in (*UNIT_CHOICES, *UNIT_CHOICES.values()) and unit_value(choice) == "bqml"
    return UnitsPanelState(True, bqml, "File: say what it holds")


def input_problem(pet: bool, ct: bool, same: bool = False) -> Optional[str]:
    """Why the Segment button is disabled (``None`` when a PET is chosen, and a CT, if any, differs from it).
    No CT is PET-only mode (:func:`input_notice`)."""
    if not pet:
        return "Select the PET volume."
    if ct and same:
        return "The same volume is chosen as PET and as CT."
    return None


def input_notice(pet: bool, ct: bool) -> str:
    """What the panel says about fine inputs: :data:`PET_ONLY_NOTICE` for a PET without CT, else ``""``."""
    return PET_ONLY_NOTICE if pet and not ct else ""


def segmentation_name(pet_name: str) -> str:
    """Name of a new segmentation: ``"<PET volume> lesions"``."""
    return f"{pet_name} lesions".strip()


def predict_arguments(pet: Path, ct: Optional[Path], output_dir: Path, units: Optional[PetUnits] = None,
                      weights: Optional[Path] = None, device: str = "auto", allow_pet_only: bool = False) -> list[str]:
    """``lesionseg predict autopet-l2snet`` arguments (without the program and ``--progress``).

    Args:
        pet: a PET DICOM folder (``units`` must be ``None``) or a PET file (``units`` required).
        ct: the CT file, or ``None`` for PET-only mode.
        output_dir: an existing folder for the outputs (:data:`OUTPUT_FILES`).
        weights: a model folder, or ``None`` / ``""`` for the installed one.
        allow_pet_only: ``--allow-pet-only``: a CT that does not overlap the PET is dropped instead of refused.

    Raises:
        ValueError: units missing for a file / given for a DICOM folder, incomplete Bq/mL values, a bad
            device, or a weights folder that does not exist.
    """
    wholevolume.check_options(weights, device)
    dicom = Path(pet).is_dir()
    if dicom and units is not None:
        raise ValueError("a PET DICOM folder is converted from its tags; no units can be given")
    if not dicom and units is None:
        raise ValueError("say what the PET file holds: SUV, or Bq/mL with the weight and dose")
    out = wholevolume.output_paths(output_dir, OUTPUT_FILES)
    args = ["predict", METHOD, str(pet), *([str(ct)] if ct is not None else []), "-o", str(out["label"]),
            "--table", str(out["table"]), "--mip", str(out["mip"]), "--device", device]
    if units is not None:
        args += units.arguments()
    if allow_pet_only:
        args.append("--allow-pet-only")
    if weights is not None and str(weights):
        args += ["--weights", str(weights)]
    return args
