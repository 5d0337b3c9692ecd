"""MRML nodes <-> backend images and prompts, and results -> segments (needs Slicer; imported lazily).

Every function reads numbers out of nodes in Slicer's world RAS and hands them to
:mod:`LesionSegLib.scene`, which does the RAS -> LPS flip. Method names used here are checked against
Slicer's API by ``Testing/slicer/test_slicer_api_usage.py``.

Transforms: a volume under a *linear* transform is used in world coordinates (the transform is composed
into its geometry, nothing is hardened); a *non-linear* transform is refused with one clear message. The
result segmentation is put under the volume's transform, so its voxels line up with the volume's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from lesionseg import Box, Image, InputError, Prompt, RecistLine

from . import results, scene

logger = logging.getLogger(__name__)


def _ijk_to_ras(volumeNode: Any) -> np.ndarray:
    """The volume's own IJKToRAS 4x4 (node coordinates)."""
    import slicer
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def node_to_world(node: Any) -> Optional[np.ndarray]:
    """4x4 node-to-world matrix of the node's parent transforms (``None`` when not transformed).

    Raises:
        InputError: a parent transform is non-linear.
    """
    import slicer

    parent = node.GetParentTransformNode()
    if parent is None:
        return None
    try:
        return slicer.util.arrayFromTransformMatrix(parent, toWorld=True)
    except RuntimeError as exc:
        raise InputError(f"'{node.GetName()}' is under a non-linear transform; harden the transform "
                         "(Data module, right-click, Harden transform) or remove it first") from exc


def world_ijk_to_ras(volumeNode: Any) -> np.ndarray:
    """IJK -> world RAS 4x4 of a volume, linear parent transforms included."""
    to_world = node_to_world(volumeNode)
    ijk = _ijk_to_ras(volumeNode)
    return ijk if to_world is None else to_world @ ijk


def volume_to_image(volumeNode: Any) -> Image:
    """A scalar volume node as a backend image in world LPS (voxels copied, ``[k, j, i]``).

    Raises:
        InputError: no volume, no voxels, more than one component, or a non-linear/sheared transform.
    """
    import slicer

    if volumeNode is None:
        raise InputError("select an input volume")
    if volumeNode.GetImageData() is None:
        raise InputError(f"volume '{volumeNode.GetName()}' holds no voxels")
    array = slicer.util.arrayFromVolume(volumeNode)
    if array.ndim != 3:
        raise InputError(f"volume '{volumeNode.GetName()}' has {array.shape[-1]} components per voxel; "
                         "a scalar (single-component) volume is needed")
    return scene.image_from_volume_array(np.array(array, copy=True), _ijk_to_ras(volumeNode),
                                         node_to_world(volumeNode), {"name": volumeNode.GetName()})


def volume_cache_key(volumeNode: Any) -> tuple:
    """Identifies the volume's voxels and world geometry: changes when either changes."""
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise InputError("select an input volume that holds voxels")
    geometry = np.round(world_ijk_to_ras(volumeNode), 6)
    return (volumeNode.GetID(), volumeNode.GetImageData().GetMTime(), geometry.tobytes())


def roi_to_box(roiNode: Any) -> Box:
    """A markups ROI node (world RAS) as an LPS box; rotated ROIs give their bounding box (with a warning).

    Raises:
        InputError: no ROI, an inside-out ROI, or an ROI that has not been placed.
    """
    import slicer

    if roiNode is None:
        raise InputError("select or place an ROI around the lesion")
    if roiNode.GetInsideOut():
        raise InputError(f"ROI '{roiNode.GetName()}' is inside-out; turn that off to use it as a box")
    centre, size = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    roiNode.GetCenterWorld(centre)
    roiNode.GetSizeWorld(size)
    axes = slicer.util.arrayFromVTKMatrix(roiNode.GetObjectToWorldMatrix())[:3, :3]
    return scene.roi_to_box(centre, size, axes)


def line_to_recist(lineNode: Any, shortLineNode: Any = None) -> RecistLine:
    """Markups line node(s) (world RAS) as an LPS RECIST prompt."""
    import slicer

    def ends(node: Any) -> np.ndarray:
        points = slicer.util.arrayFromMarkupsControlPoints(node, world=True)
        if points.shape[0] != 2:
            raise InputError(f"line '{node.GetName()}' needs exactly two points, it has {points.shape[0]}")
        return points

    if lineNode is None:
        raise InputError("select or draw the long-axis line")
    return scene.line_to_recist(ends(lineNode), None if shortLineNode is None else ends(shortLineNode))


def create_roi(centre: np.ndarray, size: np.ndarray, axes: np.ndarray, name: str = "lesion box") -> Any:
    """A new box ROI node (no parent transform): RAS ``centre``, side ``size`` mm, ``axes`` columns."""
    import slicer

    objectToNode = np.eye(4)
    objectToNode[:3, :3] = axes
    objectToNode[:3, 3] = centre
    roiNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    roiNode.CreateDefaultDisplayNodes()
    roiNode.SetAndObserveObjectToNodeMatrix(slicer.util.vtkMatrixFromArray(objectToNode))
    roiNode.SetCenter(*[float(c) for c in centre])
    roiNode.SetSize(*[float(s) for s in size])
    return roiNode


