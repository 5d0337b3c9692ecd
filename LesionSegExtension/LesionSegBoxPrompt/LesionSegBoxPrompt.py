"""LesionSeg Box Prompt: draw a box (markups ROI) around a lesion, get a new segment.

Thin module (see LesionSegCommon/LesionSegLib for the work): the widget reads the panel and calls the logic;
the logic is console-first (``LesionSegBoxPromptLogic().process(volume, roi, segmentation)``) and never
touches the widget. The backend runs in-process on LesionSeg's worker thread (the GUI stays responsive; the
Segment button cancels while it runs), one warm model per method and device for the session. Showing the panel
imports neither the backend's methods nor torch.
No ``from __future__ import annotations``: parameterNodeWrapper evaluates the annotations (get_type_hints).
"""
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import qt
import slicer
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

try:
    import LesionSegLib  # noqa: F401  (beside this module once built/installed)
except ImportError:  # source checkout: the shared package lives in the sibling LesionSegCommon folder
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "LesionSegCommon"))
from LesionSegLib.batchinputs import each_input  # Logic.process takes lists of inputs
from LesionSegLib import dependencies, selftests, undo  # pure; the backend is imported only in the logic
from LesionSegLib.device import DEVICE_CHOICES, describe as describeDevice
from LesionSegLib.interactive import InteractiveLogic, box_method_choices
from LesionSegLib.interactive_ui import InteractivePanelMixin
from LesionSegLib.panel import ParameterNodePanelMixin


