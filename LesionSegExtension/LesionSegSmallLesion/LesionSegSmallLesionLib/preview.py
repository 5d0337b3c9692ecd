"""The likelihood plot of the panel's prior choice, drawn by ``lesionseg prior --plot`` in the background.

:class:`PriorPreview` is not ``LesionSegLib.background_ui.ProcessMonitor`` because it behaves differently: the
newest request wins (a plot still being drawn for an older choice is cancelled, never shown), requests are
debounced (typing "130" in a spin box asks for one plot, not three), there is no progress bar or Cancel button
and nothing is reported when a run is superseded. It polls from a ``qt.QTimer`` on the main thread, so the
files of a request are prepared there (MRML access) and the callback runs there. Pure Python: tests inject a
timer, a clock and the runner factory.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Hashable, Optional

from LesionSegLib.process import BackgroundProcess

logger = logging.getLogger(__name__)

DELAY_MS = 400
"""A request is started this long after the last change of the prior choice (ms)."""
POLL_INTERVAL_MS = 100

Show = Callable[[Optional[Path], str], None]


class PriorPreview:
    """Draws the plot of the latest request and hands it to ``show(png or None, message)``.

    ``show`` gets ``(None, message)`` when a request is taken ("Drawing ..."), when drawing failed ("No plot:
    <the backend's error>") or when the preview was cleared; ``(png, "")`` when a plot is ready (the file is
    deleted right after ``show`` returns: load it there).

    Args:
        show: the panel's callback (e.g. sets a ``QLabel``'s pixmap).
        timer: a ``qt.QTimer``-like object (``setInterval``, ``start``, ``stop``, ``connect("timeout()", slot)``);
            ``None`` creates a ``qt.QTimer``.
        delayMs: debounce delay; clock: seconds (monotonic); make: builds a runner from a command.
    """

    def __init__(self, show: Show, timer: Any = None, delayMs: int = DELAY_MS, intervalMs: int = POLL_INTERVAL_MS,
                 clock: Callable[[], float] = time.monotonic,
                 make: Callable[[list], BackgroundProcess] = BackgroundProcess) -> None:
        if timer is None:
            import qt

            timer = qt.QTimer()
        self.show, self._timer, self._delay, self._clock, self._make = show, timer, delayMs / 1000.0, clock, make
        self._timer.setInterval(int(intervalMs))
        self._timer.connect("timeout()", self.poll)
        self._key: Any = None
        self._pending: Optional[tuple[Callable[[], Any], float]] = None
        self._running: Optional[tuple[BackgroundProcess, Path, Optional[Path]]] = None

    @property
    def busy(self) -> bool:
        """True while a request is waiting or being drawn."""
        return self._pending is not None or self._running is not None

    def request(self, key: Hashable, prepare: Callable[[], Any],
                message: str = "Drawing the likelihood plot...") -> None:
        """Ask for the plot of ``key``; ``prepare()`` (run later, on the main thread) writes the inputs and returns
        ``(command, png, folder to delete or None)``. Asking again for the current key does nothing."""
        if key == self._key:
            return
        self._stop_running()
        self._key, self._pending = key, (prepare, self._clock() + self._delay)
        self.show(None, message)
        self._timer.start()

    def clear(self, message: str = "") -> None:
        """Forget every request (the running one is cancelled) and show ``message`` instead of a plot."""
        self._stop_running()
        self._key, self._pending = None, None
        self._timer.stop()
        self.show(None, message)

    def poll(self) -> None:
        """Timer tick: report a finished plot, start a due request, stop the timer when idle."""
        if self._running is not None:
            runner, png, folder = self._running
            result = runner.poll()
            if result is not None:
                self._running = None
                if result.ok and png.is_file():
                    self.show(png, "")
                else:
                    self.show(None, f"No plot: {result.message() if not result.ok else 'no picture was written'}")
                _remove(folder)
        if self._pending is not None and self._running is None and self._clock() >= self._pending[1]:
            prepare, self._pending = self._pending[0], None
            self._start(prepare)
        if not self.busy:
            self._timer.stop()

    def _start(self, prepare: Callable[[], Any]) -> None:
        folder = None
        try:
            command, png, folder = prepare()
            self._running = (self._make(command).start(), Path(png), folder)
        except Exception as exc:  # a bad choice or a failed export: the panel shows why instead of a plot
            logger.info("no prior plot: %s", exc)
            _remove(folder)
            self.show(None, f"No plot: {exc}")

    def _stop_running(self) -> None:
        if self._running is not None:
            runner, _, folder = self._running
            self._running = None
            runner.cancel()
            _remove(folder)


def _remove(folder: Optional[Path]) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
