"""The parameter-node lifecycle every LesionSeg panel shares (the scripted-module template's widget part, once).

A panel is ``class <M>Widget(ParameterNodePanelMixin, ScriptedLoadableModuleWidget, VTKObservationMixin)``
(the mixin first, so its ``cleanup``/``enter``/``exit`` are the ones Slicer calls). Its ``setup()`` calls
``ScriptedLoadableModuleWidget.setup(self)``, then :meth:`ParameterNodePanelMixin._loadPanel` with its logic,
connects its own buttons and ends with :meth:`ParameterNodePanelMixin.initializeParameterNode`. The mixin
then keeps the ``@parameterNodeWrapper`` node bound to the ``.ui`` (``connectGui``, the
``SlicerParameterName`` widget properties) while the panel is shown and across scene closes, as Slicer's
``Utilities/Templates/Modules/Scripted/TemplateKey.py`` does.

What differs between panels goes in small hooks (each has a default that does nothing special):

Every panel gets the "Run on" section (:mod:`LesionSegLib.remote_ui`) below its ``.ui``.

* :attr:`ParameterNodePanelMixin._defaultVolumeParameters` -- which volume parameters get the scene's first
  scalar volume when none of them is set.
* :meth:`ParameterNodePanelMixin._onParameterNodeModified` -- the node changed (or was just connected);
  default: the panel's ``_updateButtons()``.
* :meth:`ParameterNodePanelMixin._resetPanel` -- the scene is closing (cancel runs, clear results).
* ``cleanup``/``enter``/``exit``/``setParameterNode`` -- override and call ``super()`` for anything else.

:func:`install_packages` is how every panel installs missing packages before a run: it asks first, and its dialogs
(the question, pip's progress, the restart question) are never shown under a wait cursor.

``slicer`` and ``vtk`` are imported inside the methods, so this module imports without Slicer.
"""
from __future__ import annotations

from typing import Any, Optional


class ParameterNodePanelMixin:
    """Parameter-node and scene-close lifecycle of a ``ScriptedLoadableModuleWidget`` panel.

    Needs from the other bases: ``moduleName``, ``layout``, ``parent``, ``resourcePath`` (from
    ``ScriptedLoadableModuleWidget``) and ``addObserver``/``removeObserver``/``removeObservers`` (from
    ``VTKObservationMixin``). The panel's logic must have ``getParameterNode()`` returning its wrapped node.
    """

    logic: Any = None
    ui: Any = None
    _parameterNode: Any = None
    _parameterNodeGuiTag: Any = None
    _defaultVolumeParameters: tuple = ()
    """Volume parameters (names) of which, when all are empty, the first gets the scene's first scalar volume."""

    def _loadPanel(self, logic: Any) -> None:
        """Load ``Resources/UI/<moduleName>.ui`` into ``self.ui``, add the "Run on" section
        (:class:`LesionSegLib.remote_ui.RunOnSection`), keep ``logic``, observe the scene closing."""
        import slicer

        from .remote_ui import RunOnSection

        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.runOnSection = RunOnSection()
        self.layout.addWidget(self.runOnSection.widget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def cleanup(self) -> None:
        """The module is unloaded: drop every VTK observation (scene and parameter node) and the "Run on" section's
        link to the setting."""
        self.removeObservers()
        if getattr(self, "runOnSection", None) is not None:
            self.runOnSection.cleanup()

    def enter(self) -> None:
        """The panel is shown: bind the logic's parameter node to the GUI."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """The panel is hidden: unbind the parameter node (its values stay in the scene)."""
        self.setParameterNode(None)

    def onSceneStartClose(self, caller: Any, event: Any) -> None:
        """The scene is closing: unbind the parameter node, then :meth:`_resetPanel`."""
        self.setParameterNode(None)
        self._resetPanel()

    def onSceneEndClose(self, caller: Any, event: Any) -> None:
        """The scene was closed: bind the new scene's parameter node if the panel is shown."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Bind the logic's parameter node, then fill the default volume (see ``_defaultVolumeParameters``)."""
        import slicer

        self.setParameterNode(self.logic.getParameterNode())
        names = self._defaultVolumeParameters
        if names and not any(getattr(self._parameterNode, name) for name in names):
            setattr(self._parameterNode, names[0], slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode"))

    def setParameterNode(self, inputParameterNode: Optional[Any]) -> None:
        """Unbind the current node (GUI and ModifiedEvent), bind ``inputParameterNode`` (None: none) and
        call :meth:`_onParameterNodeModified` once for it."""
        import vtk

        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller: Any = None, event: Any = None) -> None:
        """Hook: the parameter node changed or was just bound. Default: the panel's ``_updateButtons()``."""
        self._updateButtons()

    def _resetPanel(self) -> None:
        """Hook: the scene is closing; forget what belonged to it (runs after the node is unbound). Default: nothing."""


def install_packages(failureTitle: str, statusLabel: Any = None, optional: tuple = ()) -> bool:
    """``dependencies.ensure_installed`` from a panel: its dialogs are shown without a wait cursor; False (after
    showing the error and writing it to ``statusLabel``) when packages are missing and were not installed."""
    import slicer

    from . import dependencies

    try:
        with slicer.util.tryWithErrorDisplay(failureTitle):
            dependencies.ensure_installed(optional=optional)
    except Exception as exc:  # shown to the user by tryWithErrorDisplay
        if statusLabel is not None:
            statusLabel.text = f"Failed: {exc}"
        return False
    return True
