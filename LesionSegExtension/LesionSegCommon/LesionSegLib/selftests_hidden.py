"""Self-test scenarios of the two hidden modules: ``LesionSegCommon`` (this package) and ``SegmentEditorLesionRefine``.

Each takes the running ``unittest.TestCase`` (``LesionSegCommonTest``, ``SegmentEditorLesionRefineTest``) and
needs Slicer; a scenario that needs the backend's packages skips without them (see
:class:`LesionSegLib.selftests.SkipAwareTest` for how a skip is reported under Reload and Test).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import selftests

EFFECT_NAME = "Lesion GrabCut/CRF"


def dependency_report(test: Any) -> None:
    """The installer's view of this Slicer: the shipped backend and its version are found, every package is either
    importable or listed, and OpenCV is capped exactly when Slicer's numpy is 1.x."""
    from . import dependencies

    folder = dependencies.backend_source_dir()
    test.assertIsNotNone(folder, "the backend folder is not shipped beside LesionSegLib")
    test.assertRegex(dependencies.shipped_backend_version(folder) or "", r"^\d+\.\d+")
    missing = dependencies.missing_packages(optional=True)
    summary = dependencies.install_summary(missing)
    for pkg in missing:
        test.assertIn(pkg.requirement, summary)
    numpy = dependencies.installed_version("numpy")
    test.assertIsNotNone(numpy, "Slicer ships numpy")
    opencv = [r for r in dependencies.pip_requirements(dependencies.PACKAGES, numpy) if r.startswith("opencv")]
    test.assertEqual(dependencies.OPENCV_NUMPY1_CAP in opencv[0], int(numpy.split(".")[0]) < 2)
    test.assertEqual(dependencies.pip_constraints(numpy), [f"numpy=={numpy}"])


def volume_round_trip(test: Any) -> None:
    """A volume node becomes a backend image in LPS with the same voxels and the RAS geometry flipped once."""
    import slicer

    from . import nodes, scene

    selftests.skip_without_dependencies(test)
    ct = selftests.synthetic_ct()
    volumeNode = slicer.util.addVolumeFromArray(ct.array, ijkToRAS=ct.ijk_to_ras, name="LesionSeg round trip")
    image = nodes.volume_to_image(volumeNode)
    expected = scene.image_from_volume_array(ct.array, ct.ijk_to_ras)
    np.testing.assert_array_equal(np.asarray(image.array), ct.array)
    np.testing.assert_allclose(image.spacing, expected.spacing, atol=1e-6)
    np.testing.assert_allclose(image.origin, expected.origin, atol=1e-6)
    np.testing.assert_allclose(image.direction, expected.direction, atol=1e-6)
    np.testing.assert_allclose(nodes.world_ijk_to_ras(volumeNode), ct.ijk_to_ras, atol=1e-6)


def background_process(test: Any) -> None:
    """Slicer's Python runs a child through the background runner: progress parsed, output kept, exit 0."""
    from .process import BackgroundProcess, python_executable

    progress = []
    script = "print('PROGRESS 0.5 half way', flush=True); print('done', flush=True)"
    runner = BackgroundProcess([python_executable(), "-c", script], on_progress=lambda f, m: progress.append((f, m)))
    result = runner.start().wait(timeout=120)
    test.assertTrue(result.ok, result.message())
    test.assertEqual(progress, [(0.5, "half way")])
    test.assertEqual(result.output, ["done"])


def _editor(volumeNode: Any, segmentationNode: Any) -> tuple[Any, Any]:
    """A Segment Editor widget and its parameter node showing ``segmentationNode`` over ``volumeNode``."""
    import slicer

    editorWidget = slicer.qMRMLSegmentEditorWidget()
    editorWidget.setMRMLScene(slicer.mrmlScene)
    editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editorWidget.setMRMLSegmentEditorNode(editorNode)
    editorWidget.setSegmentationNode(segmentationNode)
    editorWidget.setSourceVolumeNode(volumeNode)
    return editorWidget, editorNode


def effect_registered(test: Any) -> None:
    """The effect is registered and its options frame, defaults and GUI update run (no backend needed)."""
    import slicer

    ct = selftests.synthetic_ct()
    volumeNode = slicer.util.addVolumeFromArray(ct.array, ijkToRAS=ct.ijk_to_ras, name="LesionSeg effect CT")
    segmentationNode, _ = selftests.user_segmentation(volumeNode, ct.sphere, "lesion")
    editorWidget, _ = _editor(volumeNode, segmentationNode)
    editorWidget.setActiveEffectByName(EFFECT_NAME)
    effect = editorWidget.activeEffect()
    test.assertIsNotNone(effect, f"the effect {EFFECT_NAME!r} is not registered")
    test.assertEqual(effect.name, EFFECT_NAME)
    effect.self().updateGUIFromMRML()
    test.assertEqual(effect.doubleParameter("iterations"), 5.0)
    editorWidget.setActiveEffectByName("")


def refine_with_strokes(test: Any) -> None:
    """Half a sphere + a foreground stroke in the missing half -> Preview -> Apply grows the segment; strokes are
    painted with overwrite mode "None" (another segment keeps its voxels) and the user's mode comes back."""
    import slicer

    from . import nodes

    selftests.skip_without_dependencies(test)
    ct = selftests.synthetic_ct()
    volumeNode = slicer.util.addVolumeFromArray(ct.array, ijkToRAS=ct.ijk_to_ras, name="LesionSeg effect CT")
    centre = np.argwhere(ct.sphere).mean(axis=0).round().astype(int)
    cut = ct.sphere.copy()
    cut[:, :, centre[2]:] = 0
    segmentationNode, lesionId = selftests.user_segmentation(volumeNode, cut, "lesion")
    otherMask = np.zeros_like(ct.sphere)
    otherMask[centre[0], centre[1] - 2:centre[1] + 3, centre[2] + 2:centre[2] + 6] = 1  # inside the missing half
    otherId = segmentationNode.GetSegmentation().AddEmptySegment("", "other", (0.2, 0.2, 0.9))
    slicer.util.updateSegmentBinaryLabelmapFromArray(otherMask, segmentationNode, otherId, volumeNode)
    editorWidget, editorNode = _editor(volumeNode, segmentationNode)
    editorNode.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments)
    editorNode.SetSelectedSegmentID(lesionId)
    editorWidget.setActiveEffectByName(EFFECT_NAME)
    effect = editorWidget.activeEffect().self()
    effect.onInitialize()
    fgId = effect._helperId("fg")
    test.assertTrue(fgId)
    effect.onPaint("fg")
    test.assertEqual(editorNode.GetOverwriteMode(), slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    test.assertEqual(editorWidget.activeEffect().name, "Paint")
    stroke = np.zeros_like(ct.sphere)
    stroke[centre[0], centre[1], centre[2] + 1:centre[2] + 7] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(stroke, segmentationNode, fgId, volumeNode)
    editorWidget.setActiveEffectByName(EFFECT_NAME)
    test.assertEqual(editorNode.GetOverwriteMode(), slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments)
    effect.runPreview(waitForCompletion=True)
    test.assertTrue(effect._helperId("preview"))
    effect.onApply()
    result = nodes.segment_array(segmentationNode, lesionId, volumeNode)
    test.assertGreater(selftests.dice(result, ct.sphere), selftests.dice(cut, ct.sphere))
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, otherId, volumeNode), otherMask)
    test.assertEqual(selftests.segment_names(segmentationNode), ["lesion", "other"])
    editorWidget.setActiveEffectByName("")
