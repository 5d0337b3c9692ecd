"""One run of the panel and its prior plot, scene side (needs Slicer at call time; ``slicer`` and the backend are
imported inside the functions, so the module file can import this before the backend is installed).

A run's temporary folder holds ``ct.nrrd`` (the CT in its node coordinates), for a prior learnt from a segment
``prior_ct.nrrd`` + ``prior_mask.nrrd`` (the CT and the segment cropped around the segment,
:func:`LesionSegSmallLesionLib.smalllesion.prior_crop`) and ``out/`` (the backend's outputs). It is removed
when the run fails or is cancelled; on success only the inputs go and ``out/`` stays for the user (the logic
frees the previous run's folder: :func:`LesionSegLib.jobs.finish_run`). :func:`load_results` turns a run that
ended well into segments.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np

from LesionSegLib import wholevolume

from . import smalllesion

PRIOR_STEP_SHARE = 0.1
"""Part of the progress bar given to ``lesionseg prior`` when it runs before ``lesionseg predict``."""


def check_inputs(volumeNode: Any, prior: smalllesion.PriorChoice, priorSegmentationNode: Any = None) -> None:
    """Raise ``ValueError`` without a CT, or when the segment to learn the prior from is not in its segmentation."""
    if volumeNode is None:
        raise ValueError("select the CT volume")
    if prior.kind != "segment":
        return
    if priorSegmentationNode is None:
        raise ValueError("select the segmentation holding the segment to learn the prior from")
    segmentation = priorSegmentationNode.GetSegmentation()
    if segmentation.GetSegment(prior.segment_id) is None:
        raise ValueError(f"segmentation '{priorSegmentationNode.GetName()}' has no segment {prior.segment_id!r} "
                         "to learn the prior from")


def roi_box(roiNode: Any, volumeNode: Any) -> Any:
    """The ROI as an LPS :class:`lesionseg.Box` in the CT file's frame, checked to overlap the CT.

    Raises:
        lesionseg.InputError: an unplaced or inside-out ROI, a non-linear transform, an ROI outside the CT.
    """
    from LesionSegLib import labelmaps, nodes

    box = nodes.roi_to_box(roiNode)
    to_world = nodes.node_to_world(volumeNode)
    box = smalllesion.box_in_node_frame(box, None if to_world is None else np.linalg.inv(to_world))
    smalllesion.check_roi_overlap(box, *labelmaps.volume_grid(volumeNode))
    return box


def segment_mask(segmentationNode: Any, segmentId: str, volumeNode: Any) -> np.ndarray:
    """A segment's ``(K, J, I)`` uint8 0/1 voxels on the CT's grid."""
    from LesionSegLib import nodes

    return nodes.segment_array(segmentationNode, segmentId, volumeNode)


def export_prior_inputs(volumeNode: Any, segmentationNode: Any, segmentId: str, folder: Path) -> tuple[Path, Path]:
    """Write the CT and the segment, cropped around the segment, as ``prior_ct.nrrd`` / ``prior_mask.nrrd``.

    Raises:
        ValueError: the segment is empty.
    """
    import slicer
    from lesionseg.io import write_image
    from LesionSegLib import labelmaps, scene

    shape, ijk_to_ras = labelmaps.volume_grid(volumeNode)
    ct = scene.image_from_volume_array(slicer.util.arrayFromVolume(volumeNode), ijk_to_ras)
    try:
        ct_crop, mask_crop = smalllesion.prior_crop(ct, segment_mask(segmentationNode, segmentId, volumeNode))
    except ValueError as exc:
        raise ValueError(f"{exc} ('{segmentId}')") from None
    paths = (Path(folder) / "prior_ct.nrrd", Path(folder) / "prior_mask.nrrd")
    write_image(ct_crop, paths[0])
    write_image(mask_crop, paths[1])
    return paths


def start(volumeNode: Any, segmentationNode: Any, roiNode: Any, prior: smalllesion.PriorChoice,
          priorSegmentationNode: Any, weights: Optional[Path], device: str, onProgress: Any = None,
          onLog: Any = None) -> wholevolume.Job:
    """Write the inputs and start the run (``lesionseg prior`` first for a segment's prior, then predict; options
    ``prior`` and ``box``).

    Raises:
        ValueError: an empty segment; lesionseg.InputError: transforms that differ, an ROI outside the CT, a
            volume without voxels. Nothing is left behind on failure.
    """
    from LesionSegLib import labelmaps

    box = None if roiNode is None else roi_box(roiNode, volumeNode)
    shares = [PRIOR_STEP_SHARE, 1.0 - PRIOR_STEP_SHARE] if prior.kind == "segment" else None

    def prepare(folder: Path) -> list[list[str]]:
        out, commands = folder / "out", []
        if prior.kind == "segment":
            image, mask = export_prior_inputs(volumeNode, priorSegmentationNode, prior.segment_id, folder)
            paths = wholevolume.output_paths(out, smalllesion.OUTPUT_FILES)
            commands.append(smalllesion.prior_arguments(prior, paths["plot"], paths["prior"], image, mask))
        ct = labelmaps.export_volume(volumeNode, folder / "ct.nrrd")
        return commands + [smalllesion.predict_arguments(ct, out, prior, box, weights, device)]

    return wholevolume.start_job(smalllesion.OWNER, {"ct": volumeNode}, segmentationNode, prepare,
                                 smalllesion.OUTPUT_FILES, shares, onProgress, onLog, prior=prior, box=box)


def load_results(job: wholevolume.Job) -> dict:
    """A run that ended well -> one segment per lesion (:func:`LesionSegLib.wholevolume.load_lesions`, its result
    dict), tagged with the prior and the ROI, plus ``"prior"`` (its description) and ``"priorPlot"`` (the learnt
    prior's PNG or None)."""
    prior, box = job.options["prior"], job.options["box"]
    tags = {smalllesion.PRIOR_TAG: prior.tag(),
            smalllesion.ROI_TAG: json.dumps(None if box is None else box.to_dict(), separators=(",", ":"))}
    found = wholevolume.load_lesions(job, smalllesion.OWNER, smalllesion.METHOD, smalllesion.CONNECTIVITY,
                                     smalllesion.segmentation_name(job.volumeNode.GetName()),
                                     name=smalllesion.segment_name, tags=tags)
    plot = job.outputs["plot"]
    return {**found, "prior": prior.describe(), "priorPlot": plot if plot.is_file() else None}


def preview_files(volumeNode: Any, prior: smalllesion.PriorChoice, priorSegmentationNode: Any = None,
                  weights: Optional[Path] = None) -> tuple[list[str], Path, Path]:
    """``(command, png, folder)`` drawing the likelihood plot of a prior choice (for ``PriorPreview.request``);
    a segment's prior is fitted to the crop written into ``folder``.

    Raises:
        ValueError: a segment's prior without a CT or with an empty / unknown segment.
    """
    import slicer
    from LesionSegLib import process

    if prior.kind == "segment":
        check_inputs(volumeNode, prior, priorSegmentationNode)
    folder = Path(slicer.util.tempDirectory("LesionSegSmallLesionPrior"))
    try:
        image = mask = None
        if prior.kind == "segment":
            image, mask = export_prior_inputs(volumeNode, priorSegmentationNode, prior.segment_id, folder)
        png = folder / "prior.png"
        args = smalllesion.prior_arguments(prior, png, None, image, mask, weights)
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return process.backend_command(args), png, folder
