"""Registers the Segment Editor effect "Lesion GrabCut/CRF" (hidden module; the effect is in the Lib folder)."""
from __future__ import annotations

import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule


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
