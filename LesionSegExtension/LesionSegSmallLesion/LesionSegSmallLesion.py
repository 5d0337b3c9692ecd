"""LesionSeg Small Lesions (small-lesion-il): CT -> one segment per small lesion, with an intensity prior.

Thin module (the work is in LesionSegSmallLesionLib and LesionSegLib); the logic never touches the widget and runs
``lesionseg predict small-lesion-il`` in a background process (progress, Cancel kills the process tree), after
``lesionseg prior`` when the prior is learnt from a segment. Console::

    result = LesionSegSmallLesionLogic().process(ctNode, segmentationNode=None, roiNode=None, prior=(130.0, 20.0))
    runner = logic.process(ctNode, prior="Segment_1", waitForCompletion=False); result = logic.finish(runner.wait())

``prior``: None (the model's built-in prior), (mean HU, SD HU), a prior table (.json/.csv) or a segment ID.
No ``from __future__ import annotations``: parameterNodeWrapper evaluates the annotations (get_type_hints).
"""
import sys
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
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
from LesionSegLib import dependencies, lesiontable, selftests, wholevolume  # pure; backend imported in the logic
from LesionSegLib.background_ui import BackgroundRunPanelMixin
from LesionSegLib.device import DEVICE_CHOICES
from LesionSegLib.jobs import BackgroundJobLogic
from LesionSegLib.panel import ParameterNodePanelMixin
from LesionSegSmallLesionLib import run, scenarios, smalllesion  # backend imported inside the functions
from LesionSegSmallLesionLib.preview import PriorPreview

PLOT_WIDTH = 320
"""Width (pixels) of the likelihood plot in the panel."""


class LesionSegSmallLesion(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesionSeg Small Lesions"
        self.parent.categories = ["Segmentation.LesionSeg"]
        self.parent.dependencies = ["LesionSegCommon"]
        self.parent.contributors = ["LesionSeg contributors"]
        self.parent.helpText = (
            "Small-lesion segmentation with intensity-distribution supervision: select the CT (optionally an ROI), "
            "choose the lesions' intensity prior (the model's, a typed mean / SD, or learnt from a segment you drew; "
            "its likelihood curve is plotted) and press Segment. One segment per lesion and a list of the lesions; "
            "double-click a lesion to centre the views. Synthetic-trained model: not for diagnosis.")
        self.parent.acknowledgementText = ("Intensity distribution supervision for small-lesion segmentation "
                                           "(arXiv 2207.14700). See the LesionSeg README.")


@parameterNodeWrapper
class LesionSegSmallLesionParameterNode:
    """inputVolume: the CT; roi: optional box the work is limited to; segmentation: where segments go (None: a new
    one); priorMode / priorMean / priorSd: the prior choice (the segment to learn from is picked in the panel)."""

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    roi: slicer.vtkMRMLMarkupsROINode
    segmentation: slicer.vtkMRMLSegmentationNode
    priorMode: Annotated[str, Choice(list(smalllesion.PRIOR_MODES))] = list(smalllesion.PRIOR_MODES)[0]
    priorMean: Annotated[float, WithinRange(-1024.0, 3071.0)] = smalllesion.DEFAULT_TYPED_PRIOR[0]
    priorSd: Annotated[float, WithinRange(smalllesion.MIN_SD_HU, 1000.0)] = smalllesion.DEFAULT_TYPED_PRIOR[1]
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"


class LesionSegSmallLesionWidget(BackgroundRunPanelMixin, ParameterNodePanelMixin, ScriptedLoadableModuleWidget,
                                  VTKObservationMixin):
    _defaultVolumeParameters = ("inputVolume",)

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.monitor = self.preview = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self._loadPanel(LesionSegSmallLesionLogic())
        self._watchRuns()
        self.preview = PriorPreview(self._showPlot)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.lesionTable.connect("cellDoubleClicked(int,int)", self.onJump)
        self.ui.priorSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateButtons)
        self.ui.priorSegmentSelector.connect("currentSegmentChanged(QString)", self._updateButtons)
        self.ui.weightsPathLineEdit.connect("currentPathChanged(QString)", self._updateButtons)
        self._showResult(None)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.preview.clear()
        super().cleanup()

    def _resetPanel(self) -> None:
        self.preview.clear()
        super()._resetPanel()

    def _segmentId(self) -> str:
        return self.ui.priorSegmentSelector.currentSegmentID() or ""

    def _weights(self) -> Optional[str]:
        return self.ui.weightsPathLineEdit.currentPath or None

    def _updateButtons(self, *unused) -> None:
        p = self._parameterNode
        kind = smalllesion.mode_kind(p.priorMode) if p else "builtin"
        self.ui.typedPriorWidget.visible = kind == "typed"
        self.ui.segmentPriorWidget.visible = kind == "segment"
        problem = (smalllesion.input_problem(bool(p.inputVolume), p.priorMode, p.priorSd, bool(self._segmentId()))
                   if p else "No parameter node.")
        running = self.monitor.running
        self.ui.segmentButton.enabled = problem is None and not running
        self.ui.segmentButton.toolTip = problem or ("Lesion segmentation is running" if running else
                                                    "Segment the small lesions of the CT (background process)")
        self.ui.inputHintLabel.text = problem or ""
        if p:
            self._requestPlot(p)

    def _panelPrior(self, p) -> smalllesion.PriorChoice:
        return smalllesion.panel_prior(p.priorMode, p.priorMean, p.priorSd, self._segmentId())

    def _requestPlot(self, p) -> None:
        """Draw the likelihood plot of the current prior choice (in the background; a repeated choice is skipped)."""
        try:
            prior = self._panelPrior(p)
        except ValueError as exc:
            self.preview.clear(f"No plot: {exc}")
            return
        volume, segmentationNode, weights = p.inputVolume, self.ui.priorSegmentSelector.currentNode(), self._weights()
        if prior.kind == "segment" and volume is None:
            self.preview.clear("Select the CT to learn the prior from one of its segments.")
            return
        key = (prior, weights) + ((volume.GetID(), segmentationNode.GetID()) if prior.kind == "segment" else ())
        self.preview.request(key, lambda: self.logic.priorPreviewFiles(volume, prior, segmentationNode, weights))

    def _showPlot(self, png: Optional[Path], message: str) -> None:
        if png is None:
            self.ui.priorPlotLabel.clear()
        else:
            self.ui.priorPlotLabel.setPixmap(qt.QPixmap(str(png)).scaledToWidth(PLOT_WIDTH, qt.Qt.SmoothTransformation))
        self.ui.priorPlotStatusLabel.text = message

    def onSegment(self) -> None:
        p = self._parameterNode
        self._startRun("LesionSeg could not start the lesion segmentation.", lambda: self.logic.process(
            p.inputVolume, p.segmentation, p.roi, self._panelPrior(p), waitForCompletion=False, weights=self._weights(),
            device=p.device, priorSegmentationNode=self.ui.priorSegmentSelector.currentNode()),
            "Writing the CT and starting the backend...")

    def onFinished(self, result) -> None:
        """The background run ended (called by the monitor on the main thread)."""
        found = self._finishRun(result, "Lesion segmentation failed.")
        if found is not None:
            if self._parameterNode:
                self._parameterNode.segmentation = found["segmentationNode"]
            self.ui.statusLabel.text = f"Done in {self.logic.lastSeconds:.0f} s; prior: {found['prior']}"
            if found["priorPlot"] is not None:
                self._showPlot(found["priorPlot"], "The prior learnt for this run.")
        self._showResult(found)
        self._updateButtons()

    def _showResult(self, found: Optional[dict]) -> None:
        rows = (found or {}).get("lesionRows", [])
        self.ui.resultsCollapsibleButton.visible = found is not None
        self.ui.summaryLabel.text = lesiontable.summary(rows) if found else ""
        self._fillTable(self.ui.lesionTable, rows)


