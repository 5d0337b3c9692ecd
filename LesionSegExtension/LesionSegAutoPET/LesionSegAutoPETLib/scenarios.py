"""Scenarios of the PET/CT module's Slicer self-test (``LesionSegAutoPETTest``).

Each takes the running ``unittest.TestCase`` and a fresh ``LesionSegAutoPETLogic``; Slicer and the backend are
imported inside, so this file imports without either. The phantom is the backend's seeded whole-body PET/CT
(``lesionseg.phantoms.wholebody_petct(seed=0, with_lesions=True)``: 100 x 64 x 256 voxels of 4 mm, PET in
SUVbw), put into one subject-hierarchy study so that the CT pairs automatically. The runs need the trained
``autopet-l2snet`` model folder and skip with a message when it is not installed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from LesionSegLib import selftests

from . import autopet


def _phantom_study() -> tuple[Any, Any, np.ndarray]:
    """``(PET node, CT node, truth (K, J, I) 0/1)``, both volumes under one subject-hierarchy study."""
    import slicer
    from lesionseg.phantoms import wholebody_petct
    from LesionSegLib import scene

    pet, ct, label, _ = wholebody_petct(seed=0, with_lesions=True)
    petNode, ctNode = (slicer.util.addVolumeFromArray(np.asarray(image.array),
                                                      ijkToRAS=scene.ijk_to_ras_from_image(image), name=name)
                       for image, name in ((pet, "phantom PET"), (ct, "phantom CT")))
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    subject = shNode.CreateSubjectItem(shNode.GetSceneItemID(), "phantom patient")
    study = shNode.CreateStudyItem(subject, "phantom PET/CT")
    for volumeNode in (petNode, ctNode):
        shNode.SetItemParent(shNode.GetItemByDataNode(volumeNode), study)
    return petNode, ctNode, np.asarray(label.array)


def pairing_picks_the_study_ct(test: Any, logic: Any) -> None:
    """The PET's study holds one CT: it is paired; a PET outside any study pairs with nothing."""
    import slicer

    selftests.skip_without_dependencies(test)
    petNode, ctNode, _ = _phantom_study()
    found, reason = logic.pairedCT(petNode)
    test.assertIsNotNone(found, reason)
    test.assertEqual(found.GetID(), ctNode.GetID())
    loose = slicer.util.addVolumeFromArray(np.ones((4, 4, 4), np.float32), name="loose PET")
    test.assertIsNone(logic.pairedCT(loose)[0])


def segment_phantom(test: Any, logic: Any) -> None:
    """One segment per lesion beside the user's, a table node with one row each; a rerun with one segment
    replaces them and reuses the table node."""
    from LesionSegLib import nodes

    selftests.skip_without_weights(test, autopet.METHOD)
    petNode, _, truth = _phantom_study()
    segmentationNode, userId = selftests.user_segmentation(petNode)
    userBefore = nodes.segment_array(segmentationNode, userId, petNode)
    progress: list[float] = []
    result = logic.process(petNode, None, segmentationNode, petUnits="suv", perLesion=True, device="cpu",
                           onProgress=lambda fraction, message: progress.append(fraction))
    test.assertTrue(progress, "no PROGRESS line reached the panel")
    rows = result["rows"]
    test.assertTrue(rows, f"no lesion found in the phantom ({int(truth.sum())} lesion voxels)")
    test.assertEqual(selftests.segment_names(segmentationNode),
                     sorted(["user segment"] + [f"lesion {row['id']}" for row in rows]))
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, userId, petNode), userBefore)
    tableNode = result["tableNode"]
    np.testing.assert_array_equal(slicer_column(tableNode, "ID"), [row["id"] for row in rows])
    np.testing.assert_allclose(slicer_column(tableNode, "SUVmax"), [row["suv_max"] for row in rows])
    total = sum(int(nodes.segment_array(segmentationNode, segmentId, petNode).sum())
                for segmentId in result["segmentIds"])
    test.assertEqual(total, sum(row["voxels"] for row in rows if row["voxels"] is not None))
    np.testing.assert_allclose(logic.jumpTo(result["lesionRows"][0]), rows[0]["centroid_ras"], atol=1e-6)

    again = logic.process(petNode, None, segmentationNode, petUnits="suv", perLesion=False, device="cpu")
    test.assertEqual(selftests.segment_names(segmentationNode), ["lesions", "user segment"])
    test.assertEqual(again["tableNode"].GetID(), tableNode.GetID())
    np.testing.assert_array_equal(nodes.segment_array(segmentationNode, userId, petNode), userBefore)


