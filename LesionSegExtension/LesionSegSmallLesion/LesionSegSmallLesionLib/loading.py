"""A finished ``lesionseg predict small-lesion-il`` run -> one segment per lesion (needs Slicer for
:func:`load_results`; :func:`components` is pure and tested offline).

Everything is read and checked before the scene changes: the inputs are still in the scene, the lesion table
parses, the mask lies on the CT volume's grid and holds only 0/1, and the table describes the mask's connected
lesions. Then :func:`LesionSegLib.labelmaps.replace_owned_segments` writes the segments (all or nothing),
replacing the segments this panel wrote before and no other.
"""
from __future__ import annotations

import json

import numpy as np

from lesionseg import InputError
from LesionSegLib import labelmaps, scene

from . import lesions, smalllesion


def components(mask: np.ndarray, ijk_to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The connected lesions (:data:`lesions.CONNECTIVITY`) of a ``(K, J, I)`` mask on a volume's grid.

    Returns:
        ``(components, voxel counts, centroids)``: int32 ``(K, J, I)`` numbered ``1..n`` in scan order, ``(n,)``
        voxels of each, ``(n, 3)`` LPS mm centroids (node coordinates, as the CT file was written).
    """
    from lesionseg.geometry import index_to_world
    from lesionseg.metrics import lesion_components
    from scipy import ndimage

    image = scene.image_from_volume_array((np.asarray(mask) > 0).astype(np.uint8), ijk_to_ras)
    labelled, n = lesion_components(image, lesions.CONNECTIVITY)
    ids = np.asarray(labelled.array, dtype=np.int32)
    counts = np.bincount(ids.ravel(), minlength=n + 1)[1:]
    if n == 0:
        return ids, counts, np.zeros((0, 3))
    centres_kji = np.array(ndimage.center_of_mass(np.ones(ids.shape, np.uint8), ids, range(1, n + 1)))
    return ids, counts, index_to_world(image, centres_kji[:, ::-1])


def _check_present(job: smalllesion.Job) -> None:
    import slicer

    for node in (job.volumeNode, job.segmentationNode):
        if node is not None and not slicer.mrmlScene.IsNodePresent(node):
            raise InputError(f"'{node.GetName()}' was removed from the scene while the lesions were segmented")


def load_results(job: smalllesion.Job) -> dict:
    """Write a successful run's lesions to the scene; returns the console result.

    Returns:
        ``{"rows": [LesionRow.as_dict()...], "lesionRows": [LesionRow...], "segmentationNode", "segmentIds"
        (row order), "outputDir", "prior": the prior's description, "priorPlot": the learnt prior's PNG or None}``.

    Raises:
        InputError: an input removed meanwhile, a mask off the CT grid or with values other than 0/1.
        ValueError: the lesion table is missing or malformed, or does not describe the mask's lesions.
    """
    _check_present(job)
    outputs = job.outputs
    rows = lesions.read_lesion_table(outputs["table"])
    if not outputs["label"].is_file():
        raise ValueError(f"the backend wrote no mask ({outputs['label']} is missing)")
    shape, ijk_to_ras = labelmaps.volume_grid(job.volumeNode)
    mask = labelmaps.read_label(outputs["label"], shape, ijk_to_ras)
    labelmaps.check_label_values(mask, [labelmaps.SegmentSpec(1, "lesion", (1.0, 0.0, 0.0))])
    ids, counts, centres = components(mask, ijk_to_ras)
    values = lesions.relabel(ids, lesions.match_components(rows, counts, centres))
    tags = {lesions.PRIOR_TAG: job.prior.tag(),
            lesions.ROI_TAG: json.dumps(None if job.box is None else job.box.to_dict(), separators=(",", ":"))}
    written = labelmaps.replace_owned_segments(
        job.segmentationNode, [labelmaps.LabelResult(job.volumeNode, values, lesions.segment_specs(rows, tags))],
        smalllesion.OWNER, smalllesion.METHOD, lesions.segmentation_name(job.volumeNode.GetName()))
    return {"rows": [row.as_dict() for row in rows], "lesionRows": rows, "segmentationNode": written.segmentationNode,
            "segmentIds": written.segmentIds, "outputDir": job.output_dir, "prior": job.prior.describe(),
            "priorPlot": outputs["plot"] if outputs["plot"].is_file() else None}