class LesionSegSmallLesionLogic(BackgroundJobLogic, ScriptedLoadableModuleLogic):
    """Console-first logic; one run at a time (see the module docstring; ``finish``/``cancel``/``jumpTo``:
    BackgroundJobLogic)."""

    jobName = "lesion segmentation"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.job: Optional[wholevolume.Job] = None

    def getParameterNode(self):
        return LesionSegSmallLesionParameterNode(super().getParameterNode())

    @each_input("volumeNode", "segmentationNode", "roiNode")
    def process(self, volumeNode, segmentationNode=None, roiNode=None, prior=None, waitForCompletion: bool = True,
                weights=None, device: str = "auto", priorSegmentationNode=None, onProgress=None, onLog=None):
        """Segment the small lesions of a CT: the result dict when waiting (``rows``, ``segmentationNode``,
        ``segmentIds``, ``tableNode``, ``prior``...: ``LesionSegSmallLesionLib.run.load_results``), else the started
        run (pass ``runner.wait()`` to :meth:`finish`). ``segmentationNode`` None: a new ``"<CT> small lesions"``;
        segments this module wrote there before are replaced, no other. ``roiNode``: limit the work to this box.
        ``prior``: None (built-in), (mean HU, SD HU), a .json/.csv prior table, or the ID of a segment of
        ``priorSegmentationNode`` (default: ``segmentationNode``) to learn the prior from. Raises ValueError (no CT,
        SD <= 0, missing table, unknown or empty segment, options), lesionseg.InputError (ROI outside the CT,
        transforms), RuntimeError (a run is going; when waiting: the backend's error line, e.g. a CT that does not
        look like CT)."""
        choice = smalllesion.prior_choice(prior)
        wholevolume.check_options(weights, device)
        self._checkIdle()
        priorSegmentationNode = segmentationNode if priorSegmentationNode is None else priorSegmentationNode
        run.check_inputs(volumeNode, choice, priorSegmentationNode)
        dependencies.require()
        job = run.start(volumeNode, segmentationNode, roiNode, choice, priorSegmentationNode, weights, device,
                        onProgress, onLog)
        return self._runJob(job, waitForCompletion)

    def _loadJob(self, job: wholevolume.Job) -> dict:
        """The result dict of a run that ended well (``LesionSegSmallLesionLib.run.load_results``)."""
        return run.load_results(job)

    def priorPreviewFiles(self, volumeNode, prior, priorSegmentationNode=None, weights=None):
        """``(command, png, folder)`` drawing the likelihood plot of a prior (``PriorPreview.request``'s prepare)."""
        dependencies.require()
        return run.preview_files(volumeNode, smalllesion.prior_choice(prior), priorSegmentationNode, weights)


class LesionSegSmallLesionTest(selftests.SkipAwareTest, ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, Self Tests module, ctest); scenarios in LesionSegSmallLesionLib."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def test_SegmentTinyCT(self) -> None:
        scenarios.segment_tiny_ct(self, LesionSegSmallLesionLogic())

    def test_BadInputRaises(self) -> None:
        scenarios.bad_input_raises(self, LesionSegSmallLesionLogic())

    def test_CancelLeavesSceneUnchanged(self) -> None:
        scenarios.cancel_leaves_scene_unchanged(self, LesionSegSmallLesionLogic())
