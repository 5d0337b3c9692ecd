"""A finished ``lesionseg predict autopet-l2snet`` run -> segments and a lesion table node (needs Slicer for
:func:`load_results`; :func:`label_onto_grid` and :func:`lesion_labels` are pure and tested offline).

Everything is read and checked before the scene changes: the inputs are still in the scene, the lesion table
parses, the label lies on the PET volume's grid and the table describes its lesions. Then
:func:`LesionSegLib.labelmaps.replace_owned_segments` writes the segments (all or nothing) and the table node
is filled (the one this panel made for that segmentation before is reused).
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np

from lesionseg import Image, InputError
from LesionSegLib import labelmaps, scene

from . import autopet, lesions

logger = logging.getLogger(__name__)

SEGMENTATION_ATTRIBUTE = "LesionSeg.segmentation"
"""Table node attribute: ID of the segmentation whose lesions the table lists."""


def label_onto_grid(label: Image, shape_kji: Sequence[int], ijk_to_ras: np.ndarray, allow_resample: bool) -> np.ndarray:
    """The ``(K, J, I)`` uint8 0/1 lesion mask of ``label`` on the PET volume's grid.

    A label on exactly that grid is taken as it is. A PET handed over as DICOM files was read by the backend
    itself, whose slice order or origin rounding may differ from Slicer's: then (``allow_resample``) the label
    is resampled onto the volume's grid with nearest-neighbour interpolation (exact for the same voxel centres).

    Raises:
        InputError: off the grid (and no resampling allowed), or the two do not overlap at all.
    """
    try:
        labelmaps.check_label_grid(label, shape_kji, ijk_to_ras)
        return (np.asarray(label.array) > 0).astype(np.uint8)
    except InputError:
        if not allow_resample:
            raise
    from lesionseg.resample import check_overlap, resample_to_grid

    target = scene.image_from_volume_array(np.zeros(tuple(int(n) for n in shape_kji), np.uint8), ijk_to_ras)
    check_overlap(label, target, ("the backend's label", "the PET volume"))
    logger.info("the label's grid differs from the PET volume's (read from DICOM by the backend); resampled")
    binary = label.with_array((np.asarray(label.array) > 0).astype(np.uint8))
    return np.asarray(resample_to_grid(binary, target, "nearest").array, dtype=np.uint8)


def lesion_labels(mask: np.ndarray, ijk_to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, voxel counts)``: the connected lesions (18-connectivity) of a ``(K, J, I)`` mask numbered as in
    the backend's table (1 = largest; int32 array on the same grid), and each lesion's voxel count."""
    from lesionseg.methods.autopet.lesion_table import lesion_ids

    ids, n = lesion_ids(scene.image_from_volume_array(mask, ijk_to_ras), 18)
    array = np.asarray(ids.array, dtype=np.int32)
    return array, np.bincount(array.ravel(), minlength=n + 1)[1:]


def _check_present(job: autopet.Job) -> None:
    import slicer

    for node in (job.petNode, job.ctNode, job.segmentationNode):
        if node is not None and not slicer.mrmlScene.IsNodePresent(node):
            raise InputError(f"'{node.GetName()}' was removed from the scene while the lesions were segmented")


def load_results(job: autopet.Job) -> dict:
    """Write a successful run's lesions to the scene; returns the console result.

    Returns:
        ``{"rows": [LesionRow.as_dict()...], "lesionRows": [LesionRow...], "segmentationNode", "segmentIds",
        "tableNode", "mip": Path or None, "outputDir": Path, "note": str}`` (``note``: a mismatch between the
        resampled label and the table, else ``""``).

    Raises:
        InputError: an input removed meanwhile, a label off the PET grid, transforms that differ.
        ValueError: the lesion table is missing or malformed, or does not describe the label's lesions.
    """
    _check_present(job)
    outputs = job.outputs
    rows = lesions.read_lesion_csv(outputs["table"])
    if not outputs["label"].is_file():
        raise ValueError(f"the backend wrote no label ({outputs['label']} is missing)")
    from lesionseg.io import read_image

    shape, ijk_to_ras = labelmaps.volume_grid(job.petNode)
    mask = label_onto_grid(read_image(outputs["label"]), shape, ijk_to_ras, job.petFromDicom)
    ids, counts = lesion_labels(mask, ijk_to_ras)
    note = lesions.count_mismatch(rows, counts) or ""
    if note and not job.petFromDicom:
        raise ValueError(f"the backend's outputs disagree: {note}")
    if note:
        logger.warning("after resampling onto the PET grid %s", note)
    specs = lesions.segment_specs(range(1, len(counts) + 1), job.perLesion)
    values = ids if job.perLesion else (ids > 0).astype(np.uint8)
    written = labelmaps.replace_owned_segments(
        job.segmentationNode, [labelmaps.LabelResult(job.petNode, values, specs)], autopet.OWNER, autopet.METHOD,
        lesions.segmentation_name(job.petNode.GetName()))
    tableNode = write_table(rows, job.petNode, written.segmentationNode)
    return {"rows": [row.as_dict() for row in rows], "lesionRows": rows,
            "segmentationNode": written.segmentationNode, "segmentIds": written.segmentIds, "tableNode": tableNode,
            "mip": outputs["mip"] if outputs["mip"].is_file() else None, "outputDir": job.output_dir, "note": note}


def owned_table(segmentationNode: Any) -> Optional[Any]:
    """The table node this panel filled for ``segmentationNode`` before (``None``: none in the scene)."""
    import slicer

    for tableNode in slicer.util.getNodesByClass("vtkMRMLTableNode"):
        if tableNode.GetAttribute(labelmaps.OWNER_TAG) == autopet.OWNER \
                and tableNode.GetAttribute(SEGMENTATION_ATTRIBUTE) == segmentationNode.GetID():
            return tableNode
    return None


def write_table(rows: Sequence[lesions.LesionRow], petNode: Any, segmentationNode: Any) -> Any:
    """Fill the lesion table node of ``segmentationNode`` (:data:`lesions.TABLE_COLUMNS`, one row per lesion);
    a new one is named ``"<segmentation> table"`` and put beside the PET in the subject hierarchy."""
    import slicer
    from LesionSegLib import nodes

    previous = owned_table(segmentationNode)
    tableNode = slicer.util.updateTableFromArray(previous, lesions.table_columns(rows),
                                                 columnNames=list(lesions.TABLE_COLUMNS))
    if previous is None:
        tableNode.SetName(f"{segmentationNode.GetName()} table")
        tableNode.SetAttribute(labelmaps.OWNER_TAG, autopet.OWNER)
        tableNode.SetAttribute(SEGMENTATION_ATTRIBUTE, segmentationNode.GetID())
        nodes._place_under_study(petNode, tableNode)
    return tableNode
