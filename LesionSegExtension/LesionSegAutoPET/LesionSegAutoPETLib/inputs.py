"""The scene side of the panel's inputs (needs Slicer; imported lazily): which CT pairs with a PET, whether
the PET came from DICOM (then its files are handed to the backend), its value range.

DICOM facts come from where Slicer's DICOM loader leaves them: the node attribute ``DICOM.instanceUIDs``
(SOP Instance UIDs, space-separated), the subject hierarchy (series item attribute ``DICOM.Modality``, or
``DICOM.SeriesModality`` in older Slicer versions; the study item's ``DICOM`` UID = StudyInstanceUID) and, as a
fallback, ``slicer.dicomDatabase`` (tags 0020,000D StudyInstanceUID and 0008,0060 Modality of the first file).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from . import pairing
from .autopet import DICOM_INSTANCES_ATTRIBUTE

logger = logging.getLogger(__name__)

DICOM_UID_NAME = "DICOM"
"""Subject-hierarchy UID name of DICOM items (vtkMRMLSubjectHierarchyConstants::GetDICOMUIDName)."""
MODALITY_ATTRIBUTES = ("DICOM.Modality", "DICOM.SeriesModality")
"""Series item attribute of vtkMRMLSubjectHierarchyConstants::GetDICOMSeriesModalityAttributeName: the first in
current Slicer, the second in older versions (the constants class is not in the API dump the tests check)."""
STUDY_UID_TAG, MODALITY_TAG = "0020,000D", "0008,0060"


def _input_error(message: str) -> Exception:
    """``lesionseg.InputError(message)``; the backend is imported only here (the panel imports this module
    before the backend may be installed)."""
    from lesionseg import InputError

    return InputError(message)


def dicom_instance_uids(volumeNode: Any) -> list[str]:
    """The SOP Instance UIDs of the files the volume was loaded from (``[]``: not loaded from DICOM)."""
    return (volumeNode.GetAttribute(DICOM_INSTANCES_ATTRIBUTE) or "").split()


def _database() -> Any:
    import slicer

    return getattr(slicer, "dicomDatabase", None)


def _first_file(volumeNode: Any) -> str:
    database, uids = _database(), dicom_instance_uids(volumeNode)
    return database.fileForInstance(uids[0]) if database is not None and uids else ""


def _item_modality(shNode: Any, item: int) -> str:
    """The modality attribute of a subject-hierarchy item (``""`` when none or for the invalid item)."""
    if item == shNode.GetInvalidItemID():
        return ""
    values = [shNode.GetItemAttribute(item, name) for name in MODALITY_ATTRIBUTES]
    return next((value for value in values if value), "")


def volume_info(volumeNode: Any, shNode: Any) -> pairing.VolumeInfo:
    """How :func:`pairing.pick_ct` sees a volume: its study key and (DICOM or guessed) modality."""
    item = shNode.GetItemByDataNode(volumeNode)
    parent = shNode.GetItemParent(item) if item != shNode.GetInvalidItemID() else None
    study_uid = shNode.GetItemUID(parent, DICOM_UID_NAME) if parent else ""
    modality = _item_modality(shNode, item)
    first = _first_file(volumeNode) if not (study_uid and modality) else ""
    if first:
        study_uid = study_uid or _database().fileValue(first, STUDY_UID_TAG)
        modality = modality or _database().fileValue(first, MODALITY_TAG)
    minimum = 0.0
    if not modality and volumeNode.GetImageData() is not None:
        minimum = float(volumeNode.GetImageData().GetScalarRange()[0])
    return pairing.VolumeInfo(volumeNode.GetID(), pairing.study_key(study_uid, parent, shNode.GetSceneItemID()),
                              pairing.guess_modality(minimum, modality))


def find_paired_ct(petNode: Any) -> tuple[Any, str]:
    """``(CT node or None, reason)``: the CT of the PET's study (see :func:`pairing.pick_ct`)."""
    import slicer

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    volumes = [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
               if node.GetClassName() == "vtkMRMLScalarVolumeNode"]
    choice = pairing.pick_ct(petNode.GetID(), [volume_info(node, shNode) for node in volumes])
    return (slicer.mrmlScene.GetNodeByID(choice.ct_id) if choice.ct_id else None), choice.reason


def modality(volumeNode: Any) -> str:
    """The DICOM Modality of a volume (``""`` when it was not loaded from DICOM)."""
    import slicer

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    if not dicom_instance_uids(volumeNode):
        return _item_modality(shNode, shNode.GetItemByDataNode(volumeNode))
    return volume_info(volumeNode, shNode).modality


def value_range(volumeNode: Any) -> tuple[float, float]:
    """``(minimum, maximum)`` voxel value of a scalar volume.

    Raises:
        InputError: the volume holds no voxels.
    """
    import slicer

    if volumeNode is None or volumeNode.GetImageData() is None:
        raise _input_error("the volume holds no voxels")
    array = slicer.util.arrayFromVolume(volumeNode)
    return float(array.min()), float(array.max())


def copy_dicom_files(uids: Sequence[str], file_for_instance: Callable[[str], str], folder: Path) -> Path:
    """Copy the files of ``uids`` (found by ``file_for_instance``) into the new folder ``folder``.

    Raises:
        InputError: no UIDs, or files no longer in the DICOM database / on disk (nothing is left behind).
    """
    if not uids:
        raise _input_error("the PET was not loaded from DICOM")
    files = [file_for_instance(uid) or "" for uid in uids]
    missing = sum(1 for f in files if not f or not Path(f).is_file())
    if missing:
        raise _input_error(f"{missing} of {len(uids)} DICOM files of the PET are no longer in Slicer's DICOM database "
                         "or on disk; re-import the PET series, or load it from a file and state its units")
    folder = Path(folder)
    folder.mkdir()
    try:
        for number, source in enumerate(files):
            shutil.copyfile(source, folder / f"{number:05d}.dcm")
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    logger.info("copied %d PET DICOM files to %s", len(files), folder)
    return folder


def export_pet_dicom(petNode: Any, folder: Path) -> Path:
    """Copy the PET's DICOM files into ``folder`` (new) for the backend to convert to SUV from the tags."""
    database = _database()
    if database is None:
        raise _input_error("Slicer's DICOM database is not open; open the DICOM module once, or load the PET from "
                         "a file and state its units")
    return copy_dicom_files(dicom_instance_uids(petNode), database.fileForInstance, folder)
