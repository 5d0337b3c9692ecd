"""Scenarios of the modules' Slicer self-tests, the synthetic CT they use, and how a skipped test is reported.

:func:`synthetic_ct` and :func:`dice` are pure numpy (the offline tests use them too); the scenario
functions need Slicer and take the running ``unittest.TestCase`` and a module logic.

Skipping: a scenario calls ``test.skipTest(...)`` when the backend's packages (or a model) are missing. Under ctest
(``slicer.testing.runUnitTest``: a ``unittest`` runner) that is reported as a skip. Under *Reload and Test* and the
Self Tests module, Slicer calls ``<M>Test().runTest()``, whose base implementation calls every test method directly
(``ScriptedLoadableModuleTest.runTest``), so a ``SkipTest`` would surface as a failure and stop the other tests:
every LesionSeg ``<M>Test`` therefore derives from :class:`SkipAwareTest` first, whose ``runTest`` does what the base
does but logs a skipped test and carries on.
"""
from __future__ import annotations

import json
import logging
import unittest
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


class SkipAwareTest:
    """Mixin placed before ``ScriptedLoadableModuleTest``: its ``runTest`` (what Reload and Test and the Self Tests
    module call) runs every test method like Slicer's, but reports ``unittest.SkipTest`` as a skip and goes on.

    Attributes:
        skipped: ``{test method name: reason}`` of the last :meth:`runTest`.
    """

    moduleTestNames: list = []
    skipped: dict = {}

    def runTest(self, **kwargs: Any) -> None:
        names = list(self.moduleTestNames)
        if not names:
            logging.warning("No test is defined in %s", type(self).__name__)
            return
        self.skipped = {}
        self.setUpClass()
        for name in names:
            self.setUp()
            logging.info("Running %s", name)
            try:
                getattr(self, name)()
            except unittest.SkipTest as exc:
                self.skipped[name] = str(exc)
                logging.warning("%s skipped: %s", name, exc)
            finally:
                self.tearDown()
        self.tearDownClass()


@dataclass(frozen=True)
class SyntheticCT:
    """A CT-like volume with one bright sphere.

    Attributes:
        array: ``(K, J, I)`` int16 HU.
        ijk_to_ras: 4x4 IJKToRAS (anisotropic spacing, axes flipped as in a DICOM LPS series).
        sphere: ``(K, J, I)`` uint8 0/1, the lesion truth.
        centre_ras: ``(3,)`` RAS mm of the sphere centre.
        box_size: ``(3,)`` mm, a box side around the sphere with a margin.
        user_mask: ``(K, J, I)`` uint8, a small block away from the sphere ("the user's segment").
    """

    array: np.ndarray
    ijk_to_ras: np.ndarray
    sphere: np.ndarray
    centre_ras: np.ndarray
    box_size: np.ndarray
    user_mask: np.ndarray


def synthetic_ct(shape: tuple[int, int, int] = (20, 56, 64), spacing: tuple[float, float, float] = (0.8, 0.9, 2.5),
                 radius_mm: float = 10.0, seed: int = 0) -> SyntheticCT:
    """Soft tissue (40 HU, noise 15) in lung (-750 HU) with a 120 HU sphere of ``radius_mm`` at the centre."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape, dtype=np.float64)
    ijk_to_ras = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    ijk_to_ras[:3, 3] = (40.0, 30.0, -20.0)
    centre_ijk = (np.array(shape[::-1], dtype=np.float64) - 1) / 2
    dist = np.sqrt(((i - centre_ijk[0]) * spacing[0]) ** 2 + ((j - centre_ijk[1]) * spacing[1]) ** 2
                   + ((k - centre_ijk[2]) * spacing[2]) ** 2)
    sphere = (dist <= radius_mm).astype(np.uint8)
    array = np.where(sphere > 0, 120.0, -750.0) + rng.normal(0.0, 15.0, shape)
    user_mask = np.zeros(shape, np.uint8)
    user_mask[1:4, 2:8, 2:8] = 1
    centre_ras = (ijk_to_ras @ np.append(centre_ijk, 1.0))[:3]
    return SyntheticCT(array.astype(np.int16), ijk_to_ras, sphere, centre_ras,
                       np.full(3, 2 * radius_mm + 8.0), user_mask)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary arrays (1.0 when both are empty)."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def skip_without_dependencies(test: Any) -> None:
    """Skip (never install: tests run in testing mode) when the backend's packages are missing."""
    from . import dependencies

    missing = dependencies.missing_packages()
    if missing:
        test.skipTest("LesionSeg packages missing: " + ", ".join(p.requirement for p in missing))


def skip_without_crf(test: Any) -> None:
    """Skip without the backend's packages or without the optional DenseCRF (classical-box and recist-coseg use it)."""
    from . import dependencies

    skip_without_dependencies(test)
    if not dependencies.crf_available():
        test.skipTest("DenseCRF (pydensecrf2, optional) is not installed")


def skip_without_weights(test: Any, method: str) -> None:
    """Skip without the backend's packages or without an installed model folder of ``method``."""
    skip_without_dependencies(test)
    from lesionseg.modelfolder import find_model_folder

    if find_model_folder(method) is None:
        test.skipTest(f"no {method} model folder is installed (package weights or $LESIONSEG_WEIGHTS)")


def user_segmentation(volumeNode: Any, mask: Optional[np.ndarray] = None,
                      name: str = "user segment") -> tuple[Any, str]:
    """``(segmentation, segment ID)``: a new segmentation on the volume's geometry holding one user segment ``name``
    with the voxels of ``mask`` (``(K, J, I)`` 0/1; default a small block in a corner of the volume)."""
    import slicer

    if mask is None:
        mask = np.zeros(slicer.util.arrayFromVolume(volumeNode).shape, np.uint8)
        mask[:2, :4, :4] = 1
    segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "user segmentation")
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    userId = segmentationNode.GetSegmentation().AddEmptySegment("", name, (0.1, 0.8, 0.1))
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, userId, volumeNode)
    return segmentationNode, userId


