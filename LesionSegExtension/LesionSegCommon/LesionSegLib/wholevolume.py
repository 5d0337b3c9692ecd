"""One whole-volume run of a panel, from its options to its results in the scene (``slicer`` and the backend are
imported inside the functions, so the module files can import this before the backend is installed).

The whole-volume panels (PET/CT, small lesions, screening) share the run and differ only in their arguments and
outputs:

* :func:`check_options` -- the device and weights folder, checked before any volume is written.
* :func:`start_job` -- a temporary folder, the method's ``prepare(folder)`` writing the inputs and naming the
  backend commands (pointed at a LesionSeg server when "Run on" says so: :mod:`LesionSegLib.remote`), the commands
  started in the background (:class:`LesionSegLib.process.BackgroundProcess`, or
  :class:`LesionSegLib.steps.SequentialRun` for several); the :class:`Job` record that
  :class:`LesionSegLib.jobs.BackgroundJobLogic` finishes.
* :func:`load_lesions` -- a lesion run's outputs (a 0/1 label on the input's grid and the backend's lesion table,
  :mod:`LesionSegLib.lesiontable`) -> one segment per lesion (or one for all) and a table node. Everything is read
  and checked before the scene changes: the inputs are still there, the table parses, the label lies on the
  volume's grid and the table describes its connected lesions; then the segments replace the ones the panel wrote
  before (:func:`LesionSegLib.labelmaps.replace_owned_segments`, all or nothing) and the panel's table node is
  filled.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from . import lesiontable

logger = logging.getLogger(__name__)

SEGMENTATION_ATTRIBUTE = "LesionSeg.segmentation"
"""Table node attribute: ID of the segmentation whose lesions the table lists."""


def check_options(weights: Optional[Path] = None, device: str = "auto") -> None:
    """Raise ``ValueError`` for a device other than auto/cpu/cuda or a weights folder that does not exist."""
    from .device import check_choice

    check_choice(device)
    if weights is not None and str(weights) and not Path(weights).is_dir():
        raise ValueError(f"the weights folder {weights} does not exist")


def output_paths(output_dir: Path, files: Mapping[str, str]) -> dict[str, Path]:
    """``{key: output_dir / file name}`` of a run's outputs."""
    return {key: Path(output_dir) / name for key, name in files.items()}


@dataclass(frozen=True)
class Job:
    """A started run.

    Attributes:
        runner: the ``BackgroundProcess`` (or ``SequentialRun``) running the backend.
        folder: its temporary folder: the inputs written for the run, and ``out/``.
        volumes: ``{role: volume node}`` of the inputs (e.g. ``{"pet": ..., "ct": ...}``, ``{"venous": ...}``);
            the first is the one the results lie on.
        segmentationNode: where the segments go (``None``: a new segmentation).
        outputFiles: ``{key: file name}`` of the backend's outputs in ``out/``.
        inputNames: the files and folders written into ``folder`` for the run (deleted once it ended).
        started: ``time.perf_counter()`` at the start.
        options: what the method needs to load the results (e.g. ``perLesion``, the prior).
    """

    runner: Any
    folder: Path
    volumes: Mapping[str, Any]
    segmentationNode: Any
    outputFiles: Mapping[str, str]
    inputNames: Sequence[str]
    started: float
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def volumeNode(self) -> Any:
        """The input volume the results lie on (the first of :attr:`volumes`)."""
        return next(iter(self.volumes.values()))

    @property
    def output_dir(self) -> Path:
        return self.folder / "out"

    @property
    def outputs(self) -> dict[str, Path]:
        return output_paths(self.output_dir, self.outputFiles)

    def input_paths(self) -> list[Path]:
        """The inputs written for the run (deleted once it ended)."""
        return [self.folder / name for name in self.inputNames]


