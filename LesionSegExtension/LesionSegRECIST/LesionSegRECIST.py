"""LesionSeg RECIST: draw the long (and optionally short) axis of a lesion, get a new 2D segment.

Thin module (the work is in LesionSegRECISTLib and LesionSegCommon/LesionSegLib): the widget reads the
panel and calls the logic; the logic is console-first
(``LesionSegRECISTLogic().process(volumeNode, longLineNode, shortLineNode, segmentationNode)``) and never
touches the widget. The model runs on LesionSeg's worker thread (the GUI stays responsive; the Segment button
cancels while it runs), one warm model per method and device for the session. The result's own long/short axes
are added as markups lines and shown (mm) next to the drawn ones.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

_HERE = Path(__file__).resolve().parent
try:
    import LesionSegLib  # noqa: F401  (beside this module once built/installed)
except ImportError:  # source checkout: the shared package lives in the sibling LesionSegCommon folder
    sys.path.insert(0, str(_HERE.parent / "LesionSegCommon"))
sys.path.insert(0, str(_HERE))
from LesionSegLib.batchinputs import each_input  # Logic.process takes lists of inputs
from LesionSegLib import dependencies, selftests, undo  # pure; the backend is imported only in the logic
from LesionSegLib.device import DEVICE_CHOICES
from LesionSegLib.interactive import InteractiveLogic
from LesionSegLib.interactive_ui import InteractivePanelMixin
from LesionSegLib.panel import ParameterNodePanelMixin


class LesionSegRECIST(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesionSeg RECIST"
        self.parent.categories = ["Segmentation.LesionSeg"]
        self.parent.dependencies = ["LesionSegCommon"]
        self.parent.contributors = ["LesionSeg contributors"]
        self.parent.helpText = (
            "Draw the RECIST long axis (and optionally the short axis) of a lesion with markups lines on an "
            "axial slice and press Segment: the lesion on that slice is added as a new segment 'lesion N' "
            "(recist-coseg: GrabCut-trained attention co-segmentation + DenseCRF), or with 'Whole lesion (3D)' the "
            "whole lesion through its slices (recist-3d). The measured axes of the "
            "result are added as lines and printed next to the drawn ones. Undo removes the last result.")
        self.parent.acknowledgementText = ("Agarwal et al., Weakly-supervised lesion segmentation on CT scans "
                                           "using co-segmentation (arXiv 2001.08590). See the LesionSeg README.")


WHOLE_LESION_METHOD = "recist-3d"
"""The method of the panel's "Whole lesion (3D)" box: the lesion's 3D mask from the axes."""


@parameterNodeWrapper
class LesionSegRECISTParameterNode:
    """inputVolume: CT; longLine / shortLine: the drawn axes (short optional); segmentation: where results
    go (None: a new one is created); method: registered RECIST method (empty: default, or ``recist-3d`` when
    wholeLesion3D is ticked)."""

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    longLine: slicer.vtkMRMLMarkupsLineNode
    shortLine: slicer.vtkMRMLMarkupsLineNode
    segmentation: slicer.vtkMRMLSegmentationNode
    method: str = ""
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    wholeLesion3D: bool = False


class LesionSegRECISTWidget(InteractivePanelMixin, ParameterNodePanelMixin, ScriptedLoadableModuleWidget,
                            VTKObservationMixin):
    _defaultVolumeParameters = ("inputVolume",)

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self._loadPanel(LesionSegRECISTLogic())
        self._watchTasks()
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.placeLongButton.connect("clicked(bool)", lambda: self.onPlaceLine("longLine", "long axis"))
        self.ui.placeShortButton.connect("clicked(bool)", lambda: self.onPlaceLine("shortLine", "short axis"))
        self.initializeParameterNode()

    def _updateButtons(self) -> None:
        ready = bool(self._parameterNode and self._parameterNode.inputVolume and self._parameterNode.longLine)
        running = self.taskMonitor is not None and self.taskMonitor.running
        self.ui.segmentButton.enabled = ready or running
        self.ui.segmentButton.toolTip = ("Stop waiting for the running segmentation" if running else
                                         "Segment the lesion under the axes" if ready else
                                         "Select a volume and a long axis")
        self.ui.undoButton.enabled = self.logic.canUndo() and not running

    def onPlaceLine(self, parameter: str, name: str) -> None:
        """Create a line node and enter place mode (two clicks on the axial view)."""
        lineNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
        lineNode.CreateDefaultDisplayNodes()
        setattr(self._parameterNode, parameter, lineNode)
        slicer.modules.markups.logic().StartPlaceMode(False)
        slicer.modules.markups.logic().SetActiveList(lineNode)

    def onSegment(self) -> None:
        p = self._parameterNode
        method = p.method or (WHOLE_LESION_METHOD if p.wholeLesion3D else None)
        self._startTask(lambda: self.logic.process(p.inputVolume, p.longLine, p.shortLine, p.segmentation,
                                                   method, p.device, waitForCompletion=False))

    def _taskDone(self, result) -> None:
        self._parameterNode.segmentation = result.segmentationNode
        notes = "".join(f"\n{w}" for w in result.warnings)
        self.ui.statusLabel.text = (f"Added '{result.name}' with {result.method} in {result.seconds:.2f} s\n"
                                    f"{result.axes}{notes}")


@dataclass(frozen=True)
class LesionSegRECISTLogicResult:
    """What the last :meth:`LesionSegRECISTLogic.process` added (``axes``: drawn vs measured, mm)."""

    segmentationNode: object
    segmentId: str
    name: str
    method: str
    seconds: float
    axes: str
    measuredLineNodes: tuple
    warnings: tuple


class LesionSegRECISTLogic(InteractiveLogic, ScriptedLoadableModuleLogic):
    """Console-first logic; the session's warm model and its set_image are reused between calls."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.segmenterSession = None  # LesionSegLib.session.SegmenterSession, made on first use (tests inject one)
        self._undo = undo.UndoStack()
        self.lastResult: Optional[LesionSegRECISTLogicResult] = None

    def getParameterNode(self):
        return LesionSegRECISTParameterNode(super().getParameterNode())

    @each_input("volumeNode", "longLineNode", "shortLineNode", "segmentationNode")
    def process(self, volumeNode, longLineNode, shortLineNode=None, segmentationNode=None,
                method: Optional[str] = None, device: str = "auto", waitForCompletion: bool = True):
        """Segment the lesion under the drawn axes; returns the ID of the NEW segment (2D on the RECIST slice, or
        the whole lesion in 3D with ``method="recist-3d"``).

        ``segmentationNode`` None creates a segmentation under the volume's study (see ``lastResult``).
        The model runs on LesionSeg's worker thread; ``waitForCompletion=False`` returns its ``Task`` at once
        (``finish(task)`` then adds the segment, ``cancel()`` drops it). Backend errors
        (``lesionseg.LesionSegError``: zero-length line, axes on different slices, a line outside the volume)
        leave the scene unchanged; a projected oblique line or a short axis that does not cross the long one are
        reported in ``lastResult.warnings``.
        """
        dependencies.require()
        from lesionseg import InputError
        from LesionSegLib import nodes, scene, session
        from LesionSegRECISTLib import recist

        if volumeNode is None:
            raise InputError("select an input volume")
        if self.segmenterSession is None:
            self.segmenterSession = session.SegmenterSession()
        t0 = time.perf_counter()
        prompt = nodes.line_to_recist(longLineNode, shortLineNode)
        key = nodes.volume_cache_key(volumeNode)
        image = self.segmenterSession.cached_image(key)
        if image is None:
            image = nodes.volume_to_image(volumeNode)  # MRML is read on the main thread only

        def apply(result) -> str:
            added = nodes.add_lesion_segment(volumeNode, segmentationNode, result.patch, result.method, prompt)
            lines = tuple(self._addLine(f"{added.name} {axis} (result)", scene.lps_to_ras(points)) for axis, points
                          in (("long", result.measured_long_lps), ("short", result.measured_short_lps)))

            def revert() -> None:
                for line in lines:
                    if slicer.mrmlScene.IsNodePresent(line):
                        slicer.mrmlScene.RemoveNode(line)
                added.revert()

            self._undo.push(f"{added.name} in {added.segmentationNode.GetName()}", revert)
            self.lastResult = LesionSegRECISTLogicResult(added.segmentationNode, added.segmentId, added.name,
                                                         result.method, time.perf_counter() - t0, result.summary(),
                                                         lines, result.warnings)
            return added.segmentId

        return self._start(recist.segment_recist_job, (self.segmenterSession, method, device, key, image, prompt),
                           apply, waitForCompletion, "RECIST segmentation")

    @staticmethod
    def _addLine(name: str, points_ras) -> object:
        """A locked markups line through two RAS points, labelled with its length."""
        lineNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
        lineNode.CreateDefaultDisplayNodes()
        for point in points_ras:
            lineNode.AddControlPoint(vtk.vtkVector3d(*[float(v) for v in point]))
        lineNode.SetLocked(True)
        lineNode.GetDisplayNode().SetSelectedColor(0.2, 0.9, 0.2)
        return lineNode


