"""Scenarios of the small-lesion module's Slicer self-test (``LesionSegSmallLesionTest``), and their tiny CT.

:func:`tiny_ct` is pure numpy (the offline tests check it). Each scenario takes the running ``unittest.TestCase``
and a fresh ``LesionSegSmallLesionLogic``; Slicer and the backend are imported inside, so this file imports
without either. The runs need the trained ``small-lesion-il`` model folder and skip with a message when it is
not installed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from LesionSegLib import selftests

from . import smalllesion


@dataclass(frozen=True)
class TinyCT:
    """An abdominal-looking CT crop with small enhancing lesions.

    Attributes:
        array: ``(K, J, I)`` int16 HU: air outside a soft-tissue ellipse (40 HU), a fat rim (-100 HU), three
            spherical lesions of 130 HU (diameters 5, 7 and 10 mm), noise SD 12 HU.
        ijk_to_ras: 4x4 IJKToRAS (1 x 1 x 1.5 mm voxels, i and j flipped as in a DICOM LPS series).
        truth: ``(K, J, I)`` uint8 0/1, the lesions.
        largest: ``(K, J, I)`` uint8 0/1, the 10 mm lesion only ("the user's segment" a prior is learnt from).
        centres_ras: ``(3, 3)`` RAS mm of the lesion centres.
    """

    array: np.ndarray
    ijk_to_ras: np.ndarray
    truth: np.ndarray
    largest: np.ndarray
    centres_ras: np.ndarray


def tiny_ct(shape: tuple[int, int, int] = (24, 56, 64), seed: int = 0) -> TinyCT:
    """The :class:`TinyCT` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    spacing = np.array([1.0, 1.0, 1.5])
    ijk_to_ras = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    ijk_to_ras[:3, 3] = (30.0, 20.0, -15.0)
    k, j, i = np.indices(shape, dtype=np.float64)
    size = np.array(shape[::-1], dtype=np.float64)
    ellipse = ((i - size[0] / 2) / (0.45 * size[0])) ** 2 + ((j - size[1] / 2) / (0.42 * size[1])) ** 2
    array = np.where(ellipse <= 1.0, np.where(ellipse > 0.8, -100.0, 40.0), -1000.0)
    truth, largest, centres = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8), []
    for fraction, diameter in (((0.35, 0.4, 0.5), 5.0), ((0.65, 0.45, 0.5), 7.0), ((0.5, 0.65, 0.5), 10.0)):
        centre = (np.array(fraction) * (size - 1)).round()
        dist = np.sqrt(((i - centre[0]) * spacing[0]) ** 2 + ((j - centre[1]) * spacing[1]) ** 2
                       + ((k - centre[2]) * spacing[2]) ** 2)
        sphere = dist <= diameter / 2
        truth[sphere], array[sphere] = 1, 130.0
        centres.append((ijk_to_ras @ np.append(centre, 1.0))[:3])
        if diameter == 10.0:
            largest[sphere] = 1
    array = array + rng.normal(0.0, 12.0, shape)
    return TinyCT(np.round(array).astype(np.int16), ijk_to_ras, truth, largest, np.array(centres))


def _scene(ct: TinyCT) -> tuple[Any, Any, str]:
    """``(CT node, segmentation with the user's segment "user lesion", its segment ID)``."""
    import slicer

    volumeNode = slicer.util.addVolumeFromArray(ct.array, ijkToRAS=ct.ijk_to_ras, name="tiny CT")
    return (volumeNode, *selftests.user_segmentation(volumeNode, ct.largest, "user lesion"))


