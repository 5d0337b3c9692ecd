"""Whole-volume results of the command-line backend -> named segments; input volumes -> files; jump-to.

The whole-volume panels (screening, PET/CT, small lesions) run the backend's command line on volumes written
to a temporary folder and get multi-label images back, one per input, on that input's grid. This module:

* writes a volume as the backend reads it (:func:`export_volume`: node coordinates, the node's storage is
  left alone), and reads a label image back after checking it lies on that volume's grid
  (:func:`read_label`, :func:`check_label_grid`; pure numpy + backend IO);
* writes labels as named segments that REPLACE the segments the same panel wrote before and leave every
  other segment alone (:func:`replace_owned_segments`): new segments are added first, the panel's old ones
  removed only when all new ones were written, and on any failure the scene is put back as it was;
* centres the slice views on a point (:func:`jump_slices_to`).

Volumes and the segmentation must share one parent transform (files are written in node coordinates and
the segments are written in the segmentation's node coordinates); a mismatch is refused with one message.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lesionseg import Image, InputError

from . import nodes, results, scene

logger = logging.getLogger(__name__)

OWNER_TAG = "LesionSeg.owner"
"""Segment tag naming the panel that wrote the segment (its module name); only those are replaced."""

GRID_TOLERANCE_MM = 1e-3
"""Largest difference in spacing/origin (mm) and direction (unit vectors) for a label to be on a volume's
grid; NIfTI stores geometry as float32, which is exact to ~1e-5 mm at body coordinates."""


@dataclass(frozen=True)
class SegmentSpec:
    """One label value of a result image and the segment it becomes.

    Attributes:
        label: the voxel value in the label image (> 0).
        name: the segment name, e.g. ``"venous tumour"``.
        color: RGB in 0..1.
        terminology: Slicer's serialized terminology entry (empty: none set).
        tags: extra segment tags (the owner and method tags are added by :func:`replace_owned_segments`).
    """

    label: int
    name: str
    color: tuple[float, float, float]
    terminology: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelResult:
    """A label image of one input volume and the segments its values become.

    Attributes:
        volumeNode: the input volume; the label lies on its grid.
        label: ``(K, J, I)`` integer array, values 0 and ``spec.label`` of the specs only.
        specs: one per segment to write (a segment is written even when its label is absent: empty).
    """

    volumeNode: Any
    label: np.ndarray
    specs: Sequence[SegmentSpec]


@dataclass(frozen=True)
class WrittenSegments:
    """Where results went: the segmentation, the new segment IDs (spec order) and whether it was created."""

    segmentationNode: Any
    segmentIds: tuple[str, ...]
    createdNode: bool
    removedOld: int


def check_label_grid(label: Image, shape_kji: Sequence[int], ijk_to_ras: np.ndarray,
                     tol: float = GRID_TOLERANCE_MM) -> None:
    """Raise :class:`InputError` unless ``label`` lies on the grid of a volume.

    Args:
        label: the label image read from a file (LPS geometry).
        shape_kji: ``(K, J, I)`` shape of the volume's voxel array.
        ijk_to_ras: the volume's own IJKToRAS 4x4 (node coordinates, as the volume was exported).
    """
    spacing, origin, direction = scene.geometry_from_ijk_to_ras(ijk_to_ras)
    if tuple(label.shape) != tuple(int(n) for n in shape_kji):
        raise InputError(f"the result has {label.shape} voxels (K, J, I), the volume {tuple(shape_kji)}")
    for what, got, want in (("spacing", label.spacing, spacing), ("origin", label.origin, origin),
                            ("direction", label.direction, direction)):
        if not np.allclose(got, want, atol=tol):
            raise InputError(f"the result's {what} {np.round(got, 4).tolist()} differs from the volume's "
                             f"{np.round(want, 4).tolist()}")


def check_label_values(label: np.ndarray, specs: Sequence[SegmentSpec]) -> None:
    """Raise :class:`InputError` when ``label`` holds a value that is neither 0 nor one of the specs' labels."""
    allowed = {0} | {spec.label for spec in specs}
    found = set(np.unique(np.asarray(label)).tolist())
    if not found <= allowed:
        raise InputError(f"the result holds label values {sorted(found - allowed)}; expected only "
                         f"{sorted(allowed)}")


def read_label(path: Path, shape_kji: Sequence[int], ijk_to_ras: np.ndarray) -> np.ndarray:
    """The ``(K, J, I)`` voxels of a label file after checking it lies on the volume's grid."""
    from lesionseg.io import read_image

    label = read_image(path)
    check_label_grid(label, shape_kji, ijk_to_ras)
    return np.asarray(label.array)


def volume_grid(volumeNode: Any) -> tuple[tuple[int, int, int], np.ndarray]:
    """``((K, J, I) shape, IJKToRAS 4x4 in node coordinates)`` of a scalar volume node."""
    import slicer

    if volumeNode is None or volumeNode.GetImageData() is None:
        raise InputError("the volume holds no voxels")
    shape = tuple(int(n) for n in slicer.util.arrayFromVolume(volumeNode).shape[:3])
    return shape, nodes._ijk_to_ras(volumeNode)


def export_volume(volumeNode: Any, path: Path) -> Path:
    """Write a volume to ``path`` (node coordinates, uncompressed) without touching its storage node.

    Raises:
        InputError: no voxels, or Slicer could not write the file.
    """
    import slicer

    if volumeNode is None or volumeNode.GetImageData() is None:
        raise InputError("the volume holds no voxels")
    if not slicer.util.exportNode(volumeNode, str(path), {"useCompression": False}) or not Path(path).is_file():
        raise InputError(f"Slicer could not write '{volumeNode.GetName()}' to {path}")
    return Path(path)


