"""Which CT goes with a PET: the volume of the same study (pure Python; the scene side is in ``inputs``).

Each scalar volume of the scene is described by a :class:`VolumeInfo` -- node ID, a *study key* and a
modality -- and :func:`pick_ct` chooses among them. The study key is the DICOM StudyInstanceUID when known
(``"dicom:<uid>"``: the subject-hierarchy study above the volume, or the DICOM database's record of the
volume's files), else the subject-hierarchy folder holding the volume (``"item:<id>"``); a volume directly
under the scene has no study and is never paired. The modality is DICOM's (``CT``, ``PT``, ...) or, for
volumes loaded from files, a guess from the value range (:func:`guess_modality`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

PET_MODALITIES = ("PT", "NM")
"""DICOM modalities that are never taken as the CT."""

CT_MINIMUM_HU = -500.0
"""A volume whose minimum is at or below this holds air or lung in HU: a CT."""


@dataclass(frozen=True)
class VolumeInfo:
    """One scalar volume as the pairing sees it.

    Attributes:
        node_id: the MRML node ID.
        study: the study key (see the module docstring); ``""`` when the volume is in no study.
        modality: DICOM Modality, a guess (``"CT"``), or ``""`` when unknown.
    """

    node_id: str
    study: str
    modality: str = ""


@dataclass(frozen=True)
class Pairing:
    """The result of :func:`pick_ct`: the CT's node ID (``None``: none chosen) and why, for the panel."""

    ct_id: Optional[str]
    reason: str


def study_key(study_uid: str = "", folder_item: Optional[int] = None, scene_item: Optional[int] = None) -> str:
    """The study key of a volume: ``"dicom:<StudyInstanceUID>"`` when known, else ``"item:<folder>"`` for the
    subject-hierarchy folder holding it; ``""`` when it sits directly under the scene (or nothing is known)."""
    if study_uid:
        return f"dicom:{study_uid}"
    if folder_item is not None and folder_item != scene_item and folder_item > 0:
        return f"item:{folder_item}"
    return ""


def guess_modality(minimum: float, dicom_modality: str = "") -> str:
    """DICOM's modality when known; else ``"CT"`` for a value range reaching air/lung HU; else ``""``."""
    if dicom_modality:
        return dicom_modality.strip().upper()
    return "CT" if minimum <= CT_MINIMUM_HU else ""


def pick_ct(pet_id: str, volumes: Sequence[VolumeInfo]) -> Pairing:
    """The CT of the PET's study, when there is exactly one.

    Candidates are the other volumes with the PET's study key that are not PET/NM. One of modality CT is
    chosen; several CTs choose none (the user picks); without a CT, a single candidate of unknown modality
    is chosen.

    Args:
        pet_id: node ID of the PET (must be among ``volumes`` to be paired).
        volumes: every scalar volume of the scene, in scene order.
    """
    pet = next((v for v in volumes if v.node_id == pet_id), None)
    if pet is None or not pet.study:
        return Pairing(None, "the PET is not in a study (load PET and CT from one DICOM study, or put them in "
                             "one subject-hierarchy folder); choose the CT")
    candidates = [v for v in volumes if v.node_id != pet_id and v.study == pet.study
                  and v.modality not in PET_MODALITIES]
    cts = [v for v in candidates if v.modality == "CT"]
    if len(cts) == 1:
        return Pairing(cts[0].node_id, "CT paired automatically: same study as the PET")
    if len(cts) > 1:
        return Pairing(None, f"{len(cts)} CT volumes in the PET's study; choose one")
    unknown = [v for v in candidates if not v.modality]
    if len(candidates) == 1 and unknown:
        return Pairing(unknown[0].node_id, "CT paired automatically: the only other volume of the PET's study")
    return Pairing(None, "no CT volume found in the PET's study; choose the CT")
