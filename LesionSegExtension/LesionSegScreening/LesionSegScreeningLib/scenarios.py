"""Scenarios of the screening module's Slicer self-test (``LesionSegScreeningTest``).

Each takes the running ``unittest.TestCase`` and a fresh ``LesionSegScreeningLogic``; Slicer and the backend are
imported inside, so this file imports without either. The phantom run needs the trained ``s4c`` model
folder and skips with a message when it is not installed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from LesionSegLib import selftests

from . import screening


def _phantom_volumes() -> dict[str, Any]:
    """The seed-0 tumour case of the backend's dual-phase pancreas phantom, as two scalar volumes."""
    import slicer
    from lesionseg.phantoms.pancreas import pancreas_ct
    from LesionSegLib import scene

    arterial, venous, _, _ = pancreas_ct(seed=0, kind="tumour")
    return {phase: slicer.util.addVolumeFromArray(np.asarray(image.array), ijkToRAS=scene.ijk_to_ras_from_image(image),
                                                  name=f"phantom {phase}")
            for phase, image in (("venous", venous), ("arterial", arterial))}


def screen_phantom(test: Any, logic: Any) -> None:
    """Both phases -> positive verdict, six named segments beside the user's, jump-to; a rerun replaces them."""
    from LesionSegLib import nodes

    selftests.skip_without_weights(test, screening.METHOD)
    volumes = _phantom_volumes()
    segmentationNode, userId = selftests.user_segmentation(volumes["venous"])
    userBefore = nodes.segment_array(segmentationNode, userId, volumes["venous"])
    progress: list[float] = []
    report = logic.process(venousNode=volumes["venous"], arterialNode=volumes["arterial"],
                           segmentationNode=segmentationNode, device="cpu",
                           onProgress=lambda fraction, message: progress.append(fraction))
    test.assertTrue(progress, "no PROGRESS line reached the panel")
    test.assertEqual(set(report["phases"]), set(screening.PHASES))
    verdict = screening.verdict_from_report(report)
    test.assertEqual(verdict.verdict, report["verdict"])
    test.assertIs(report["positive"], True, f"the tumour phantom was screened {report['verdict']}: "
                  + "; ".join(verdict.reasons))
    test.assertEqual(verdict.title, "Positive")
    expected = sorted(["user segment"] + [spec.name for phase in screening.PHASES
                                          for spec in screening.segment_specs(phase)])
    test.assertEqual(selftests.segment_names(segmentationNode), expected)
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, userId, volumes["venous"]), userBefore)
    test.assertIs(logic.lastSegmentationNode, segmentationNode)
    test.assertTrue((logic.lastOutputDir / "report.json").is_file())

    targets = screening.jump_targets(report)
    test.assertTrue(targets, "a positive report lists findings")
    np.testing.assert_allclose(logic.jumpTo(targets[0]), targets[0].ras)

    logic.process(venousNode=volumes["venous"], segmentationNode=segmentationNode, device="cpu")
    expected = sorted(["user segment"] + [spec.name for spec in screening.segment_specs("venous")])
    test.assertEqual(selftests.segment_names(segmentationNode), expected)
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, userId, volumes["venous"]), userBefore)


def no_phase_raises(test: Any, logic: Any) -> None:
    """No phase: ValueError naming what to select, nothing added to the scene, no run started."""
    import slicer

    count = slicer.mrmlScene.GetNumberOfNodes()
    for wait in (True, False):
        with test.assertRaisesRegex(ValueError, "venous or an arterial"):
            logic.process(waitForCompletion=wait)
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
    test.assertIsNone(logic.job)


def cancel_leaves_scene_unchanged(test: Any, logic: Any) -> None:
    """Cancel right after the start: ``finish`` returns None, no node is added, the temporary folder is gone."""

    selftests.skip_without_weights(test, screening.METHOD)
    volumes = _phantom_volumes()
    selftests.cancel_leaves_scene_unchanged(test, logic, venousNode=volumes["venous"])