def check_transforms(volumeNodes: Sequence[Any], segmentationNode: Any = None) -> None:
    """Raise :class:`InputError` unless the volumes (and the segmentation) share one parent transform."""
    present = [node for node in volumeNodes if node is not None]
    ids = {node.GetTransformNodeID() for node in present}
    if len(ids) > 1:
        raise InputError("the input volumes are under different transforms; harden the transforms "
                         "(Data module, right-click, Harden transform) or put them under the same one")
    if segmentationNode is not None and present and segmentationNode.GetTransformNodeID() not in ids:
        raise InputError(f"segmentation '{segmentationNode.GetName()}' is under a different transform than the "
                         "volumes; choose another segmentation or create a new one")


def replace_owned_segments(segmentationNode: Any, labels: Sequence[LabelResult], owner: str, method: str,
                           newName: str) -> WrittenSegments:
    """Write every spec of ``labels`` as a new segment and remove the segments ``owner`` wrote before.

    Args:
        segmentationNode: where to write; ``None`` creates ``newName`` beside the first volume (same study,
            same transform, its geometry as reference).
        labels: the label images and their specs; validated before anything in the scene changes.
        owner: the panel's name, stored in :data:`OWNER_TAG`; old segments with this owner are replaced.
        method: the backend method, stored in the segment tags with the backend version.

    Raises:
        InputError: an unexpected label value, volumes/segmentation under different transforms.
    """
    import slicer

    if not labels:
        raise InputError("no result to write")
    for item in labels:
        check_label_values(item.label, item.specs)
    volumes = [item.volumeNode for item in labels]
    check_transforms(volumes, segmentationNode)
    createdNode = segmentationNode is None
    if createdNode:
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", newName)
    segmentation = segmentationNode.GetSegmentation()
    old = owned_segment_ids(segmentation, owner)
    added: list[str] = []
    try:
        # Always (a no-op when there is one): a segmentation made with a node combobox has no display node.
        segmentationNode.CreateDefaultDisplayNodes()
        if createdNode:
            segmentationNode.SetAndObserveTransformNodeID(volumes[0].GetTransformNodeID())
            nodes._place_under_study(volumes[0], segmentationNode)
        role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
        if segmentationNode.GetNodeReference(role) is None:
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumes[0])
        tags = {**results.segment_tags(method, None, _backend_version()), OWNER_TAG: owner}
        for item in labels:
            for spec in item.specs:
                added.append(_add_segment(segmentationNode, item.volumeNode, item.label, spec, tags))
    except Exception:
        if createdNode:
            nodes._remove_with_display_nodes(segmentationNode)
        else:
            for segmentId in added:
                segmentation.RemoveSegment(segmentId)
        raise
    for segmentId in old:
        segmentation.RemoveSegment(segmentId)
    logger.info("wrote %d segments to %s (replaced %d)", len(added), segmentationNode.GetName(), len(old))
    return WrittenSegments(segmentationNode, tuple(added), createdNode, len(old))


def owned_segment_ids(segmentation: Any, owner: str) -> list[str]:
    """IDs of the segments whose :data:`OWNER_TAG` is ``owner``."""
    import vtk

    found = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        value = vtk.reference("")
        if segment.GetTag(OWNER_TAG, value) and value.get() == owner:
            found.append(segmentation.GetNthSegmentID(index))
    return found


def _add_segment(segmentationNode: Any, volumeNode: Any, label: np.ndarray, spec: SegmentSpec,
                 tags: dict[str, str]) -> str:
    """A new segment for one spec; only the bounding box of its voxels is written (none when absent)."""
    import slicer

    segmentation = segmentationNode.GetSegmentation()
    segmentId = segmentation.AddEmptySegment("", spec.name, spec.color)
    segment = segmentation.GetSegment(segmentId)
    if spec.terminology:
        if hasattr(segment, "SetTerminology"):
            segment.SetTerminology(spec.terminology)
        else:
            segment.SetTag(segment.GetTerminologyEntryTagName(), spec.terminology)
    for tag, value in {**tags, **spec.tags}.items():
        segment.SetTag(tag, value)
    patch = results.label_patch(np.asarray(label) == spec.label)
    if patch is not None:
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.SetBinaryLabelmapToSegment(nodes._oriented_labelmap(volumeNode, patch), segmentationNode,
                                                segmentId, logic.MODE_REPLACE, patch.extent):
            raise RuntimeError(f"Slicer could not write segment '{spec.name}'")
    return segmentId


def _backend_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lesionseg")
    except PackageNotFoundError:  # a source folder without metadata: the tag is informative only
        return ""


def jump_slices_to(point_ras: Sequence[float], volumeNode: Any = None) -> np.ndarray:
    """Centre every slice view on a RAS point; returns the world RAS point jumped to.

    Args:
        point_ras: ``(3,)`` RAS mm in the node coordinates of ``volumeNode`` (world when ``None``); a linear
            parent transform of the volume is applied first.
    """
    import slicer

    point = np.asarray(point_ras, dtype=np.float64).reshape(3)
    to_world: Optional[np.ndarray] = None if volumeNode is None else nodes.node_to_world(volumeNode)
    if to_world is not None:
        point = (to_world @ np.append(point, 1.0))[:3]
    slicer.modules.markups.logic().JumpSlicesToLocation(float(point[0]), float(point[1]), float(point[2]), True)
    return point
