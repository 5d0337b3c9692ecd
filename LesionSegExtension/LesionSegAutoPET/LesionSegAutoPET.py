"""LesionSeg PET/CT (autoPET L2SNet): whole-body FDG-PET/CT -> lesion segments and a lesion table node.

Thin module (the work is in LesionSegAutoPETLib and LesionSegLib); the logic never touches the widget and runs
``lesionseg predict autopet-l2snet`` in a background process (progress, Cancel kills the process tree). Console::

    result = LesionSegAutoPETLogic().process(petNode, ctNode, segmentationNode=None, petUnits="suv")  # waits
    runner = logic.process(petNode, waitForCompletion=False); result = logic.finish(runner.wait())    # CT paired
    result = logic.process(petNode, None, pairCT=False, petUnits="suv")  # PET-only (a model trained for it)

No ``from __future__ import annotations``: parameterNodeWrapper evaluates the annotations (get_type_hints).
"""
import logging
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
from LesionSegAutoPETLib import autopet, inputs, run, scenarios  # backend imported inside the functions


class LesionSegAutoPET(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesionSeg PET/CT"
        self.parent.categories = ["Segmentation.LesionSeg"]
        self.parent.dependencies = ["LesionSegCommon"]
        self.parent.contributors = ["LesionSeg contributors"]
        self.parent.helpText = (
            "Whole-body FDG-PET/CT lesion segmentation (L2SNet): select the PET (the CT of its study is paired "
            "automatically), say what a PET file holds (a DICOM PET is converted from its tags), press Segment "
            "lesions. Segments and a lesion table (mL, SUV, TLG); double-click a lesion to centre the views. "
            "Leave the CT empty for PET-only mode (needs a model trained for PET-only input).")
        self.parent.acknowledgementText = ("L2SNet: A Localization-to-Segmentation Framework for Automatic Tumor "
                                           "Segmentation in Whole-Body PET/CT Images (autoPET-II). See the README.")


@parameterNodeWrapper
class LesionSegAutoPETParameterNode:
    """petVolume / ctVolume: the inputs (no CT: PET-only mode); segmentation: where segments go (None: a new one);
    petUnits, weightKg, doseMBq, minutesToScan: what a PET *file* holds (0 = not given); perLesion: one segment per
    lesion; allowPetOnly: a CT that does not overlap the PET is dropped (PET-only) instead of refused."""

    petVolume: slicer.vtkMRMLScalarVolumeNode
    ctVolume: slicer.vtkMRMLScalarVolumeNode
    segmentation: slicer.vtkMRMLSegmentationNode
    petUnits: Annotated[str, Choice(list(autopet.UNIT_CHOICES))] = list(autopet.UNIT_CHOICES)[0]
    weightKg: Annotated[float, WithinRange(0.0, 500.0)] = 0.0
    doseMBq: Annotated[float, WithinRange(0.0, 5000.0)] = 0.0
    minutesToScan: Annotated[float, WithinRange(0.0, 1440.0)] = 0.0
    perLesion: bool = False
    allowPetOnly: bool = False
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"


class LesionSegAutoPETWidget(BackgroundRunPanelMixin, ParameterNodePanelMixin, ScriptedLoadableModuleWidget,
                              VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.monitor = self._pet = self._result = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self._loadPanel(LesionSegAutoPETLogic())
        self._watchRuns()
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.lesionTable.connect("cellDoubleClicked(int,int)", self.onJump)
        self.ui.mipButton.connect("clicked(bool)", self.onOpenMip)
        self._showResult(None)
        self.initializeParameterNode()

    def setParameterNode(self, inputParameterNode) -> None:
        super().setParameterNode(None)  # unbind the old node before forgetting its PET
        self._pet = None
        super().setParameterNode(inputParameterNode)

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is not None and p.petVolume is not self._pet:
            self._pet = p.petVolume
            self.ui.pairingLabel.text = ""
            if p.petVolume and not p.ctVolume:
                ct, reason = self.logic.pairedCT(p.petVolume)
                self.ui.pairingLabel.text = reason
                if ct is not None:
                    p.ctVolume = ct  # re-enters this method through ModifiedEvent; the PET is already recorded
                    return
        self._updateButtons()

    def _updateButtons(self) -> None:
        p = self._parameterNode
        pet = p.petVolume if p else None
        state = autopet.units_panel_state(pet is not None, bool(pet and inputs.dicom_instance_uids(pet)),
                                          p.petUnits if p else "")
        self.ui.petUnitsComboBox.enabled, self.ui.petSourceLabel.text = state.units_enabled, state.source
        for widget in (self.ui.weightSpinBox, self.ui.doseSpinBox, self.ui.minutesSpinBox):
            widget.enabled = state.bqml_enabled
        problem = None
        try:
            if p:
                self.logic.checkInputs(pet, p.ctVolume, **self._units())
        except ValueError as exc:
            problem = str(exc)
        running = self.monitor.running
        self.ui.segmentButton.enabled = p is not None and problem is None and not running
        self.ui.segmentButton.toolTip = problem or ("Lesion segmentation is running" if running else
                                                    "Segment the lesions of the PET/CT (background process)")
        self.ui.inputHintLabel.text = problem or autopet.input_notice(pet is not None, bool(p and p.ctVolume))

    def _units(self) -> dict:
        p = self._parameterNode
        return {"petUnits": p.petUnits, "weightKg": p.weightKg or None, "doseMBq": p.doseMBq or None,
                "minutesToScan": p.minutesToScan}

    def onSegment(self) -> None:
        p = self._parameterNode
        weights = self.ui.weightsPathLineEdit.currentPath or None
        notice = autopet.input_notice(True, p.ctVolume is not None)
        self._startRun("LesionSeg could not start the lesion segmentation.", lambda: self.logic.process(
            p.petVolume, p.ctVolume, p.segmentation, waitForCompletion=False, perLesion=p.perLesion, weights=weights,
            device=p.device, pairCT=False, allowPetOnly=p.allowPetOnly, **self._units()),
            " ".join(filter(None, [notice, "Writing the volumes and starting the backend..."])))

    def onFinished(self, result) -> None:
        """The background run ended (called by the monitor on the main thread)."""
        found = self._finishRun(result, "Lesion segmentation failed.")
        if found is not None:
            if self._parameterNode:
                self._parameterNode.segmentation = found["segmentationNode"]
            done = f"Done in {self.logic.lastSeconds:.0f} s; table '{found['tableNode'].GetName()}'"
            self.ui.statusLabel.text = done + (f". {autopet.PET_ONLY_NOTICE}" if found.get("petOnly") else "")
        self._showResult(found)
        self._updateButtons()

    def _showResult(self, found: Optional[dict]) -> None:
        self._result, rows, mip = found, (found or {}).get("lesionRows", []), (found or {}).get("mip")
        self.ui.resultsCollapsibleButton.visible = found is not None
        self.ui.summaryLabel.text = lesiontable.summary(rows) if found else ""
        self.ui.mipButton.enabled, self.ui.mipPathLabel.text = mip is not None, str(mip or "no MIP picture")
        self._fillTable(self.ui.lesionTable, rows)

    def onOpenMip(self, checked: bool = False) -> None:
        if self._result and self._result.get("mip"):
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self._result["mip"])))