def slice_view_geometry(sliceNodeID: str = "vtkMRMLSliceNodeRed") -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(SliceToRAS 4x4, field of view (3,) mm)`` of a slice view, or ``None`` without that view."""
    import slicer

    sliceNode = slicer.mrmlScene.GetNodeByID(sliceNodeID)
    if sliceNode is None:
        return None
    return (slicer.util.arrayFromVTKMatrix(sliceNode.GetSliceToRAS()),
            np.array(sliceNode.GetFieldOfView(), dtype=np.float64))


@dataclass(frozen=True)
class AddedSegment:
    """Where a result went, and the callable that removes it again (exact undo)."""

    segmentationNode: Any
    segmentId: str
    name: str
    createdNode: bool
    revert: Callable[[], None]


def _place_under_study(volumeNode: Any, segmentationNode: Any) -> None:
    """Put the segmentation beside the volume in the subject hierarchy (under its study, if any)."""
    import slicer

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    invalid = shNode.GetInvalidItemID()
    volumeItem = shNode.GetItemByDataNode(volumeNode)
    segmentationItem = shNode.GetItemByDataNode(segmentationNode)
    if volumeItem != invalid and segmentationItem != invalid:
        shNode.SetItemParent(segmentationItem, shNode.GetItemParent(volumeItem))


def _oriented_labelmap(volumeNode: Any, patch: results.LabelPatch) -> Any:
    """The patch as a vtkOrientedImageData whose extent is only the changed block, on the volume's grid."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    labelmap = slicer.vtkOrientedImageData()
    labelmap.SetExtent(*patch.extent)
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    voxels[:] = np.ascontiguousarray(patch.array, dtype=np.uint8).ravel()
    ijkToRas = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRas)
    labelmap.SetImageToWorldMatrix(ijkToRas)
    return labelmap


def _set_segment_metadata(segment: Any, method: str, prompt: Prompt) -> None:
    if hasattr(segment, "SetTerminology"):
        segment.SetTerminology(results.TERMINOLOGY_MASS)
    else:
        segment.SetTag(segment.GetTerminologyEntryTagName(), results.TERMINOLOGY_MASS)
    from importlib.metadata import PackageNotFoundError, version

    try:
        backend_version = version("lesionseg")
    except PackageNotFoundError:  # imported from a source folder without metadata: the tag is informative only
        backend_version = ""
    for tag, value in results.segment_tags(method, prompt, backend_version).items():
        segment.SetTag(tag, value)


def add_lesion_segment(volumeNode: Any, segmentationNode: Any, patch: results.LabelPatch, method: str,
                       prompt: Prompt) -> AddedSegment:
    """Write a result as a NEW segment ``lesion N``; existing segments are never modified.

    Args:
        volumeNode: the segmented volume (its grid is the patch's grid).
        segmentationNode: where to add the segment; ``None`` creates one under the volume's study.
        patch: the changed block; only its extent is written.
        method, prompt: stored in the segment's tags (prompt as JSON, LPS mm).

    On any failure everything added so far is removed again and the error is raised.

    Raises:
        InputError: the segmentation is under a different transform than the volume.
    """
    import slicer

    if segmentationNode is not None and segmentationNode.GetTransformNodeID() != volumeNode.GetTransformNodeID():
        raise InputError(f"segmentation '{segmentationNode.GetName()}' and volume '{volumeNode.GetName()}' are "
                         "under different transforms; choose another segmentation or create a new one")
    createdNode = segmentationNode is None
    if createdNode:
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                              f"{volumeNode.GetName()} lesions")
    segmentation = segmentationNode.GetSegmentation()
    segmentId = ""
    try:
        # Always: a segmentation made with a node combobox's "Create new Segmentation" has no display node, and
        # its segments would stay invisible. A no-op when the node already has one.
        segmentationNode.CreateDefaultDisplayNodes()
        if createdNode:
            segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
            _place_under_study(volumeNode, segmentationNode)
        role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
        if segmentationNode.GetNodeReference(role) is None:
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
        name = results.next_lesion_name(names)
        segmentId = segmentation.AddEmptySegment("", name, results.lesion_color(name))
        _set_segment_metadata(segmentation.GetSegment(segmentId), method, prompt)
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.SetBinaryLabelmapToSegment(_oriented_labelmap(volumeNode, patch), segmentationNode, segmentId,
                                                logic.MODE_REPLACE, patch.extent):
            raise RuntimeError(f"Slicer could not write the result into segment '{name}'")
    except Exception:
        if createdNode:
            _remove_with_display_nodes(segmentationNode)
        elif segmentId:
            segmentation.RemoveSegment(segmentId)
        raise
    logger.info("added %s (%d voxels) to %s", name, patch.voxels, segmentationNode.GetName())
    return AddedSegment(segmentationNode, segmentId, name, createdNode,
                        _remover(segmentationNode, segmentId, createdNode))


def _remove_with_display_nodes(node: Any) -> None:
    """Remove a node we created, and the display nodes created with it (if still in the scene)."""
    import slicer

    scene = slicer.mrmlScene
    displayNodes = [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
    if scene.IsNodePresent(node):
        scene.RemoveNode(node)
    for displayNode in displayNodes:
        if displayNode is not None and scene.IsNodePresent(displayNode):
            scene.RemoveNode(displayNode)


def _remover(segmentationNode: Any, segmentId: str, createdNode: bool) -> Callable[[], None]:
    """The exact inverse of :func:`add_lesion_segment` (used by the undo stack)."""
    def revert() -> None:
        if createdNode:
            _remove_with_display_nodes(segmentationNode)
        else:
            segmentationNode.GetSegmentation().RemoveSegment(segmentId)

    return revert


def segment_array(segmentationNode: Any, segmentId: str, volumeNode: Any) -> np.ndarray:
    """A segment as a ``(K, J, I)`` uint8 0/1 array on the volume's grid (copy)."""
    import slicer

    return np.asarray(slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode),
                      dtype=np.uint8)
