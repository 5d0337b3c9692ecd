"""Segment Editor effect "Lesion GrabCut/CRF": correct the selected segment with strokes (GrabCut + DenseCRF).

Work flow (Slicer's AutoComplete pattern: Initialize / Preview / Apply / Cancel):

1. Initialize: the selected segment is the initial mask; helper segments "<name> fg strokes" (green) and
   "<name> bg strokes" (red) are added. The Paint buttons select one and switch to Paint with the overwrite mode
   "None", so strokes never erase other segments (the user's mode comes back on Preview, Apply, Cancel, or when
   this effect is active again).
2. Preview: GrabCut from the mask with the strokes as sure foreground / background, then DenseCRF with the slider
   settings (:mod:`LesionSegLib.refine`) on LesionSeg's worker thread (click again to stop), or on the LesionSeg
   server that "Run on" names; shown as "<name> preview". Without DenseCRF (pydensecrf2 not installed) GrabCut only, with a note.
3. Apply: the preview replaces the selected segment (one Segment Editor undo step); helpers removed.
   Cancel: helpers removed, the segment unchanged.

Slicer loads this file as a module named after its folder (``SegmentEditorLesionRefineLib``), so nothing is
imported from that folder here (what the effect needs is in ``LesionSegLib``); the backend only inside Preview.
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
try:
    import LesionSegLib  # noqa: F401  (beside the scripted modules once built/installed)
except ImportError:  # source checkout: the shared package lives in the sibling LesionSegCommon folder
    sys.path.insert(0, str(_HERE.parent.parent / "LesionSegCommon"))
from LesionSegLib.refine import SLIDERS, RefineSettings  # pure: no backend import

HELPERS = {"fg": ("fg strokes", (0.1, 0.9, 0.1)), "bg": ("bg strokes", (0.9, 0.1, 0.1)),
           "preview": ("preview", (1.0, 0.9, 0.1))}
SAVED_OVERWRITE_MODE = "SavedOverwriteMode"
"""Effect parameter holding the editor's overwrite mode while strokes are painted ("" when nothing is saved)."""


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = "Lesion GrabCut/CRF"
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.sliders = {}
        self.task = None
        self._timer = None

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
        self.paintFgButton, self.paintBgButton = qt.QPushButton("Paint foreground"), qt.QPushButton("Paint background")
        strokes = qt.QHBoxLayout()
        for button in (self.initializeButton, self.paintFgButton, self.paintBgButton):
            strokes.addWidget(button)
        self.scriptedEffect.addOptionsWidget(strokes)
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
        self.previewButton, self.cancelButton, self.applyButton = (qt.QPushButton(t) for t in ("Preview", "Cancel",
                                                                                              "Apply"))
        finish = qt.QHBoxLayout()
        for button in (self.previewButton, self.cancelButton, self.applyButton):
            finish.addWidget(button)
        self.scriptedEffect.addOptionsWidget(finish)
        self.statusLabel = qt.QLabel("")
        self.scriptedEffect.addOptionsWidget(self.statusLabel)
        from LesionSegLib.remote_ui import RunOnSection  # pure Qt: no backend import

        self.runOnSection = RunOnSection()
        self.scriptedEffect.addOptionsWidget(self.runOnSection.widget)
        self.initializeButton.connect("clicked()", self.onInitialize)
        self.paintFgButton.connect("clicked()", lambda: self.onPaint("fg"))
        self.paintBgButton.connect("clicked()", lambda: self.onPaint("bg"))
        self.previewButton.connect("clicked()", self.onPreview)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.applyButton.connect("clicked()", self.onApply)
        self._timer = qt.QTimer()
        self._timer.setInterval(50)
        self._timer.connect("timeout()", self.pollPreview)

    def createCursor(self, widget):
        return slicer.util.mainWindow().cursor

    def activate(self):
        self.restoreOverwriteMode()  # back from painting strokes

    def setMRMLDefaults(self):
        for name, value in vars(RefineSettings()).items():
            self.scriptedEffect.setParameterDefault(name, float(value))
        for key in ("TargetSegmentID", SAVED_OVERWRITE_MODE) + tuple(f"{k}SegmentID" for k in HELPERS):
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
        self.applyButton.enabled = bool(self._helperId("preview")) and self.task is None

    def updateMRMLFromGUI(self, *args):
        for name, slider in self.sliders.items():
            self.scriptedEffect.setParameter(name, slider.value)
        self.scriptedEffect.setParameter("use_crf", 1.0 if self.useCrfCheckBox.checked else 0.0)

    # -- helpers -----------------------------------------------------------------------------------------
    def _segmentation(self):
        return self.scriptedEffect.parameterSetNode().GetSegmentationNode()

    def _sourceVolume(self):
        editorNode = self.scriptedEffect.parameterSetNode()
        getter = getattr(editorNode, "GetSourceVolumeNode", None) or editorNode.GetMasterVolumeNode
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

    def restoreOverwriteMode(self) -> None:
        """Put back the overwrite mode saved when the stroke painting started (no-op when none is saved)."""
        saved = self.scriptedEffect.parameter(SAVED_OVERWRITE_MODE)
        if saved:
            self.scriptedEffect.parameterSetNode().SetOverwriteMode(int(saved))
            self.scriptedEffect.setParameter(SAVED_OVERWRITE_MODE, "")

    # -- actions -----------------------------------------------------------------------------------------
    def onInitialize(self):
        targetId = self.scriptedEffect.parameterSetNode().GetSelectedSegmentID()
        segmentation = self._segmentation().GetSegmentation()
        if not targetId or not segmentation.GetSegment(targetId) or targetId in map(self._helperId, HELPERS):
            slicer.util.errorDisplay("Select the lesion segment to correct first.")
            return
        self._removeHelpers()
        name = segmentation.GetSegment(targetId).GetName()
        self.scriptedEffect.setParameter("TargetSegmentID", targetId)
        for kind in ("fg", "bg"):
            suffix, colour = HELPERS[kind]
            self.scriptedEffect.setParameter(f"{kind}SegmentID",
                                             segmentation.AddEmptySegment("", f"{name} {suffix}", colour))
        self.scriptedEffect.parameterSetNode().SetSelectedSegmentID(targetId)
        self.updateGUIFromMRML()

    def onPaint(self, kind: str):
        """Select the helper segment and switch to Paint; strokes overwrite no other segment."""
        segmentId = self._helperId(kind)
        if not segmentId:
            return
        editorNode = self.scriptedEffect.parameterSetNode()
        if not self.scriptedEffect.parameter(SAVED_OVERWRITE_MODE):
            self.scriptedEffect.setParameter(SAVED_OVERWRITE_MODE, str(editorNode.GetOverwriteMode()))
        editorNode.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
        editorNode.SetSelectedSegmentID(segmentId)
        self.scriptedEffect.selectEffect("Paint")

    def onPreview(self):
        """Start the refinement on the worker thread (or stop the running one)."""
        if self.task is not None:
            self.task.cancel()
            self.pollPreview()
            return
        self.restoreOverwriteMode()
        try:
            self.runPreview()
        except Exception:  # already shown to the user by tryWithErrorDisplay
            logging.debug("Lesion GrabCut/CRF preview failed", exc_info=True)

    def runPreview(self, waitForCompletion: bool = False):
        """Refine into the preview segment on the worker thread (``waitForCompletion``: wait, raise its error)."""
        from LesionSegLib import dependencies, interactive

        with slicer.util.tryWithErrorDisplay("Lesion GrabCut/CRF needs Python packages."):  # a dialog: no wait cursor
            dependencies.ensure_installed()
        with slicer.util.tryWithErrorDisplay("Lesion GrabCut/CRF failed."):
            from LesionSegLib import nodes, refine

            targetId = self.scriptedEffect.parameter("TargetSegmentID")
            settings = RefineSettings.from_parameters(self.scriptedEffect.doubleParameter)
            self.task = interactive.WORKER.submit(
                refine.refine_job, nodes.volume_to_image(self._sourceVolume()), self._array(targetId),
                self._array(self._helperId("fg")), self._array(self._helperId("bg")), settings,
                dependencies.crf_available(), label="Lesion GrabCut/CRF")
        self.previewButton.text = "Stop"
        self.statusLabel.text = "Starting..."
        self.applyButton.enabled = False
        if not waitForCompletion:
            self._timer.start()
            return
        self.task.join(idle=slicer.app.processEvents)
        error = self.pollPreview()
        if error is not None:
            raise error

    def pollPreview(self):
        """Show the running refinement's progress; once it ended, write the preview segment (main thread).
        Returns the refinement's error (already shown to the user), if any."""
        task = self.task
        if task is None:
            self._timer.stop()
            return None
        if not task.done():
            self.statusLabel.text = f"{task.status} {task.elapsed():.0f} s"
            return None
        self._timer.stop()
        self.task = None
        self.previewButton.text = "Preview"
        self.statusLabel.text = "Stopped." if task.cancelled else ""
        error = None
        if not task.cancelled:
            try:
                with slicer.util.tryWithErrorDisplay("Lesion GrabCut/CRF failed."):
                    self._showPreview(task.result())
            except Exception as exc:  # shown by tryWithErrorDisplay
                error = exc
        self.updateGUIFromMRML()
        return error

    def _showPreview(self, result) -> None:
        targetId = self.scriptedEffect.parameter("TargetSegmentID")
        segmentation = self._segmentation().GetSegmentation()
        previewId = self._helperId("preview")
        if not previewId:
            suffix, colour = HELPERS["preview"]
            name = segmentation.GetSegment(targetId).GetName()
            previewId = segmentation.AddEmptySegment("", f"{name} {suffix}", colour)
            self.scriptedEffect.setParameter("previewSegmentID", previewId)
        slicer.util.updateSegmentBinaryLabelmapFromArray(result.mask, self._segmentation(), previewId,
                                                         self._sourceVolume())
        self.statusLabel.text = "\n".join((f"Preview: {int(result.mask.sum())} voxels", *result.notes))
        logging.info("Lesion GrabCut/CRF preview: %d voxels", int(result.mask.sum()))

    def onApply(self):
        self.restoreOverwriteMode()
        previewId, targetId = self._helperId("preview"), self.scriptedEffect.parameter("TargetSegmentID")
        if not previewId or self.task is not None:
            return
        result = self._array(previewId)
        self._removeHelpers()
        self.scriptedEffect.saveStateForUndo()
        slicer.util.updateSegmentBinaryLabelmapFromArray(result, self._segmentation(), targetId, self._sourceVolume())
        self.scriptedEffect.parameterSetNode().SetSelectedSegmentID(targetId)
        self.updateGUIFromMRML()

    def onCancel(self):
        if self.task is not None:
            self.task.cancel()
            self.pollPreview()
        self.restoreOverwriteMode()
        self._removeHelpers()
        targetId = self.scriptedEffect.parameter("TargetSegmentID")
        if targetId and self._segmentation().GetSegmentation().GetSegment(targetId):
            self.scriptedEffect.parameterSetNode().SetSelectedSegmentID(targetId)
        self.updateGUIFromMRML()
