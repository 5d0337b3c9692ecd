"""One run of the panel (needs Slicer; imported by the logic): check the inputs, write them to a temporary
folder and start the backend (:func:`start`); the logic turns the ended run into scene content
(``loading.load_results`` through :class:`LesionSegLib.jobs.BackgroundJobLogic`).

The temporary folder holds ``pet.nrrd`` (a PET file, in the units the user stated) or ``pet_dicom/`` (the PET's
own DICOM files: the backend converts them to SUV from the tags), ``ct.nrrd`` and ``out/``. It is removed when
the run fails or is cancelled; on success only the inputs are removed and ``out/`` stays for the user (the
previous run's folder is freed: :func:`LesionSegLib.jobs.finish_run`).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Optional

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
    """The units to pass for a PET file (``None`` for a DICOM PET: its tags are used).

    Args:
        value_range: ``(minimum, maximum)`` of a volume's voxels (the logic passes a cached one).

    Raises:
        ValueError: no or the same volumes, swapped DICOM modalities, incomplete Bq/mL values, or PET values
            that do not fit the units ("this does not look like PET in SUV").
    """
    problem = autopet.input_problem(petNode is not None, ctNode is not None, petNode is ctNode)
    if problem:
        raise ValueError(problem)
    if inputs.dicom_instance_uids(petNode):
        units, problem = None, autopet.modality_problem(inputs.modality(petNode), inputs.modality(ctNode))
    else:
        units = autopet.PetUnits(autopet.unit_value(petUnits), weightKg, doseMBq, minutesToScan)
        units.check()
        problem = autopet.value_range_problem(*value_range(petNode), units.units)
    if problem:
        raise ValueError(problem)
    return units


def start(petNode: Any, ctNode: Any, segmentationNode: Any, units: Optional[autopet.PetUnits], perLesion: bool,
          weights: Optional[Path], device: str, onProgress: Any = None, onLog: Any = None) -> autopet.Job:
    """Write the inputs and start ``lesionseg predict autopet-l2snet`` in the background.

    Raises:
        lesionseg.InputError: volumes/segmentation under different transforms, a volume without voxels, PET
            DICOM files no longer available. Nothing is left behind on failure.
    """
    import time

    import slicer
    from LesionSegLib import labelmaps, process

    labelmaps.check_transforms([petNode, ctNode], segmentationNode)
    folder = Path(slicer.util.tempDirectory("LesionSegAutoPET"))
    try:
        pet = (labelmaps.export_volume(petNode, folder / "pet.nrrd") if units is not None
               else inputs.export_pet_dicom(petNode, folder / "pet_dicom"))
        ct = labelmaps.export_volume(ctNode, folder / "ct.nrrd")
        (folder / "out").mkdir()
        args = autopet.predict_arguments(pet, ct, folder / "out", units, weights, device)
        runner = process.BackgroundProcess(process.backend_command(args), onProgress, onLog).start()
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return autopet.Job(runner, folder, petNode, ctNode, segmentationNode, bool(perLesion), units is None,
                       time.perf_counter())