def _check_result(test: Any, result: dict, volumeNode: Any, segmentationNode: Any) -> None:
    """Segments named after the rows beside the user's, each holding its row's voxels; a table node lists them."""
    import slicer
    import vtk
    from LesionSegLib import labelmaps, nodes

    rows = result["rows"]
    np.testing.assert_array_equal(slicer.util.arrayFromTableColumn(result["tableNode"], "ID"), [r["id"] for r in rows])
    test.assertEqual(selftests.segment_names(segmentationNode),
                     sorted(["user lesion"] + [row["segment"] for row in rows]))
    test.assertEqual(len(result["segmentIds"]), len(rows))
    for row, segmentId in zip(rows, result["segmentIds"]):
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        test.assertEqual(segment.GetName(), row["segment"])
        test.assertTrue(segment.GetName().startswith(f"Lesion {row['id']} ("))
        tag = vtk.reference("")
        test.assertTrue(segment.GetTag(labelmaps.OWNER_TAG, tag))
        test.assertEqual(tag.get(), smalllesion.OWNER)
        test.assertEqual(int(nodes.segment_array(segmentationNode, segmentId, volumeNode).sum()), row["voxels"])


def segment_tiny_ct(test: Any, logic: Any) -> None:
    """A typed prior, then a prior learnt from the user's segment inside an ROI: one segment per listed lesion,
    the user's segment untouched, the second run replaces the first run's segments only."""
    from LesionSegLib import nodes

    selftests.skip_without_weights(test, smalllesion.METHOD)
    ct = tiny_ct()
    volumeNode, segmentationNode, userId = _scene(ct)
    userBefore = nodes.segment_array(segmentationNode, userId, volumeNode)
    progress: list[float] = []
    result = logic.process(volumeNode, segmentationNode, prior=(130.0, 20.0), device="cpu",
                           onProgress=lambda fraction, message: progress.append(fraction))
    test.assertTrue(progress, "no PROGRESS line reached the logic")
    _check_result(test, result, volumeNode, segmentationNode)
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, userId, volumeNode), userBefore)
    if result["rows"]:
        np.testing.assert_allclose(logic.jumpTo(result["lesionRows"][0]), result["rows"][0]["centroid_ras"],
                                   atol=1e-6)

    roiNode = selftests.roi(ct.centres_ras.mean(axis=0), np.array([60.0, 60.0, 30.0]))
    again = logic.process(volumeNode, segmentationNode, roiNode, prior=userId, device="cpu")
    _check_result(test, again, volumeNode, segmentationNode)
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, userId, volumeNode), userBefore)
    test.assertIsNotNone(again["priorPlot"], "the learnt prior's plot is missing")
    test.assertEqual(again["prior"], f"learnt from segment {userId}")
    stored = json.loads(smalllesion.prior_choice(userId).tag())
    test.assertEqual(stored, {"kind": "segment", "segment_id": userId})


def bad_input_raises(test: Any, logic: Any) -> None:
    """SD <= 0, a missing prior table, an unknown or empty segment, an ROI outside the CT: one clear error each,
    nothing added to the scene, no run started."""
    import slicer
    from lesionseg import InputError

    selftests.skip_without_dependencies(test)
    ct = tiny_ct()
    volumeNode, segmentationNode, _ = _scene(ct)
    empty = segmentationNode.GetSegmentation().AddEmptySegment("", "empty", (0.5, 0.5, 0.5))
    outside = selftests.roi(ct.centres_ras[0] + np.array([0.0, 0.0, 500.0]), np.array([20.0, 20.0, 20.0]))
    count = slicer.mrmlScene.GetNumberOfNodes()
    cases = [((130.0, 0.0), None, ValueError, "SD must be more than 0"),
             ("no_such_prior.json", None, ValueError, "does not exist"),
             ("no such segment", None, ValueError, "has no segment"),
             (empty, None, ValueError, "is empty"),
             (None, outside, InputError, "outside")]
    for prior, roiNode, error, message in cases:
        for wait in (True, False):
            with test.assertRaisesRegex(error, message):
                logic.process(volumeNode, segmentationNode, roiNode, prior=prior, waitForCompletion=wait)
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
    test.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), 2)
    test.assertIsNone(logic.job)


def cancel_leaves_scene_unchanged(test: Any, logic: Any) -> None:
    """Cancel right after the start: ``finish`` returns None, no node is added, the temporary folder is gone."""

    selftests.skip_without_weights(test, smalllesion.METHOD)
    volumeNode, _, _ = _scene(tiny_ct())
    selftests.cancel_leaves_scene_unchanged(test, logic, volumeNode)