class LesionSegBoxPrompt(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesionSeg Box Prompt"
        self.parent.categories = ["Segmentation.LesionSeg"]
        self.parent.dependencies = ["LesionSegCommon"]
        self.parent.contributors = ["LesionSeg contributors"]
        self.parent.helpText = (
            "Place a box (ROI) around a lesion on a CT volume and press Segment: the lesion is added as a new "
            "segment 'lesion N'. Ctrl+Z (while this panel is shown) or Undo removes the last result.")
        self.parent.acknowledgementText = "Methods and their references: see the LesionSeg README."


@parameterNodeWrapper
class LesionSegBoxPromptParameterNode:
    """inputVolume: CT; roi: the box prompt; segmentation: where results go (None: a new one is created);
    method: registered box method (empty: default); currentSliceOnly: segment the red view's slice only."""

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    roi: slicer.vtkMRMLMarkupsROINode
    segmentation: slicer.vtkMRMLSegmentationNode
    method: str = ""
    currentSliceOnly: bool = False
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"


class LesionSegBoxPromptWidget(InteractivePanelMixin, ParameterNodePanelMixin, ScriptedLoadableModuleWidget,
                               VTKObservationMixin):
    _defaultVolumeParameters = ("inputVolume",)
    _failureTitle = "LesionSeg could not segment the box."

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self._shortcuts = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self._loadPanel(LesionSegBoxPromptLogic())
        self._watchTasks()
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.placeRoiButton.connect("clicked(bool)", self.onPlaceRoi)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        super().cleanup()
        self._removeShortcuts()

    def enter(self) -> None:
        super().enter()
        self._fillMethods()
        mainWindow = slicer.util.mainWindow()
        if mainWindow is not None and not self._shortcuts:  # Ctrl+Z while the panel is shown
            self._shortcuts.append(qt.QShortcut(qt.QKeySequence(qt.QKeySequence.Undo), mainWindow))
            self._shortcuts[-1].connect("activated()", self.onUndo)

    def exit(self) -> None:
        self._removeShortcuts()
        super().exit()

    def _removeShortcuts(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setParent(None)
        self._shortcuts = []

    def _fillMethods(self) -> None:
        """Fill the method list ("auto", then ``box_method_choices``) without importing the backend or torch."""
        combo = self.ui.methodComboBox
        names = ["auto"] + box_method_choices()
        self.ui.deviceComboBox.toolTip = describeDevice("auto")
        wanted = (self._parameterNode.method if self._parameterNode else "") or "auto"
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for name in names:
            combo.addItem(name)
        combo.setCurrentIndex(max(0, combo.findText(wanted)))
        combo.blockSignals(wasBlocked)
        combo.toolTip = ("auto: box-unet (any lesion kind) when its trained weights are installed, else tsfcn (lung "
                         "nodules), else classical-box")
        self.onMethodChanged()

    def onMethodChanged(self, index: int = 0) -> None:
        if self._parameterNode:
            text = self.ui.methodComboBox.currentText
            self._parameterNode.method = "" if text == "auto" else text

    def _updateButtons(self) -> None:
        ready = bool(self._parameterNode and self._parameterNode.inputVolume and self._parameterNode.roi)
        running = self.taskMonitor is not None and self.taskMonitor.running
        self.ui.segmentButton.enabled = ready or running
        self.ui.segmentButton.toolTip = ("Stop waiting for the running segmentation" if running else
                                         "Segment the lesion inside the box" if ready else "Select a volume and an ROI")
        self.ui.placeRoiButton.enabled = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.undoButton.enabled = self.logic.canUndo() and not running

    def onPlaceRoi(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not place the ROI.", waitCursor=True):
            self._parameterNode.roi = self.logic.placeRoi(self._parameterNode.inputVolume)

    def onSegment(self) -> None:
        p = self._parameterNode
        self._startTask(lambda: self.logic.process(
            p.inputVolume, p.roi, p.segmentation, p.method or None, p.currentSliceOnly, p.device,
            sliceCenterRAS=self.logic.redSliceCenter() if p.currentSliceOnly else None, waitForCompletion=False))

    def _taskDone(self, result) -> None:
        self._parameterNode.segmentation = result.segmentationNode
        notes = "".join(f"\n{w}" for w in result.warnings)
        self.ui.statusLabel.text = f"Added '{result.name}' with {result.method} in {result.seconds:.2f} s{notes}"
        self._fillMethods()


@dataclass(frozen=True)
class LesionSegBoxPromptResult:
    """What the last :meth:`LesionSegBoxPromptLogic.process` added."""

    segmentationNode: object
    segmentId: str
    name: str
    method: str
    seconds: float
    warnings: tuple


class LesionSegBoxPromptLogic(InteractiveLogic, ScriptedLoadableModuleLogic):
    """Console-first logic; the session's warm model and its set_image are reused between calls (see the module)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.segmenterSession = None  # LesionSegLib.session.SegmenterSession, made on first use (tests inject one)
        self._undo = undo.UndoStack()
        self.lastResult: Optional[LesionSegBoxPromptResult] = None

    def getParameterNode(self):
        return LesionSegBoxPromptParameterNode(super().getParameterNode())

    @staticmethod
    def boxMethods() -> list:
        """The registered box methods that can run now (imports the backend's methods and torch)."""
        dependencies.require()
        from LesionSegLib import session

        return session.box_methods()

    @staticmethod
    def defaultMethod(names: list) -> Optional[str]:
        from LesionSegLib import session

        return session.default_method(names)

    @each_input("volumeNode", "roiNode", "segmentationNode")
    def process(self, volumeNode, roiNode, segmentationNode=None, method: Optional[str] = None,
                currentSliceOnly: bool = False, device: str = "auto", sliceCenterRAS=None,
                waitForCompletion: bool = True):
        """Segment the lesion in the ROI box of ``volumeNode``; returns the ID of the NEW segment.

        ``segmentationNode`` None creates a segmentation under the volume's study (see ``lastResult``).
        ``currentSliceOnly`` keeps one slice: the one through ``sliceCenterRAS`` (world RAS mm), or through
        the ROI centre. ``method`` None: box-unet when its weights are installed, else tsfcn, else classical-box. The model runs
        on LesionSeg's worker thread; ``waitForCompletion=False`` returns its ``Task`` at once (``finish(task)``
        then adds the segment, ``cancel()`` drops it). Backend errors (``lesionseg.LesionSegError``) leave the
        scene unchanged.
        """
        dependencies.require()
        from lesionseg import InputError
        from LesionSegLib import nodes, scene, session

        if volumeNode is None:
            raise InputError("select an input volume")
        if self.segmenterSession is None:
            self.segmenterSession = session.SegmenterSession()
        t0 = time.perf_counter()
        box = nodes.roi_to_box(roiNode)
        point = None
        if currentSliceOnly:
            point = (box.lo + box.hi) / 2 if sliceCenterRAS is None else scene.ras_to_lps(sliceCenterRAS)
        key = nodes.volume_cache_key(volumeNode)
        image = self.segmenterSession.cached_image(key)
        if image is None:
            image = nodes.volume_to_image(volumeNode)  # MRML is read on the main thread only

        def apply(result) -> str:
            added = nodes.add_lesion_segment(volumeNode, segmentationNode, result.patch, result.method,
                                             result.prompt)
            self._undo.push(f"{added.name} in {added.segmentationNode.GetName()}", added.revert)
            self.lastResult = LesionSegBoxPromptResult(added.segmentationNode, added.segmentId, added.name,
                                                       result.method, time.perf_counter() - t0, result.warnings)
            return added.segmentId

        return self._start(session.segment_box_job, (self.segmenterSession, method, device, key, image, box, point),
                           apply, waitForCompletion, "box segmentation")

    def placeRoi(self, volumeNode, sliceNodeID: str = "vtkMRMLSliceNodeRed"):
        """A new ROI centred in a slice view, a few slices thick, aligned with the volume's voxels."""
        from lesionseg import InputError
        from LesionSegLib import nodes, scene

        view = nodes.slice_view_geometry(sliceNodeID)
        if volumeNode is None or view is None:
            raise InputError("select a volume and show it in the red slice view first")
        centre, size, axes = scene.roi_for_slice_view(view[0], view[1], nodes.world_ijk_to_ras(volumeNode))
        return nodes.create_roi(centre, size, axes)

    @staticmethod
    def redSliceCenter() -> Optional[np.ndarray]:
        from LesionSegLib import nodes

        view = nodes.slice_view_geometry()
        return None if view is None else view[0][:3, 3]


class LesionSegBoxPromptTest(selftests.SkipAwareTest, ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, Self Tests module, ctest); scenarios in LesionSegLib.selftests."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def test_SegmentSphere(self) -> None:
        selftests.segment_sphere(self, LesionSegBoxPromptLogic())

    def test_BadInputLeavesSceneUnchanged(self) -> None:
        selftests.bad_input_leaves_scene_unchanged(self, LesionSegBoxPromptLogic())
