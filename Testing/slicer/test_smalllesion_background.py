"""The parts of the small-lesion panel that run real processes, offline: the sequential prior -> predict run
(LesionSegLib.steps: progress scaling, failure, cancel) and the debounced prior-plot preview."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import EXTENSION
from LesionSegLib import steps

sys.path.insert(0, str(EXTENSION / "LesionSegSmallLesion"))
from LesionSegSmallLesionLib import preview  # noqa: E402


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_sequential_run_scales_progress_and_stops_at_a_failure(tmp_path):
    step = "import sys; sys.stderr.write('PROGRESS 0.5 {0}\\n'); print('{0} out')"
    progress = []
    run = steps.SequentialRun([_python(step.format("a")), _python(step.format("b"))], [1, 3],
                              on_progress=lambda f, m: progress.append((f, m))).start()
    result = run.wait(timeout=60)
    assert result.ok and result.output == ["a out", "b out"] and run.step == 1
    assert progress == [(0.125, "a"), (0.625, "b")]
    marker = tmp_path / "second"
    failing = _python("import sys; sys.stderr.write('error: no prior\\n'); sys.exit(2)")
    run = steps.SequentialRun([failing, _python(f"open({str(marker)!r}, 'w')")]).start()
    result = run.wait(timeout=60)
    assert not result.ok and result.message() == "no prior" and result.returncode == 2 and not marker.exists()
    with pytest.raises(ValueError, match="at least one"):
        steps.SequentialRun([])
    with pytest.raises(ValueError, match="one non-negative share per command"):
        steps.SequentialRun([["a"], ["b"]], [1.0])
    with pytest.raises(RuntimeError, match="not started"):
        steps.SequentialRun([["a"]]).poll()


def test_sequential_run_cancel_starts_no_further_step(tmp_path):
    marker = tmp_path / "second"
    run = steps.SequentialRun([_python("import time; time.sleep(60)"), _python(f"open({str(marker)!r}, 'w')")])
    run.start()
    run.cancel(grace=0.5)
    result = run.wait(timeout=20)
    assert result.cancelled and not result.ok and run.step == 0 and not marker.exists()
    run.cancel()  # ended: no-op
    with pytest.raises(RuntimeError, match="already started"):
        run.start()


class FakeTimer:
    def __init__(self) -> None:
        self.active, self.slot = False, None

    def setInterval(self, ms: int) -> None:
        self.interval = ms

    def connect(self, signal: str, slot) -> None:
        self.slot = slot

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _plot_command(png: Path, seconds: float = 0.0) -> list[str]:
    return _python(f"import time; time.sleep({seconds}); open({str(png)!r}, 'wb').write(b'PNG')")


def _drain(previewer, timer, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while timer.active and time.monotonic() < deadline:
        timer.slot()
        time.sleep(0.02)
    assert not timer.active, "the preview never finished"


def test_preview_debounces_and_shows_the_latest_plot(tmp_path):
    shown, timer, clock = [], FakeTimer(), Clock()
    previewer = preview.PriorPreview(lambda png, message: shown.append((png and png.read_bytes(), message)), timer,
                                     delayMs=400, clock=clock)
    prepared = []

    def prepare(name: str, seconds: float = 0.0):
        def run():
            folder = tmp_path / name
            folder.mkdir()
            prepared.append(name)
            return _plot_command(folder / "p.png", seconds), folder / "p.png", folder
        return run

    previewer.request("slow", prepare("slow", 30.0))
    assert shown == [(None, "Drawing the likelihood plot...")] and timer.active and previewer.busy
    timer.slot()
    assert prepared == []  # not due yet
    clock.now = 1.0
    timer.slot()
    assert prepared == ["slow"]
    previewer.request("fast", prepare("fast"))  # the slow one is cancelled and never shown
    assert not (tmp_path / "slow").exists()
    previewer.request("fast", prepare("other"))  # same key: nothing happens
    clock.now = 2.0
    _drain(previewer, timer)
    assert prepared == ["slow", "fast"] and shown[-1] == (b"PNG", "") and not (tmp_path / "fast").exists()
    assert [m for _, m in shown].count("Drawing the likelihood plot...") == 2


def test_preview_reports_failures_and_clears(tmp_path):
    shown, timer, clock = [], FakeTimer(), Clock()
    previewer = preview.PriorPreview(lambda png, message: shown.append((png, message)), timer, delayMs=0, clock=clock)

    def broken():
        raise ValueError("the segment to learn the prior from is empty")

    previewer.request(1, broken)
    timer.slot()
    assert shown[-1] == (None, "No plot: the segment to learn the prior from is empty") and not timer.active
    failing = _python("import sys; sys.stderr.write('error: no small-lesion-il model\\n'); sys.exit(2)")
    previewer.request(2, lambda: (failing, tmp_path / "never.png", None))
    _drain(previewer, timer)
    assert shown[-1] == (None, "No plot: no small-lesion-il model")
    previewer.request(3, lambda: (_python("pass"), tmp_path / "never.png", None))
    _drain(previewer, timer)
    assert shown[-1] == (None, "No plot: no picture was written")
    previewer.clear("Select a segment.")
    assert shown[-1] == (None, "Select a segment.") and not previewer.busy
    previewer.request(3, lambda: (_python("pass"), tmp_path / "never.png", None))  # cleared: asked again
    assert previewer.busy
