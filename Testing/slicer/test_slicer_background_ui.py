"""LesionSegLib.background_ui (real subprocesses, fake widgets/timer) and the pure parts of LesionSegLib.labelmaps."""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
from LesionSegLib import background_ui, labelmaps, process, scene

from lesionseg import Image, InputError
from lesionseg.io import write_image


class Widget:
    """Stands in for a QLabel / QProgressBar / QPushButton: PythonQt properties and connect()."""

    def __init__(self) -> None:
        self.text, self.value, self.visible, self.enabled = "", -1, None, None
        self.slots: dict = {}

    def connect(self, signal: str, slot) -> None:
        self.slots[signal] = slot


class FakeTimer(Widget):
    def __init__(self) -> None:
        super().__init__()
        self.interval, self.active = None, False

    def setInterval(self, ms: int) -> None:
        self.interval = ms

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


def make_monitor():
    bar, label, cancel, timer, ended = Widget(), Widget(), Widget(), FakeTimer(), []
    monitor = background_ui.ProcessMonitor(bar, label, cancel, ended.append, timer=timer, intervalMs=50)
    return monitor, bar, label, cancel, timer, ended


def drive(timer: FakeTimer, ended: list, limit: float = 30.0) -> None:
    """Fire the timer like Qt's event loop would, until the monitor stopped it."""
    deadline = time.monotonic() + limit
    while timer.active and time.monotonic() < deadline:
        timer.slots["timeout()"]()
        time.sleep(0.02)
    assert not timer.active and len(ended) == 1


SCRIPT = r"""
import sys, time
for fraction, message in ((0.0, "loading"), (0.25, "venous"), (1.0, "done")):
    sys.stderr.write(f"PROGRESS {fraction} {message}\n"); sys.stderr.flush()
print("report.json written", flush=True)
"""


def test_monitor_shows_progress_and_reports_success():
    monitor, bar, label, cancel, timer, ended = make_monitor()
    assert timer.interval == 50 and bar.visible is False and cancel.visible is False and not monitor.running
    seen = []
    runner = process.BackgroundProcess([sys.executable, "-c", SCRIPT], lambda f, m: seen.append((f, m))).start()
    monitor.watch(runner)
    assert monitor.running and timer.active and bar.visible and cancel.visible and cancel.enabled
    assert bar.value == 0 and label.text == "Starting..."
    values = []
    original = monitor._onProgress

    def spy(fraction, message):
        original(fraction, message)
        values.append((bar.value, label.text))

    runner.on_progress = spy
    drive(timer, ended)
    assert values == [(0, "loading"), (25, "venous"), (100, "done")]
    assert seen == [(0.0, "loading"), (0.25, "venous"), (1.0, "done")]
    result, = ended
    assert result.ok and result.output == ["report.json written"]
    assert label.text == "Finished" and bar.visible is False and cancel.visible is False and not monitor.running
    assert monitor.poll() is None and not timer.active


def test_monitor_reports_the_backend_error_line():
    monitor, bar, label, cancel, timer, ended = make_monitor()
    script = "import sys; sys.stderr.write('error: the phases do not overlap\\n'); sys.exit(2)"
    monitor.watch(process.BackgroundProcess([sys.executable, "-c", script]).start())
    drive(timer, ended)
    assert not ended[0].ok and ended[0].returncode == 2
    assert label.text == "Failed: the phases do not overlap"


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
def test_cancel_button_kills_the_run():
    monitor, bar, label, cancel, timer, ended = make_monitor()
    script = "import sys, time; sys.stderr.write('PROGRESS 0.1 working\\n'); sys.stderr.flush(); time.sleep(60)"
    runner = process.BackgroundProcess([sys.executable, "-c", script]).start()
    monitor.watch(runner)
    with pytest.raises(RuntimeError, match="already"):
        monitor.watch(runner)
    cancel.slots["clicked(bool)"](False)
    assert label.text == "Cancelling..." and cancel.enabled is False
    drive(timer, ended, limit=10)
    assert ended[0].cancelled and label.text == "Cancelled" and runner.poll().cancelled
    monitor.cancel()  # idle: no-op
    assert label.text == "Cancelled"


def test_result_text():
    assert background_ui.result_text(process.ProcessResult(0)) == "Finished"
    assert background_ui.result_text(process.ProcessResult(-15, cancelled=True)) == "Cancelled"
    assert background_ui.result_text(process.ProcessResult(1)) == "Failed: failed with exit status 1"


IJK_TO_RAS = np.array([[-0.8, 0.0, 0.0, 40.0], [0.0, -0.9, 0.0, 30.0], [0.0, 0.0, 2.5, -20.0], [0.0, 0.0, 0.0, 1.0]])
SHAPE = (4, 6, 5)


def label_on_grid(values=(0, 1, 2, 3)) -> Image:
    arr = np.resize(np.array(values, np.uint8), SHAPE)
    return scene.image_from_volume_array(arr, IJK_TO_RAS)


def test_read_label_checks_the_grid(tmp_path):
    path = write_image(label_on_grid(), tmp_path / "seg.nii.gz")
    arr = labelmaps.read_label(path, SHAPE, IJK_TO_RAS)
    np.testing.assert_array_equal(arr, label_on_grid().array)
    shifted = IJK_TO_RAS.copy()
    shifted[0, 3] += 0.01
    with pytest.raises(InputError, match="origin"):
        labelmaps.read_label(path, SHAPE, shifted)
    with pytest.raises(InputError, match="voxels"):
        labelmaps.read_label(path, (4, 6, 6), IJK_TO_RAS)
    finer = IJK_TO_RAS @ np.diag([0.5, 1.0, 1.0, 1.0])
    with pytest.raises(InputError, match="spacing"):
        labelmaps.check_label_grid(label_on_grid(), SHAPE, finer)
    flipped = IJK_TO_RAS @ np.diag([1.0, 1.0, -1.0, 1.0])
    flipped[:3, 3] = IJK_TO_RAS[:3, 3]
    with pytest.raises(InputError, match="direction"):
        labelmaps.check_label_grid(label_on_grid(), SHAPE, flipped)


def test_label_values_must_belong_to_the_specs():
    specs = [labelmaps.SegmentSpec(v, f"s{v}", (1.0, 0.0, 0.0)) for v in (1, 2, 3)]
    labelmaps.check_label_values(label_on_grid().array, specs)
    with pytest.raises(InputError, match=r"\[4\]"):
        labelmaps.check_label_values(label_on_grid((0, 4)).array, specs)
    with pytest.raises(InputError, match=r"\[3\]"):
        labelmaps.check_label_values(label_on_grid().array, specs[:2])


class Node:
    def __init__(self, transform=None, name="n") -> None:
        self.transform, self.name = transform, name

    def GetTransformNodeID(self):
        return self.transform

    def GetName(self) -> str:
        return self.name


def test_check_transforms():
    labelmaps.check_transforms([Node(), None, Node()], Node())
    labelmaps.check_transforms([Node("t1"), Node("t1")], Node("t1"))
    with pytest.raises(InputError, match="input volumes are under different transforms"):
        labelmaps.check_transforms([Node("t1"), Node()])
    with pytest.raises(InputError, match="segmentation 'seg'"):
        labelmaps.check_transforms([Node("t1")], Node(None, "seg"))