def start_job(owner: str, volumes: Mapping[str, Any], segmentationNode: Any,
              prepare: Callable[[Path], Sequence[Sequence[str]]], outputFiles: Optional[Mapping[str, str]] = None,
              shares: Optional[Sequence[float]] = None, onProgress: Any = None, onLog: Any = None,
              createOutputDir: bool = True, **options: Any) -> Job:
    """Write a run's inputs and start the backend in the background.

    Args:
        owner: the panel's name (the temporary folder is named after it).
        volumes: the input volumes (see :attr:`Job.volumes`); they and ``segmentationNode`` must share a transform.
        prepare: ``prepare(folder)`` writes the inputs into ``folder`` and returns the backend's argument lists
            (without the program and ``--progress``), run one after the other.
        shares: each command's part of the progress bar (``SequentialRun``).
        createOutputDir: create ``folder/out`` first (False: the backend creates it).
        options: kept in :attr:`Job.options`.

    Raises:
        lesionseg.InputError: volumes/segmentation under different transforms; whatever ``prepare`` raises.
            Nothing is left behind on failure.
    """
    import slicer

    from . import labelmaps, process, remote
    from .steps import SequentialRun

    labelmaps.check_transforms(list(volumes.values()), segmentationNode)
    started = time.perf_counter()
    folder = Path(slicer.util.tempDirectory(owner))
    try:
        if createOutputDir:
            (folder / "out").mkdir()
        commands = [process.backend_command(remote.command_arguments(args, folder)) for args in prepare(folder)]
        inputNames = tuple(sorted(p.name for p in folder.iterdir() if p.name != "out"))
        runner = (process.BackgroundProcess(commands[0], onProgress, onLog) if len(commands) == 1
                  else SequentialRun(commands, shares, onProgress, onLog)).start()
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Job(runner, folder, dict(volumes), segmentationNode, dict(outputFiles or {}), inputNames, started, options)


def check_present(job: Job, what: str = "the run") -> None:
    """Raise ``lesionseg.InputError`` when an input or the segmentation left the scene during ``what``."""
    import slicer
    from lesionseg import InputError

    for node in (*job.volumes.values(), job.segmentationNode):
        if node is not None and not slicer.mrmlScene.IsNodePresent(node):
            raise InputError(f"'{node.GetName()}' was removed from the scene during {what}")


def label_onto_grid(label: Any, shape_kji: Sequence[int], ijk_to_ras: np.ndarray, allow_resample: bool) -> np.ndarray:
    """The ``(K, J, I)`` uint8 0/1 lesion mask of a label image (``lesionseg.Image``) on a volume's grid.

    A label on exactly that grid is taken as it is. An input handed over as DICOM files was read by the backend
    itself, whose slice order or origin rounding may differ from Slicer's: then (``allow_resample``) the label
    is resampled onto the volume's grid with nearest-neighbour interpolation (exact for the same voxel centres).

    Raises:
        InputError: off the grid (and no resampling allowed), or the two do not overlap at all.
    """
    from lesionseg import InputError

    from . import labelmaps, scene

    try:
        labelmaps.check_label_grid(label, shape_kji, ijk_to_ras)
        return (np.asarray(label.array) > 0).astype(np.uint8)
    except InputError:
        if not allow_resample:
            raise
    from lesionseg.resample import check_overlap, resample_to_grid

    target = scene.image_from_volume_array(np.zeros(tuple(int(n) for n in shape_kji), np.uint8), ijk_to_ras)
    check_overlap(label, target, ("the backend's label", "the input volume"))
    logger.info("the label's grid differs from the volume's (read from DICOM by the backend); resampled")
    binary = label.with_array((np.asarray(label.array) > 0).astype(np.uint8))
    return np.asarray(resample_to_grid(binary, target, "nearest").array, dtype=np.uint8)


def lesion_labels(mask: np.ndarray, ijk_to_ras: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, voxel counts)``: the connected lesions of a ``(K, J, I)`` mask numbered as in the backend's table
    (``lesionseg.lesions.lesion_ids``: 1 = largest; int32 array on the same grid), and each lesion's voxel count."""
    from lesionseg.lesions import lesion_ids

    from .scene import image_from_volume_array

    ids, n = lesion_ids(image_from_volume_array(mask, ijk_to_ras), connectivity)
    array = np.asarray(ids.array, dtype=np.int32)
    return array, np.bincount(array.ravel(), minlength=n + 1)[1:]