class LesionSegAutoPETLogic(BackgroundJobLogic, ScriptedLoadableModuleLogic):
    """Console-first logic; one run at a time (see the module docstring; ``finish``/``cancel``/``jumpTo``:
    BackgroundJobLogic)."""

    jobName = "lesion segmentation"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.job: Optional[wholevolume.Job] = None
        self._valueRange = run.CachedValueRange()

    def getParameterNode(self):
        return LesionSegAutoPETParameterNode(super().getParameterNode())

    def pairedCT(self, petNode):
        """``(CT node or None, reason)``: the only CT of the PET's study (DICOM study or subject-hierarchy folder)."""
        return inputs.find_paired_ct(petNode)

    def checkInputs(self, petNode, ctNode, petUnits: str = "suv", weightKg=None, doseMBq=None,
                    minutesToScan: float = 0.0) -> Optional[autopet.PetUnits]:
        """The units to pass for a PET file (None for a DICOM PET); ValueError with a message for the user
        (e.g. "this does not look like PET in SUV")."""
        return run.check_inputs(petNode, ctNode, petUnits, weightKg, doseMBq, minutesToScan, self._valueRange)

    @each_input("petNode", "ctNode", "segmentationNode", "weightKg", "doseMBq", "minutesToScan")
    def process(self, petNode, ctNode=None, segmentationNode=None, waitForCompletion: bool = True,
                petUnits: str = "suv", weightKg=None, doseMBq=None, minutesToScan: float = 0.0,
                perLesion: bool = False, weights=None, device: str = "auto", onProgress=None, onLog=None,
                pairCT: bool = True, allowPetOnly: bool = False):
        """Segment the lesions: the result dict when waiting (``rows``, ``segmentationNode``, ``tableNode``...:
        ``LesionSegAutoPETLib.run.load_results``), else the started ``BackgroundProcess`` (then pass
        ``runner.wait()`` to :meth:`finish`). ``ctNode`` None: the CT of the PET's study when ``pairCT`` and there is
        one, else PET-only mode (logged; ``result["petOnly"]``; the backend refuses models not trained for it);
        ``allowPetOnly``: a CT that does not overlap the PET is dropped instead of refused. ``segmentationNode``
        None: a new ``"<PET> lesions"``; segments this module wrote there before are replaced, no other. The units
        (``"suv"``, or ``"bqml"`` with weight, dose and minutes from injection to scan) apply to a PET file only.
        Raises ValueError (inputs, units, SUV check), lesionseg.InputError (transforms, DICOM files gone),
        RuntimeError (a run is going; when waiting: the backend's error line)."""
        wholevolume.check_options(weights, device)
        self._checkIdle()
        if petNode is not None and ctNode is None and pairCT:
            ctNode, reason = self.pairedCT(petNode)
            if ctNode is None:
                logging.warning("LesionSeg PET/CT: no CT paired (%s)", reason)
        units = self.checkInputs(petNode, ctNode, petUnits, weightKg, doseMBq, minutesToScan)
        if ctNode is None:
            logging.warning("LesionSeg PET/CT: %s", autopet.PET_ONLY_NOTICE)
        dependencies.require()
        job = run.start(petNode, ctNode, segmentationNode, units, perLesion, weights, device, onProgress, onLog,
                        allowPetOnly)
        return self._runJob(job, waitForCompletion)

    def _loadJob(self, job: wholevolume.Job) -> dict:
        """The result dict of a run that ended well (``LesionSegAutoPETLib.run.load_results``)."""
        return run.load_results(job)


class LesionSegAutoPETTest(selftests.SkipAwareTest, ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, Self Tests module, ctest); scenarios in LesionSegAutoPETLib."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def test_PairingPicksTheStudyCT(self) -> None:
        scenarios.pairing_picks_the_study_ct(self, LesionSegAutoPETLogic())

    def test_SuvCheckRefusesCT(self) -> None:
        scenarios.suv_check_refuses_ct(self, LesionSegAutoPETLogic())

    def test_PetOnly(self) -> None:
        scenarios.pet_only(self, LesionSegAutoPETLogic())

    def test_SegmentPhantom(self) -> None:
        scenarios.segment_phantom(self, LesionSegAutoPETLogic())

    def test_CancelLeavesSceneUnchanged(self) -> None:
        scenarios.cancel_leaves_scene_unchanged(self, LesionSegAutoPETLogic())
