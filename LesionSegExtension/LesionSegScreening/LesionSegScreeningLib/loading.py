"""A finished ``lesionseg screen`` run -> segments in the scene (needs Slicer; imported by the logic only).

Everything is read and checked before the scene changes: the inputs are still in the scene, the report
covers every phase, each phase's label file lies on that volume's grid and holds only labels 0..3. Then
:func:`LesionSegLib.labelmaps.replace_owned_segments` writes the segments (all or nothing).
"""
from __future__ import annotations

from LesionSegLib import labelmaps, wholevolume

from . import screening


def load_results(job: wholevolume.Job) -> tuple[dict, labelmaps.WrittenSegments]:
    """``(report, where the segments went)`` of a successful run.

    Raises:
        InputError: an input was removed from the scene meanwhile, a label off its volume's grid or with
            unexpected values, volumes/segmentation under different transforms.
        ValueError: the report is missing or malformed.
    """
    wholevolume.check_present(job, "the screening")
    report = screening.read_report(job.output_dir, list(job.volumes))
    labels = []
    for phase, volumeNode in job.volumes.items():
        shape, ijk_to_ras = labelmaps.volume_grid(volumeNode)
        label = labelmaps.read_label(screening.segmentation_file(report, job.output_dir, phase), shape, ijk_to_ras)
        labels.append(labelmaps.LabelResult(volumeNode, label, screening.segment_specs(phase)))
    name = screening.segmentation_name({phase: volumeNode.GetName() for phase, volumeNode in job.volumes.items()})
    written = labelmaps.replace_owned_segments(job.segmentationNode, labels, screening.OWNER, screening.METHOD, name)
    return report, written