def segment_names(segmentationNode: Any) -> list[str]:
    """The names of the segmentation's segments, sorted."""
    segmentation = segmentationNode.GetSegmentation()
    return sorted(segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments()))


def roi(centre_ras: np.ndarray, size: np.ndarray, name: str = "lesion box") -> Any:
    """A new ROI node (world RAS centre and side lengths, mm)."""
    import slicer

    roiNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    roiNode.SetCenterWorld([float(c) for c in centre_ras])
    roiNode.SetSizeWorld([float(s) for s in size])
    return roiNode


def _scene_with_user_segment(ct: SyntheticCT) -> tuple[Any, Any, str]:
    import slicer

    volumeNode = slicer.util.addVolumeFromArray(ct.array, ijkToRAS=ct.ijk_to_ras, name="LesionSeg test CT")
    return (volumeNode, *user_segmentation(volumeNode, ct.user_mask))


def segment_sphere(test: Any, logic: Any) -> None:
    """A new segment with Dice > 0.8, the user's segment untouched, prompt tags stored, undo exact."""
    import slicer
    import vtk
    from lesionseg import Box, prompt_from_dict

    from . import nodes, results, scene

    skip_without_crf(test)
    ct = synthetic_ct()
    volumeNode, segmentationNode, userId = _scene_with_user_segment(ct)
    userBefore = nodes.segment_array(segmentationNode, userId, volumeNode)
    test.assertEqual(int(userBefore.sum()), int(ct.user_mask.sum()))
    roiNode = roi(ct.centre_ras, ct.box_size)
    segmentation = segmentationNode.GetSegmentation()

    segmentId = logic.process(volumeNode, roiNode, segmentationNode, method="classical-box", device="cpu")
    test.assertEqual(segmentation.GetNumberOfSegments(), 2)
    segment = segmentation.GetSegment(segmentId)
    test.assertEqual(segment.GetName(), "lesion 1")
    overlap = dice(nodes.segment_array(segmentationNode, segmentId, volumeNode), ct.sphere)
    test.assertGreater(overlap, 0.8, f"Dice {overlap:.3f}")
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, userId, volumeNode), userBefore)
    tag = vtk.reference("")
    test.assertTrue(segment.GetTag(results.METHOD_TAG, tag))
    test.assertEqual(tag.get(), "classical-box")
    test.assertTrue(segment.GetTag(results.PROMPT_TAG, tag))
    stored = prompt_from_dict(json.loads(tag.get()))
    expected = scene.roi_to_box(ct.centre_ras, ct.box_size)
    test.assertIsInstance(stored, Box)
    np.testing.assert_allclose(stored.lo, expected.lo, atol=1e-4)
    np.testing.assert_allclose(stored.hi, expected.hi, atol=1e-4)

    test.assertIsNotNone(logic.undo())
    test.assertIsNone(segmentation.GetSegment(segmentId))
    test.assertEqual(segmentation.GetNumberOfSegments(), 1)
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, userId, volumeNode), userBefore)

    nodeCount = slicer.mrmlScene.GetNumberOfNodes()
    logic.process(volumeNode, roiNode, None, method="classical-box", device="cpu")
    created = logic.lastResult.segmentationNode
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    test.assertEqual(shNode.GetItemParent(shNode.GetItemByDataNode(created)),
                     shNode.GetItemParent(shNode.GetItemByDataNode(volumeNode)))
    test.assertEqual(logic.lastResult.name, "lesion 1")
    test.assertIsNotNone(logic.undo())
    test.assertFalse(slicer.mrmlScene.IsNodePresent(created))
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
    test.assertIsNone(logic.undo())


def bad_input_leaves_scene_unchanged(test: Any, logic: Any) -> None:
    """An ROI outside the volume and an unplaced ROI raise one LesionSegError; nothing is added."""
    import slicer
    from lesionseg import LesionSegError

    skip_without_crf(test)
    ct = synthetic_ct()
    volumeNode, segmentationNode, _ = _scene_with_user_segment(ct)
    outside = roi(ct.centre_ras + np.array([0.0, 0.0, 500.0]), ct.box_size)
    unplaced = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "unplaced")
    nodeCount = slicer.mrmlScene.GetNumberOfNodes()
    for roiNode, segmentation in ((outside, segmentationNode), (outside, None), (unplaced, segmentationNode)):
        with test.assertRaises(LesionSegError):
            logic.process(volumeNode, roiNode, segmentation, method="classical-box", device="cpu")
        test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        test.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), 1)
    test.assertFalse(logic.canUndo())


def cancel_leaves_scene_unchanged(test: Any, logic: Any, *inputs: Any, **options: Any) -> None:
    """Start ``logic.process(*inputs, waitForCompletion=False, device="cpu", **options)`` and cancel it right away:
    ``finish`` returns None, no node is added and the run's temporary folder is gone. Build the scene before
    calling: the node count is taken here."""
    import slicer

    count = slicer.mrmlScene.GetNumberOfNodes()
    runner = logic.process(*inputs, waitForCompletion=False, device="cpu", **options)
    folder = logic.job.folder
    test.assertTrue(folder.is_dir())
    runner.cancel()
    test.assertIsNone(logic.finish(runner.wait(timeout=60)))
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
    test.assertIsNone(logic.job)
    test.assertFalse(folder.exists())
