"""LesionSegLib.interactive and .interactive_ui: the worker thread, its tasks (cancel returns at once), the session's
one model per (method, weights, device), the logic mixin, the task monitor; and no torch import when a panel is
shown (a fresh interpreter loads the Box and RECIST module files under stub Slicer modules and fills the Box panel)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import threading
import time
import types
import warnings

import pytest
from conftest import EXTENSION
from LesionSegLib import dependencies, interactive, interactive_ui, session, undo


def _job(report, value, gate=None):
    report("working")
    if gate is not None:
        gate.wait(10)
    report("still working")  # raises TaskCancelled once cancelled
    if isinstance(value, Exception):
        raise value
    return value


def test_task_result_error_and_order():
    worker = interactive.Worker("test worker")
    ok = worker.submit(_job, 42, label="ok")
    bad = worker.submit(_job, ValueError("no lesion"), label="bad")
    assert ok.wait(timeout=10) == 42 and ok.status == "still working"
    with pytest.raises(ValueError, match="no lesion"):
        bad.wait(timeout=10)
    assert worker.thread.daemon and worker.thread is not threading.main_thread()
    with pytest.raises(RuntimeError, match="has not finished"):
        interactive.Task(_job, (1,)).result()


def test_cancel_returns_at_once_and_drops_the_result():
    worker = interactive.Worker("test worker")
    gate = threading.Event()
    task = worker.submit(_job, 1, gate, label="slow")
    while task.status != "working":
        time.sleep(0.01)
    task.cancel()  # the job is blocked in its step: cancel must not wait for it
    assert task.done() and task.cancelled
    with pytest.raises(interactive.TaskCancelled):
        task.result()
    queued = worker.submit(_job, 2, label="next")
    gate.set()  # the step finishes; its next report() stops the job
    assert queued.wait(timeout=10) == 2
    with pytest.raises(TimeoutError):
        worker.submit(_job, 3, threading.Event(), label="stuck").join(timeout=0.2)


def test_one_model_per_method_weights_and_device_for_the_session():
    built = []
    cache = interactive.ModelCache(lambda method, weights, device: built.append((method, weights, device)) or object())
    first = cache.get("tsfcn", None, "cpu")
    assert cache.get("tsfcn", None, "cpu") is first and cache.has("tsfcn", None, "cpu")
    cache.get("tsfcn", "/models/tsfcn-b", "cpu")
    cache.get("tsfcn", None, "cuda")
    assert built == [("tsfcn", None, "cpu"), ("tsfcn", "/models/tsfcn-b", "cpu"), ("tsfcn", None, "cuda")]
    first.image_key = "ct"
    cache.forget_images()
    assert first.image_key is None and len(cache) == 3
    failing = interactive.ModelCache(lambda *key: (_ for _ in ()).throw(RuntimeError("no weights")))
    with pytest.raises(RuntimeError):
        failing.get("tsfcn", None, "cpu")
    assert len(failing) == 0


def test_sessions_share_the_session_models():
    """Two panels' sessions (or a console logic and a panel) use the same warm model; set_image runs once per
    image and model, whichever session asks."""
    class Fake:
        def __init__(self):
            self.images = []

        def set_image(self, image):
            self.images.append(image)

        def predict(self, prompt=None):
            return self.images[-1]

    cache = interactive.ModelCache(lambda method, weights, device: Fake())
    a, b = session.SegmenterSession(cache=cache), session.SegmenterSession(cache=cache)
    import numpy as np
    from lesionseg import Image

    image = Image(np.zeros((2, 3, 4), np.int16))
    a.prepare("m", "cpu", "ct", lambda: image)
    b.prepare("m", "cpu", "ct", lambda: image)
    assert len(cache) == 1 and cache.get("m", None, "cpu").model.images == [image]
    assert session.SegmenterSession().cache is interactive.MODELS


def test_methods_needing_densecrf_fall_back_or_refuse_clearly(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class WithCrf:
        use_crf: bool = True

    assert interactive.options_without_crf("recist-coseg", types.SimpleNamespace(Options=WithCrf)) == WithCrf(False)
    with pytest.raises(dependencies.DependencyError, match="classical-box needs DenseCRF.*pydensecrf2"):
        interactive.options_without_crf("classical-box", types.SimpleNamespace(Options=None))
    import lesionseg

    calls = []
    monkeypatch.setattr(dependencies, "crf_available", lambda: False)
    monkeypatch.setattr(lesionseg, "get_method", lambda name: types.SimpleNamespace(Options=WithCrf))
    monkeypatch.setattr(lesionseg, "build", lambda name, weights=None, device="auto", options=None:
                        calls.append((name, options)) or "model")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert interactive.build_with_backend("recist-coseg", None, "cpu") == "model"
        interactive.build_with_backend("tsfcn", None, "cpu")
    assert calls == [("recist-coseg", WithCrf(False)), ("tsfcn", None)]
    assert [str(w.message) for w in caught] == ["DenseCRF (pydensecrf2) is not installed: recist-coseg runs without "
                                                "its DenseCRF step"]


class Logic(interactive.InteractiveLogic):
    def __init__(self):
        self._undo, self.segmenterSession, self.applied = undo.UndoStack(), None, []

    def apply(self, result):
        self.applied.append(result)
        self._undo.push(f"result {result}", lambda: self.applied.remove(result))
        return f"segment {result}"


def test_logic_waits_finishes_on_the_main_thread_and_cancels(monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace(app=types.SimpleNamespace(
        processEvents=lambda: None)))
    logic = Logic()
    threads = []
    assert logic._start(_job, (5,), lambda r: threads.append(threading.current_thread()) or logic.apply(r),
                        True, "click") == "segment 5"
    assert threads == [threading.main_thread()] and logic.canUndo() and logic.task is None
    gate = threading.Event()
    task = logic._start(_job, (6, gate), logic.apply, False, "click")
    with pytest.raises(RuntimeError, match="already running"):
        logic._start(_job, (7,), logic.apply, False, "click")
    with pytest.raises(RuntimeError, match="has not finished"):
        logic.finish(task)
    logic.cancel()
    assert logic.finish(task) is None and logic.applied == [5]
    gate.set()
    with pytest.raises(ValueError):
        logic._start(_job, (ValueError("bad box"),), logic.apply, True, "click")
    assert logic.applied == [5] and logic.undo() == "result 5" and not logic.canUndo()


class Widget:
    def __init__(self, text=""):
        self.text, self.enabled, self.slots = text, False, {}

    def connect(self, signal, slot):
        self.slots[signal] = slot

    setInterval = start = stop = lambda self, *args: None


def test_task_monitor_turns_the_button_into_cancel():
    label, button, ended = Widget(), Widget("Segment"), []
    monitor = interactive_ui.TaskMonitor(label, button, ended.append, timer=Widget())
    gate = threading.Event()
    task = interactive.Worker("test worker").submit(_job, 1, gate, label="click")
    monitor.watch(task)
    assert button.text == "Cancel" and button.enabled and monitor.running
    while task.status != "working":
        time.sleep(0.01)
    assert monitor.poll() is None and label.text.startswith("working (")
    monitor.cancel()
    assert ended == [task] and task.cancelled and button.text == "Segment" and label.text == "Cancelled."
    assert not monitor.running
    gate.set()


NO_TORCH_SCRIPT = r"""
import sys, types, unittest
sys.path.insert(0, {common!r})
slicer = types.ModuleType("slicer")
util = types.ModuleType("slicer.util")
util.VTKObservationMixin = type("VTKObservationMixin", (), {{"__init__": lambda self: None}})
util.mainWindow = lambda: None
slm = types.ModuleType("slicer.ScriptedLoadableModule")
for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic"):
    setattr(slm, name, type(name, (), {{"__init__": lambda self, *a: None}}))