def pet_only(test: Any, logic: Any) -> None:
    """The CT left empty: the inputs pass the check (the panel shows the PET-only notice) and the run goes without a
    CT. A model trained for PET-only input segments the phantom (``result["petOnly"]``); one that is not (card
    ``preprocessing.ct_dropout`` 0, e.g. the first shipped model) fails with the backend's one-line refusal and
    leaves the scene as it was."""
    import slicer
    from lesionseg.modelfolder import find_model_folder

    selftests.skip_without_weights(test, autopet.METHOD)
    petNode, ctNode, truth = _phantom_study()
    test.assertEqual(logic.checkInputs(petNode, None, "suv").units, "suv")
    test.assertEqual(autopet.input_notice(True, False), autopet.PET_ONLY_NOTICE)
    trained = float(find_model_folder(autopet.METHOD).card.get("preprocessing", {}).get("ct_dropout", 0.0)) > 0
    count = slicer.mrmlScene.GetNumberOfNodes()
    if not trained:
        with test.assertRaisesRegex(RuntimeError, "not trained for PET-only input"):
            logic.process(petNode, None, pairCT=False, petUnits="suv", device="cpu")
        test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        test.assertIsNone(logic.job)
        return
    result = logic.process(petNode, None, pairCT=False, petUnits="suv", perLesion=True, device="cpu")
    test.assertTrue(result["petOnly"])
    test.assertTrue(result["rows"], f"no lesion found PET-only in the phantom ({int(truth.sum())} lesion voxels)")
    paired = logic.process(petNode, None, result["segmentationNode"], petUnits="suv", device="cpu")  # CT paired
    test.assertFalse(paired["petOnly"])


def slicer_column(tableNode: Any, name: str) -> np.ndarray:
    import slicer

    return np.array(slicer.util.arrayFromTableColumn(tableNode, name))


def suv_check_refuses_ct(test: Any, logic: Any) -> None:
    """The CT chosen as PET: ValueError 'does not look like PET in SUV', nothing added, no run started."""
    import slicer

    selftests.skip_without_dependencies(test)
    petNode, ctNode, _ = _phantom_study()
    count = slicer.mrmlScene.GetNumberOfNodes()
    with test.assertRaisesRegex(ValueError, "does not look like PET in SUV"):
        logic.checkInputs(ctNode, petNode, "suv")
    test.assertEqual(logic.checkInputs(petNode, ctNode, "suv").units, "suv")
    for wait in (True, False):
        with test.assertRaisesRegex(ValueError, "does not look like PET in SUV"):
            logic.process(ctNode, petNode, petUnits="suv", waitForCompletion=wait)
    with test.assertRaisesRegex(ValueError, "weight"):
        logic.process(petNode, ctNode, petUnits="bqml")
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
    test.assertIsNone(logic.job)


def cancel_leaves_scene_unchanged(test: Any, logic: Any) -> None:
    """Cancel right after the start: ``finish`` returns None, no node is added, the temporary folder is gone."""

    selftests.skip_without_weights(test, autopet.METHOD)
    petNode, ctNode, _ = _phantom_study()
    selftests.cancel_leaves_scene_unchanged(test, logic, petNode, ctNode, petUnits="suv")
