"""LesionSeg Screening (S4C): venous and/or arterial CT -> pancreas / tumour / duct segments and a case verdict.

Thin module (the work is in LesionSegScreeningLib and LesionSegCommon/LesionSegLib): the widget reads the panel
and calls the logic; the logic never touches the widget. It writes the volumes to a temporary folder and runs
``lesionseg screen`` in a background process (progress, Cancel kills the process tree), then loads each
phase's labels as segments and returns the report. Console::

    report = LesionSegScreeningLogic().process(venousNode=v, arterialNode=a)          # waits, returns a dict
    runner = logic.process(venousNode=v, waitForCompletion=False); report = logic.finish(runner.wait())

No ``from __future__ import annotations``: parameterNodeWrapper evaluates the annotations (get_type_hints).
"""
import sys
from pathlib import Path
from typing import Annotated, Optional

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
from LesionSegLib import dependencies, selftests, wholevolume  # pure; the backend is imported only in the logic
from LesionSegLib.background_ui import BackgroundRunPanelMixin
from LesionSegLib.device import DEVICE_CHOICES
from LesionSegLib.jobs import BackgroundJobLogic
from LesionSegLib.panel import ParameterNodePanelMixin
from LesionSegScreeningLib import scenarios, screening  # pure at import; scenarios need Slicer to run


