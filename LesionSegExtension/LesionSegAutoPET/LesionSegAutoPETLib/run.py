"""One run of the panel (needs Slicer; imported by the logic): check the inputs, write them to a temporary
folder and start the backend (:func:`start`); the logic turns the ended run into scene content (:func:`load_results`
through :class:`LesionSegLib.jobs.BackgroundJobLogic`).

The temporary folder holds ``pet.nrrd`` (a PET file, in the units the user stated) or ``pet_dicom/`` (the PET's
own DICOM files: the backend converts them to SUV from the tags), ``ct.nrrd`` (none in PET-only mode) and
``out/``. It is removed when
the run fails or is cancelled; on success only the inputs are removed and ``out/`` stays for the user (the
previous run's folder is freed: :func:`LesionSegLib.jobs.finish_run`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from LesionSegLib import wholevolume

from . import autopet, inputs

ValueRange = Callable[[Any], "tuple[float, float]"]


class CachedValueRange:
    """:func:`inputs.value_range` of the last volume asked for, recomputed only when its voxels change (the panel
    checks the PET on every parameter change)."""

    def __init__(self) -> None:
        self._key: Optional[tuple] = None
        self._range = (0.0, 0.0)

    def __call__(self, volumeNode: Any) -> tuple[float, float]:
        imageData = volumeNode.GetImageData()
        key = (volumeNode.GetID(), imageData.GetMTime()) if imageData is not None else None
        if key is None or key != self._key:
            self._range, self._key = inputs.value_range(volumeNode), key
        return self._range


def check_inputs(petNode: Any, ctNode: Any, petUnits: str = "suv", weightKg: Optional[float] = None,
                 doseMBq: Optional[float] = None, minutesToScan: float = 0.0,
                 value_range: ValueRange = inputs.value_range) -> Optional[autopet.PetUnits]:
    """The units to pass for a PET file (``None`` for a DICOM PET: its tags are used). ``ctNode`` None is PET-only
    mode (:data:`autopet.PET_ONLY_NOTICE`).

    Args:
        value_range: ``(minimum, maximum)`` of a volume's voxels (the logic passes a cached one).

    Raises:
        ValueError: no PET or the same volume twice, swapped DICOM modalities, incomplete Bq/mL values, or PET
            values that do not fit the units ("this does not look like PET in SUV").
    """
    problem = autopet.input_problem(petNode is not None, ctNode is not None, petNode is ctNode)
    if problem:
        raise ValueError(problem)
    if inputs.dicom_instance_uids(petNode):
        ct_modality = inputs.modality(ctNode) if ctNode is not None else ""
        units, problem = None, autopet.modality_problem(inputs.modality(petNode), ct_modality)
    else:
        units = autopet.PetUnits(autopet.unit_value(petUnits), weightKg, doseMBq, minutesToScan)
        units.check()
        problem = autopet.value_range_problem(*value_range(petNode), units.units)
    if problem:
        raise ValueError(problem)
    return units


def start(petNode: Any, ctNode: Any, segmentationNode: Any, units: Optional[autopet.PetUnits], perLesion: bool,
          weights: Optional[Path], device: str, onProgress: Any = None, onLog: Any = None,
          allowPetOnly: bool = False) -> wholevolume.Job:
    """Write the inputs and start ``lesionseg predict autopet-l2snet`` in the background (options ``perLesion``,
    ``petFromDicom``, ``petOnly``). ``ctNode`` None: PET-only mode (no CT written); ``allowPetOnly``:
    ``--allow-pet-only``.

    Raises:
        lesionseg.InputError: volumes/segmentation under different transforms, a volume without voxels, PET
            DICOM files no longer available. Nothing is left behind on failure.
    """
    from LesionSegLib import labelmaps

    def prepare(folder: Path) -> list[list[str]]:
        pet = (labelmaps.export_volume(petNode, folder / "pet.nrrd") if units is not None
               else inputs.export_pet_dicom(petNode, folder / "pet_dicom"))
        ct = labelmaps.export_volume(ctNode, folder / "ct.nrrd") if ctNode is not None else None
        return [autopet.predict_arguments(pet, ct, folder / "out", units, weights, device, bool(allowPetOnly))]

    volumes = {"pet": petNode, **({"ct": ctNode} if ctNode is not None else {})}
    return wholevolume.start_job(autopet.OWNER, volumes, segmentationNode, prepare, autopet.OUTPUT_FILES,
                                 onProgress=onProgress, onLog=onLog, perLesion=bool(perLesion),
                                 petFromDicom=units is None, petOnly=ctNode is None)


def load_results(job: wholevolume.Job) -> dict:
    """A run that ended well -> segments (one per lesion, or one ``lesions``) and the table node
    (:func:`LesionSegLib.wholevolume.load_lesions`, its result dict) plus ``"mip"`` (the picture, or None) and
    ``"petOnly"`` (the run had no CT: :data:`autopet.PET_ONLY_NOTICE`). A label
    the backend wrote for a DICOM PET is resampled onto the PET volume's grid when it lies on another."""
    found = wholevolume.load_lesions(job, autopet.OWNER, autopet.METHOD, autopet.CONNECTIVITY,
                                     autopet.segmentation_name(job.volumeNode.GetName()), job.options["perLesion"],
                                     allowResample=job.options["petFromDicom"])
    mip = job.outputs["mip"]
    return {**found, "mip": mip if mip.is_file() else None, "petOnly": bool(job.options.get("petOnly", False))}