class LesionSegRECISTTest(selftests.SkipAwareTest, ScriptedLoadableModuleTest):
    """Runs inside Slicer: a synthetic nodule, drawn axes -> one new segment on one slice; undo removes it."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def test_SegmentNodule(self) -> None:
        import numpy as np

        selftests.skip_without_crf(self)
        ct, volumeNode, k, ends = self._nodule()
        lineNode = self._line("long", [e[:3] for e in ends])
        logic = LesionSegRECISTLogic()
        segmentId = logic.process(volumeNode, lineNode)
        from LesionSegLib import nodes

        label = nodes.segment_array(logic.lastResult.segmentationNode, segmentId, volumeNode)
        self.assertEqual(int(np.count_nonzero(label.reshape(label.shape[0], -1).any(axis=1))), 1)
        self.assertGreater(selftests.dice(label[k], ct.sphere[k]), 0.6)
        logic.undo()
        self.assertFalse(logic.canUndo())

    def test_WholeLesion3D(self) -> None:
        """recist-3d: the same drawn long axis -> one segment through the nodule's slices."""
        import numpy as np

        selftests.skip_without_weights(self, WHOLE_LESION_METHOD)
        ct, volumeNode, k, ends = self._nodule()
        logic = LesionSegRECISTLogic()
        segmentId = logic.process(volumeNode, self._line("long", [e[:3] for e in ends]),
                                  method=WHOLE_LESION_METHOD, device="cpu")
        from LesionSegLib import nodes

        label = nodes.segment_array(logic.lastResult.segmentationNode, segmentId, volumeNode)
        self.assertGreater(int(np.count_nonzero(label.reshape(label.shape[0], -1).any(axis=1))), 1)
        self.assertGreater(selftests.dice(label, ct.sphere), 0.5)

    @staticmethod
    def _nodule():
        """The synthetic CT, its volume node, the nodule's middle slice and the RAS end points of a long axis."""
        import numpy as np

        ct = selftests.synthetic_ct()
        volumeNode = slicer.util.addVolumeFromArray(ct.array, ijkToRAS=ct.ijk_to_ras, name="ct")
        ijk = np.argwhere(ct.sphere > 0)
        k = int(np.round(ijk[:, 0].mean()))
        row = ijk[ijk[:, 0] == k]
        j = int(np.round(row[:, 1].mean()))
        cols = row[row[:, 1] == j][:, 2]
        ends = [ct.ijk_to_ras @ np.array([c, j, k, 1.0]) for c in (cols.min(), cols.max())]
        return ct, volumeNode, k, ends

    @staticmethod
    def _line(name, points):
        lineNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
        for point in points:
            lineNode.AddControlPoint(vtk.vtkVector3d(*[float(v) for v in point]))
        return lineNode