def load_lesions(job: Job, owner: str, method: str, connectivity: int, newName: str, perLesion: bool = True,
                 name: Optional[Callable[[lesiontable.LesionRow], str]] = None,
                 tags: Optional[Mapping[str, str]] = None, allowResample: bool = False) -> dict:
    """Write a lesion run's segments and table node (outputs ``"label"`` and ``"table"`` of ``job``).

    Args:
        owner, method: the panel's owner tag and the backend method (segment tags); only segments (and the table
            node) with this owner are replaced.
        connectivity: neighbours that joined the backend's lesions (6, 18 or 26).
        newName: name of a new segmentation (``job.segmentationNode`` None).
        perLesion, name, tags: one segment per lesion named ``name(row)`` (default ``"lesion <id>"``) or one for
            all; ``tags`` on every segment (:func:`LesionSegLib.lesiontable.segment_specs`).
        allowResample: the label may lie on another grid (an input the backend read from DICOM): it is resampled,
            and a table that then disagrees with it is only logged (``note``).

    Returns:
        ``{"rows": [LesionRow.as_dict() + "segment"...], "lesionRows": [LesionRow...], "segmentationNode",
        "segmentIds" (spec order), "tableNode", "outputDir", "note"}``.

    Raises:
        InputError: an input removed meanwhile, a label off the grid or with values other than 0/1, transforms.
        ValueError: the table or the label is missing or malformed, or the table does not describe the label.
    """
    from lesionseg.io import read_image

    from . import labelmaps

    check_present(job, "the lesion segmentation")
    volumeNode, outputs = job.volumeNode, job.outputs
    rows = lesiontable.read_lesion_rows(outputs["table"])
    if not outputs["label"].is_file():
        raise ValueError(f"the backend wrote no label ({outputs['label']} is missing)")
    label = read_image(outputs["label"])
    labelmaps.check_label_values(label.array, [labelmaps.SegmentSpec(1, "lesion", (1.0, 0.0, 0.0))])
    shape, ijk_to_ras = labelmaps.volume_grid(volumeNode)
    ids, counts = lesion_labels(label_onto_grid(label, shape, ijk_to_ras, allowResample), ijk_to_ras, connectivity)
    note = lesiontable.count_mismatch(rows, counts) or ""
    if note and not allowResample:
        raise ValueError(f"the backend's outputs disagree: {note}")
    if note:
        logger.warning("after resampling onto the volume's grid %s", note)
    names = [name(row) for row in rows] if name is not None and not note else None
    specs = lesiontable.segment_specs(len(counts), perLesion, names, tags)
    values = ids if perLesion else (ids > 0).astype(np.uint8)
    written = labelmaps.replace_owned_segments(job.segmentationNode, [labelmaps.LabelResult(volumeNode, values, specs)],
                                               owner, method, newName)
    segment = {spec.label: spec.name for spec in specs}
    return {"rows": [{**row.as_dict(), "segment": segment.get(row.id if perLesion else 1, "")} for row in rows],
            "lesionRows": rows, "segmentationNode": written.segmentationNode, "segmentIds": written.segmentIds,
            "tableNode": write_table_node(rows, volumeNode, written.segmentationNode, owner),
            "outputDir": job.output_dir, "note": note}


def owned_table(segmentationNode: Any, owner: str) -> Optional[Any]:
    """The table node ``owner`` filled for ``segmentationNode`` before (``None``: none in the scene)."""
    import slicer

    from .labelmaps import OWNER_TAG

    for tableNode in slicer.util.getNodesByClass("vtkMRMLTableNode"):
        if tableNode.GetAttribute(OWNER_TAG) == owner \
                and tableNode.GetAttribute(SEGMENTATION_ATTRIBUTE) == segmentationNode.GetID():
            return tableNode
    return None


def write_table_node(rows: Sequence[lesiontable.LesionRow], volumeNode: Any, segmentationNode: Any, owner: str) -> Any:
    """Fill the lesion table node of ``segmentationNode`` (:func:`LesionSegLib.lesiontable.table_columns`, one row
    per lesion, typed columns: :func:`set_table_columns`); a new one is named ``"<segmentation> table"`` and put
    beside the volume in the subject hierarchy."""
    import slicer

    from . import nodes
    from .labelmaps import OWNER_TAG

    previous = owned_table(segmentationNode, owner)
    tableNode = previous or slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode",
                                                                f"{segmentationNode.GetName()} table")
    set_table_columns(tableNode, *lesiontable.table_columns(rows))
    if previous is None:
        tableNode.SetAttribute(OWNER_TAG, owner)
        tableNode.SetAttribute(SEGMENTATION_ATTRIBUTE, segmentationNode.GetID())
        nodes._place_under_study(volumeNode, tableNode)
    return tableNode


def set_table_columns(tableNode: Any, names: Sequence[str], columns: Sequence[np.ndarray]) -> None:
    """Replace the columns of a table node, each VTK array of its numpy type (int32 -> vtkIntArray, float64 ->
    vtkDoubleArray). Not ``slicer.util.updateTableFromArray``: up to Slicer 5.8 it stores every column as float32
    (``array_type=vtk.VTK_FLOAT``), which would turn lesion ids into floats and round SUVs and volumes."""
    from vtk.util import numpy_support

    if len(names) != len(columns):
        raise ValueError(f"{len(names)} column names for {len(columns)} columns")
    tableNode.RemoveAllColumns()
    for name, values in zip(names, columns):
        array = numpy_support.numpy_to_vtk(np.ascontiguousarray(values), deep=True)
        array.SetName(name)
        tableNode.AddColumn(array)