slm.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (unittest.TestCase,), {{}})
pnw = types.ModuleType("slicer.parameterNodeWrapper")
pnw.parameterNodeWrapper, pnw.Choice = (lambda cls: cls), (lambda choices: choices)
for name in ("vtkMRMLScalarVolumeNode", "vtkMRMLMarkupsROINode", "vtkMRMLSegmentationNode",
             "vtkMRMLMarkupsLineNode"):
    setattr(slicer, name, type(name, (), {{}}))
slicer.util, slicer.ScriptedLoadableModule, slicer.parameterNodeWrapper = util, slm, pnw
sys.modules.update({{"slicer": slicer, "slicer.util": util, "slicer.ScriptedLoadableModule": slm,
                    "slicer.parameterNodeWrapper": pnw, "qt": types.ModuleType("qt"), "vtk": types.ModuleType("vtk")}})
import importlib.util
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
box = load({box!r}, "LesionSegBoxPrompt")
load({recist!r}, "LesionSegRECIST")

class Combo:
    def __init__(self):
        self.items, self.currentText, self.toolTip = [], "", ""
    def blockSignals(self, block):
        return False
    def clear(self):
        self.items = []
    def addItem(self, text):
        self.items.append(text)
    def findText(self, text):
        return self.items.index(text) if text in self.items else -1
    def setCurrentIndex(self, index):
        self.currentText = self.items[index]

widget = box.LesionSegBoxPromptWidget.__new__(box.LesionSegBoxPromptWidget)
widget.ui = types.SimpleNamespace(methodComboBox=Combo(), deviceComboBox=Combo())
widget._parameterNode = types.SimpleNamespace(method="")
widget.logic = box.LesionSegBoxPromptLogic()
widget._fillMethods()  # what enter() does when the panel is shown
print(widget.ui.methodComboBox.items, widget._parameterNode.method)
print("TORCH", "torch" in sys.modules)
"""


def test_showing_a_panel_imports_no_torch():
    script = NO_TORCH_SCRIPT.format(common=str(EXTENSION / "LesionSegCommon"),
                                    box=str(EXTENSION / "LesionSegBoxPrompt" / "LesionSegBoxPrompt.py"),
                                    recist=str(EXTENSION / "LesionSegRECIST" / "LesionSegRECIST.py"))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "['auto', 'box-unet', 'tsfcn', 'classical-box'] " in done.stdout and "TORCH False" in done.stdout, done.stdout


def test_box_method_choices_follow_the_registry_once_read(monkeypatch):
    monkeypatch.setattr(interactive, "KNOWN_BOX_METHODS", [])
    assert interactive.box_method_choices() == ["box-unet", "tsfcn", "classical-box"]
    monkeypatch.setattr(session, "KNOWN_BOX_METHODS", interactive.KNOWN_BOX_METHODS)
    names = session.box_methods()  # the real registry (imports the methods)
    assert interactive.box_method_choices() == names and "classical-box" in names
