"""Hidden module that ships ``LesionSegLib``, the Slicer-side package shared by every LesionSeg module.

It has no panel. Built or installed, ``LesionSegLib`` sits beside every module in the extension's
qt-scripted-modules folder; in a source checkout the modules add this folder to ``sys.path`` themselves.
The modules list it in their ``dependencies`` so it loads first. Console use::

    from LesionSegLib import dependencies
    dependencies.ensure_installed()   # asks, then installs torch, scikit-image, ... and the backend
"""
from __future__ import annotations

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from LesionSegLib import selftests  # pure (numpy); this module's folder holds LesionSegLib


class LesionSegCommon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesionSeg Common"
        self.parent.categories = ["Segmentation.LesionSeg"]
        self.parent.dependencies = []
        self.parent.hidden = True
        self.parent.contributors = ["LesionSeg contributors"]
        self.parent.helpText = "Shared code of the LesionSeg modules (no panel)."
        self.parent.acknowledgementText = "Methods and their references: see the LesionSeg README."


class LesionSegCommonTest(selftests.SkipAwareTest, ScriptedLoadableModuleTest):
    """Runs inside Slicer (Self Tests module, ctest); scenarios in LesionSegLib.selftests_hidden."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def test_DependencyReport(self) -> None:
        from LesionSegLib import selftests_hidden

        selftests_hidden.dependency_report(self)

    def test_VolumeRoundTrip(self) -> None:
        from LesionSegLib import selftests_hidden

        selftests_hidden.volume_round_trip(self)

    def test_BackgroundProcess(self) -> None:
        from LesionSegLib import selftests_hidden

        selftests_hidden.background_process(self)
