"""Registers the Segment Editor effect "Lesion GrabCut/CRF" (hidden module; the effect is in the Lib folder)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

try:
    import LesionSegLib  # noqa: F401  (beside this module once built/installed)
except ImportError:  # source checkout: the shared package lives in the sibling LesionSegCommon folder
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "LesionSegCommon"))
from LesionSegLib import selftests  # pure (numpy)


class SegmentEditorLesionRefine(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SegmentEditorLesionRefine"
        self.parent.categories = ["Segmentation.LesionSeg"]
        self.parent.dependencies = ["Segmentations", "LesionSegCommon"]
        self.parent.contributors = ["LesionSeg contributors"]
        self.parent.hidden = True
        self.parent.helpText = ("Segment Editor effect 'Lesion GrabCut/CRF': correct a lesion segment with "
                                "foreground/background strokes (GrabCut, then DenseCRF).")
        self.parent.acknowledgementText = "See the LesionSeg README."
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)

    def registerEditorEffect(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as qSlicerSegmentationsEditorEffects

        instance = qSlicerSegmentationsEditorEffects.qSlicerSegmentEditorScriptedEffect(None)
        effectFilename = os.path.join(os.path.dirname(__file__), "SegmentEditorLesionRefineLib",
                                      "SegmentEditorEffect.py")
        instance.setPythonSource(effectFilename.replace("\\", "/"))
        instance.self().register()


class SegmentEditorLesionRefineTest(selftests.SkipAwareTest, ScriptedLoadableModuleTest):
    """Runs inside Slicer (Self Tests module, ctest); scenarios in LesionSegLib.selftests_hidden."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def test_EffectRegistered(self) -> None:
        from LesionSegLib import selftests_hidden

        selftests_hidden.effect_registered(self)

    def test_RefineWithStrokes(self) -> None:
        from LesionSegLib import selftests_hidden

        selftests_hidden.refine_with_strokes(self)
