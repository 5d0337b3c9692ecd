"""Segment Editor effect "Lesion GrabCut/CRF": correct the selected segment with strokes (GrabCut + DenseCRF).

Work flow (Slicer's AutoComplete pattern: Initialize / Preview / Apply / Cancel):

1. Initialize: the selected segment is the initial mask; two helper segments are added for strokes,
   "<name> fg strokes" (green) and "<name> bg strokes" (red). Paint into them with the Paint effect
   (the buttons select the helper segment and switch to Paint), then come back to this effect.
2. Preview: GrabCut from the mask with the strokes as sure foreground / background, then DenseCRF with
   the slider settings (:mod:`SegmentEditorLesionRefineLib.refine`); shown as "<name> preview".
3. Apply: the preview replaces the selected segment (one Segment Editor undo step); helpers removed.
   Cancel: helpers removed, the segment unchanged.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import ctk
import numpy as np
import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
try:
    import LesionSegLib  # noqa: F401
except ImportError:  # source checkout: the shared package lives in the sibling LesionSegCommon folder
    sys.path.insert(0, str(_HERE.parent.parent / "LesionSegCommon"))

HELPERS = {"fg": ("fg strokes", (0.1, 0.9, 0.1)), "bg": ("bg strokes", (0.9, 0.1, 0.1)),
           "preview": ("preview", (1.0, 0.9, 0.1))}
SLIDERS = (  # name, label, minimum, maximum, step, tooltip
    ("iterations", "GrabCut iterations", 1, 20, 1, "GrabCut iterations per slice"),
    ("stroke_radius_mm", "Stroke radius (mm)", 0.5, 10, 0.5, "radius of the disks painted at stroke voxels"),
    ("band_mm", "Background band (mm)", 1, 30, 1, "probable-background band outside the mask"),
    ("crf_iterations", "CRF iterations", 1, 20, 1, "DenseCRF mean-field iterations"),
    ("gaussian_sxy_mm", "CRF smoothness width (mm)", 0.5, 20, 0.5, "Gaussian kernel width"),
    ("gaussian_compat", "CRF smoothness weight", 0, 20, 0.5, "Gaussian kernel weight"),
    ("bilateral_sxy_mm", "CRF appearance width (mm)", 1, 50, 1, "bilateral kernel spatial width"),
    ("bilateral_sintensity", "CRF intensity width", 1, 100, 1, "bilateral kernel intensity width (grey levels)"),
    ("bilateral_compat", "CRF appearance weight", 0, 20, 0.5, "bilateral kernel weight"),
)


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = "Lesion GrabCut/CRF"
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.sliders = {}

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = _HERE.parent / "Resources" / "Icons" / "SegmentEditorLesionRefine.png"
        return qt.QIcon(str(iconPath)) if iconPath.is_file() else qt.QIcon()

    def helpText(self):
        return ("<html>Correct the selected lesion segment with strokes.<p>Initialize, paint foreground / "
                "background strokes, Preview (GrabCut + DenseCRF), then Apply (undoable) or Cancel.</html>")

    def setupOptionsFrame(self):
        self.initializeButton = qt.QPushButton("Initialize")
        self.initializeButton.setToolTip("Add the stroke segments for the selected segment")
        self.paintFgButton = qt.QPushButton("Paint foreground")
        self.paintBgButton = qt.QPushButton("Paint background")
        strokes = qt.QHBoxLayout()
        for button in (self.initializeButton, self.paintFgButton, self.paintBgButton):
            strokes.addWidget(button)
        self.scriptedEffect.addOptionsWidget(strokes)
        from SegmentEditorLesionRefineLib.refine import RefineSettings

        defaults = RefineSettings()
        for name, label, lo, hi, step, tip in SLIDERS:
            slider = ctk.ctkSliderWidget()
            slider.minimum, slider.maximum, slider.singleStep = lo, hi, step
            slider.decimals = 0 if float(step).is_integer() else 1
            slider.value = getattr(defaults, name)
            slider.setToolTip(tip)
            slider.connect("valueChanged(double)", self.updateMRMLFromGUI)
            self.scriptedEffect.addLabeledOptionsWidget(label + ":", slider)
            self.sliders[name] = slider
        self.useCrfCheckBox = qt.QCheckBox("Refine with DenseCRF")
        self.useCrfCheckBox.checked = True
        self.useCrfCheckBox.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.scriptedEffect.addOptionsWidget(self.useCrfCheckBox)
        self.previewButton = qt.QPushButton("Preview")
        self.cancelButton = qt.QPushButton("Cancel")
        self.applyButton = qt.QPushButton("Apply")
        finish = qt.QHBoxLayout()
        for button in (self.previewButton, self.cancelButton, self.applyButton):
            finish.addWidget(button)
        self.scriptedEffect.addOptionsWidget(finish)
        self.initializeButton.connect("clicked()", self.onInitialize)
        self.paintFgButton.connect("clicked()", lambda: self.onPaint("fg"))
        self.paintBgButton.connect("clicked()", lambda: self.onPaint("bg"))
        self.previewButton.connect("clicked()", self.onPreview)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.applyButton.connect("clicked()", self.onApply)

    def createCursor(self, widget):
        return slicer.util.mainWindow().cursor

    def setMRMLDefaults(self):
        from SegmentEditorLesionRefineLib.refine import RefineSettings

        for name, value in vars(RefineSettings()).items():
            self.scriptedEffect.setParameterDefault(name, float(value))
        for key in ("TargetSegmentID",) + tuple(f"{k}SegmentID" for k in HELPERS):
            self.scriptedEffect.setParameterDefault(key, "")

    def updateGUIFromMRML(self):
        for name, slider in self.sliders.items():
            wasBlocked = slider.blockSignals(True)
            slider.value = self.scriptedEffect.doubleParameter(name)
            slider.blockSignals(wasBlocked)
        self.useCrfCheckBox.checked = bool(self.scriptedEffect.doubleParameter("use_crf"))
        started = bool(self._helperId("fg"))
        for widget in (self.paintFgButton, self.paintBgButton, self.previewButton, self.cancelButton):
            widget.enabled = started
        self.applyButton.enabled = bool(self._helperId("preview"))

    def updateMRMLFromGUI(self, *args):
        for name, slider in self.sliders.items():
            self.scriptedEffect.setParameter(name, slider.value)
        self.scriptedEffect.setParameter("use_crf", 1.0 if self.useCrfCheckBox.checked else 0.0)

    # -- helpers -----------------------------------------------------------------------------------------
    def _segmentation(self):
        return self.scriptedEffect.parameterSetNode().GetSegmentationNode()

    def _sourceVolume(self):
        node = self.scriptedEffect.parameterSetNode()
        getter = getattr(node, "GetSourceVolumeNode", None) or node.GetMasterVolumeNode
        return getter()

    def _helperId(self, kind: str) -> str:
        segmentId = self.scriptedEffect.parameter(f"{kind}SegmentID")
        segmentation = self._segmentation()
        return segmentId if segmentation and segmentId and segmentation.GetSegmentation().GetSegment(segmentId) else ""

    def _array(self, segmentId: str) -> np.ndarray:
        return np.asarray(slicer.util.arrayFromSegmentBinaryLabelmap(self._segmentation(), segmentId,
                                                                     self._sourceVolume()), dtype=np.uint8)

    def _removeHelpers(self) -> None:
        segmentation = self._segmentation().GetSegmentation()
        for kind in HELPERS:
            segmentId = self._helperId(kind)
            if segmentId:
                segmentation.RemoveSegment(segmentId)
            self.scriptedEffect.setParameter(f"{kind}SegmentID", "")

    # -- actions -----------------------------------------------------------------------------------------
    def onInitialize(self):
        targetId = self.scriptedEffect.parameterSetNode().GetSelectedSegmentID()
        if not targetId or any(targetId == self._helperId(k) for k in HELPERS):
            slicer.util.errorDisplay("Select the lesion segment to correct first.")
            return
        self._removeHelpers()
        segmentation = self._segmentation().GetSegmentation()
        name = segmentation.GetSegment(targetId).GetName()
        self.scriptedEffect.setParameter("TargetSegmentID", targetId)
        for kind in ("fg", "bg"):
            suffix, colour = HELPERS[kind]
            self.scriptedEffect.setParameter(f"{kind}SegmentID",
                                             segmentation.AddEmptySegment("", f"{name} {suffix}", colour))
        self.scriptedEffect.parameterSetNode().SetSelectedSegmentID(targetId)
        self.updateGUIFromMRML()

    def onPaint(self, kind: str):
        segmentId = self._helperId(kind)
        if segmentId:
            self.scriptedEffect.parameterSetNode().SetSelectedSegmentID(segmentId)
            slicer.modules.segmenteditor.widgetRepresentation().self().editor.setActiveEffectByName("Paint")

    def onPreview(self):
        from LesionSegLib import dependencies

        with slicer.util.tryWithErrorDisplay("Lesion GrabCut/CRF failed.", waitCursor=True):
            dependencies.ensure_installed()
            from LesionSegLib import nodes
            from SegmentEditorLesionRefineLib.refine import RefineSettings, refine

            targetId = self.scriptedEffect.parameter("TargetSegmentID")
            settings = RefineSettings(**{name: (int(v) if name.endswith("iterations") else v) for name, v in
                                         ((n, self.scriptedEffect.doubleParameter(n)) for n in RefineSettings.names()
                                          if n != "use_crf")},
                                      use_crf=bool(self.scriptedEffect.doubleParameter("use_crf")))
            volumeNode = self._sourceVolume()
            result = refine(nodes.volume_to_image(volumeNode), self._array(targetId), self._array(self._helperId("fg")),
                            self._array(self._helperId("bg")), settings)
            previewId = self._helperId("preview")
            if not previewId:
                suffix, colour = HELPERS["preview"]
                name = self._segmentation().GetSegmentation().GetSegment(targetId).GetName()
                previewId = self._segmentation().GetSegmentation().AddEmptySegment("", f"{name} {suffix}", colour)
                self.scriptedEffect.setParameter("previewSegmentID", previewId)
            slicer.util.updateSegmentBinaryLabelmapFromArray(result, self._segmentation(), previewId, volumeNode)
            logging.info("Lesion GrabCut/CRF preview: %d voxels", int(result.sum()))
        self.updateGUIFromMRML()

    def onApply(self):
        previewId, targetId = self._helperId("preview"), self.scriptedEffect.parameter("TargetSegmentID")
        if not previewId:
            return
        result = self._array(previewId)
        self._removeHelpers()
        self.scriptedEffect.saveStateForUndo()
        slicer.util.updateSegmentBinaryLabelmapFromArray(result, self._segmentation(), targetId, self._sourceVolume())
        self.scriptedEffect.parameterSetNode().SetSelectedSegmentID(targetId)
        self.updateGUIFromMRML()

    def onCancel(self):
        self._removeHelpers()
        self.updateGUIFromMRML()
