"""LesionSegLib.panel: the shared parameter-node lifecycle, driven with recording fakes (no Slicer)."""
from __future__ import annotations

import types

import pytest

from LesionSegLib.panel import ParameterNodePanelMixin


class FakeNode:
    def __init__(self, volume=None):
        self.inputVolume = volume
        self.connected = []

    def connectGui(self, ui):
        self.connected.append(ui)
        return f"tag{len(self.connected)}"

    def disconnectGui(self, tag):
        self.connected.append(("disconnect", tag))


class Panel(ParameterNodePanelMixin):
    _defaultVolumeParameters = ("inputVolume",)

    def __init__(self, node):
        self.ui, self.observed, self.updates, self.resets = "ui", [], 0, 0
        self.logic = types.SimpleNamespace(getParameterNode=lambda: node)
        self.parent = types.SimpleNamespace(isEntered=True)

    def addObserver(self, obj, event, callback):
        self.observed.append((obj, callback))

    def removeObserver(self, obj, event, callback):
        self.observed.remove((obj, callback))

    def removeObservers(self):
        self.observed.clear()

    def _updateButtons(self):
        self.updates += 1

    def _resetPanel(self):
        self.resets += 1


@pytest.fixture
def fake_modules(monkeypatch):
    scene = types.SimpleNamespace(GetFirstNodeByClass=lambda cls: f"first {cls}")
    monkeypatch.setitem(__import__("sys").modules, "slicer", types.SimpleNamespace(mrmlScene=scene))
    monkeypatch.setitem(__import__("sys").modules, "vtk",
                        types.SimpleNamespace(vtkCommand=types.SimpleNamespace(ModifiedEvent=33)))


def test_enter_binds_fills_the_default_volume_and_exit_unbinds(fake_modules):
    node = FakeNode()
    panel = Panel(node)
    panel.enter()
    assert node.inputVolume == "first vtkMRMLScalarVolumeNode" and node.connected == ["ui"]
    assert panel.observed == [(node, panel._onParameterNodeModified)] and panel.updates == 1
    panel.exit()
    assert node.connected[-1] == ("disconnect", "tag1") and panel.observed == [] and panel._parameterNode is None


def test_user_volume_is_kept_and_scene_close_resets_then_rebinds(fake_modules):
    node = FakeNode(volume="user CT")
    panel = Panel(node)
    panel.enter()
    assert node.inputVolume == "user CT"
    panel.onSceneStartClose(None, None)
    assert panel.resets == 1 and panel._parameterNode is None and panel.observed == []
    panel.onSceneEndClose(None, None)
    assert panel._parameterNode is node and len(panel.observed) == 1
    panel.parent.isEntered = False
    panel.exit()
    panel.onSceneEndClose(None, None)                 # hidden panel: stays unbound
    assert panel._parameterNode is None
    panel.cleanup()
    assert panel.observed == []