class LesionSegScreening(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesionSeg Screening"
        self.parent.categories = ["Segmentation.LesionSeg"]
        self.parent.dependencies = ["LesionSegCommon"]
        self.parent.contributors = ["LesionSeg contributors"]
        self.parent.helpText = (
            "Pancreatic tumour screening by segmentation (S4C): select the venous and/or arterial CT and press "
            "Screen. Pancreas, tumour and duct segments per phase, a verdict with its reasons, and findings to "
            "double-click (centres the views). Synthetic-trained model: not for diagnosis.")
        self.parent.acknowledgementText = ("Zhu et al., Segmentation for Classification of Screening Pancreatic "
                                           "Neuroendocrine Tumors. See the LesionSeg README.")


@parameterNodeWrapper
class LesionSegScreeningParameterNode:
    """venousVolume / arterialVolume: the phases (either or both); segmentation: where segments go (None: a
    new one); device and stride (sliding-window step, voxels) go to the backend."""

    venousVolume: slicer.vtkMRMLScalarVolumeNode
    arterialVolume: slicer.vtkMRMLScalarVolumeNode
    segmentation: slicer.vtkMRMLSegmentationNode
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    stride: Annotated[int, WithinRange(1, screening.MAX_STRIDE)] = screening.DEFAULT_STRIDE


class LesionSegScreeningWidget(BackgroundRunPanelMixin, ParameterNodePanelMixin, ScriptedLoadableModuleWidget,
                                VTKObservationMixin):
    _defaultVolumeParameters = ("venousVolume", "arterialVolume")
    _jumpFailure = "Could not centre the views on the finding."

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.monitor = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self._loadPanel(LesionSegScreeningLogic())
        self._watchRuns()
        self.ui.screenButton.connect("clicked(bool)", self.onScreen)
        self.ui.findingsTable.connect("cellDoubleClicked(int,int)", self.onJump)
        self._showResult(None)
        self.initializeParameterNode()

    def _updateButtons(self) -> None:
        p = self._parameterNode
        problem = screening.input_problem(bool(p and p.venousVolume), bool(p and p.arterialVolume))
        running = self.monitor.running
        self.ui.screenButton.enabled = problem is None and not running
        self.ui.screenButton.toolTip = problem or ("Screening is running" if running else
                                                   "Segment the pancreas of each phase and give a verdict")
        self.ui.inputHintLabel.text = problem or ""

    def onScreen(self) -> None:
        p = self._parameterNode
        weights = self.ui.weightsPathLineEdit.currentPath or None
        self._startRun("LesionSeg could not start the screening.", lambda: self.logic.process(
            p.venousVolume, p.arterialVolume, p.segmentation, waitForCompletion=False, weights=weights,
            device=p.device, stride=p.stride), "Writing the volumes and starting the backend...")

    def onFinished(self, result) -> None:
        """The background run ended (called by the monitor on the main thread)."""
        report = self._finishRun(result, "Screening failed.")
        if report is not None:
            if self._parameterNode:
                self._parameterNode.segmentation = self.logic.lastSegmentationNode
            self.ui.statusLabel.text = (f"Done in {self.logic.lastSeconds:.0f} s; report: "
                                        f"{self.logic.lastOutputDir / 'report.md'}")
        self._showResult(report)
        self._updateButtons()

    def _showResult(self, report: Optional[dict]) -> None:
        verdict = screening.verdict_from_report(report) if report else None
        self.ui.resultsCollapsibleButton.visible = verdict is not None
        if verdict is not None:
            self.ui.verdictLabel.text = verdict.banner_html()
            self.ui.verdictLabel.styleSheet = verdict.style
            self.ui.reasonsLabel.text = verdict.reasons_html()
        self._fillTable(self.ui.findingsTable, screening.jump_targets(report) if report else [])


class LesionSegScreeningLogic(BackgroundJobLogic, ScriptedLoadableModuleLogic):
    """Console-first logic; one screening runs at a time (see the module docstring).

    ``finish(result)`` (BackgroundJobLogic) loads the ended run: the report dict, ``None`` when it was cancelled;
    nothing in the scene changes unless every result is valid. The inputs written for the run are deleted; its
    output folder (report.md, PNGs, label files) stays as ``lastOutputDir`` until the next run ends. RuntimeError:
    no run, or the backend failed (its one error line). ``cancel()`` kills the running screening's process tree;
    ``jumpTo(target)`` centres the slice views on a finding of the last run (over its phase's volume).
    """

    jobName = "screening"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.job: Optional[wholevolume.Job] = None
        self.lastSegmentationNode = None

    @property
    def lastReport(self) -> Optional[dict]:
        """The report of the last screening that ended well (``lastResult``)."""
        return self.lastResult

    def getParameterNode(self):
        return LesionSegScreeningParameterNode(super().getParameterNode())

    @each_input("venousNode", "arterialNode", "segmentationNode")
    def process(self, venousNode=None, arterialNode=None, segmentationNode=None, waitForCompletion: bool = True,
                weights=None, device: str = "auto", stride: int = screening.DEFAULT_STRIDE,
                onProgress=None, onLog=None):
        """Screen the given phases; the report dict when waiting, else the started ``BackgroundProcess``.

        ``segmentationNode`` None creates ``"<volume> screening"``; segments this module wrote there before are
        replaced, others are never changed. Without waiting, call :meth:`finish` with the run's result
        (``runner.wait()``; the panel's monitor does it). ``onProgress(fraction, message)`` and ``onLog(line)``
        run on the main thread.

        Raises:
            ValueError: no phase given, a bad stride/device/weights folder.
            lesionseg.InputError: volumes (or the segmentation) under different transforms, a volume without voxels.
            RuntimeError: a screening is already running, or (when waiting) the backend failed: its error line.
        """
        volumes = screening.phase_volumes(venousNode, arterialNode)
        screening.check_options(weights, device, stride)
        self._checkIdle()
        dependencies.require()
        from LesionSegLib import labelmaps

        def prepare(folder: Path) -> list:
            inputs = {phase: labelmaps.export_volume(node, folder / f"{phase}.nrrd") for phase, node in volumes.items()}
            return [screening.screen_arguments(inputs, folder / "out", weights, device, stride)]

        job = wholevolume.start_job(screening.OWNER, volumes, segmentationNode, prepare, onProgress=onProgress,
                                    onLog=onLog, createOutputDir=False)
        return self._runJob(job, waitForCompletion)

    def _loadJob(self, job: wholevolume.Job) -> dict:
        """The report of a run that ended well; its phases' labels become segments (``loading.load_results``)."""
        from LesionSegScreeningLib import loading

        report, written = loading.load_results(job)
        self.lastSegmentationNode = written.segmentationNode
        return report


class LesionSegScreeningTest(selftests.SkipAwareTest, ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, Self Tests module, ctest); scenarios in LesionSegScreeningLib."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def test_NoPhaseRaises(self) -> None:
        scenarios.no_phase_raises(self, LesionSegScreeningLogic())

    def test_ScreenPhantom(self) -> None:
        scenarios.screen_phantom(self, LesionSegScreeningLogic())

    def test_CancelLeavesSceneUnchanged(self) -> None:
        scenarios.cancel_leaves_scene_unchanged(self, LesionSegScreeningLogic())
