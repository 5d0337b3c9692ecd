"""Shows a :class:`LesionSegLib.process.BackgroundProcess` in a panel: progress bar, status line, Cancel.

One :class:`ProcessMonitor` per panel. It polls the running process from a ``qt.QTimer`` on the main thread
(``BackgroundProcess.poll`` runs the progress/log callbacks there), so the GUI never blocks and no MRML or
Qt call happens on the reader thread. Cancel kills the process tree; the next poll then reports the
cancelled run like any other end. When the run ends the monitor hides the progress bar and Cancel, writes
"Finished" / "Failed: <the backend's error line>" / "Cancelled" in the status line and calls
``onFinished(result)``; the panel loads results or shows the error from there.

Widgets are used through PythonQt properties only (``value``, ``text``, ``visible``, ``enabled``) and
``connect(signal, slot)``, so tests drive the monitor with plain stand-ins and a fake timer.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from .process import BackgroundProcess, ProcessResult

logger = logging.getLogger(__name__)

POLL_INTERVAL_MS = 100
"""How often the running process is polled (ms); each poll only drains the lines read so far."""


def result_text(result: ProcessResult) -> str:
    """The status line for an ended run: ``Finished``, ``Cancelled`` or ``Failed: <message>``."""
    if result.cancelled:
        return "Cancelled"
    return "Finished" if result.ok else f"Failed: {result.message()}"


class ProcessMonitor:
    """Wires one background run at a time to a progress bar (0..100), a status label and a Cancel button.

    Args:
        progressBar: a ``QProgressBar`` with range 0..100 (shown only while a run is watched).
        statusLabel: a ``QLabel`` for progress messages and the final status line.
        cancelButton: a ``QPushButton``; clicking it kills the watched process tree.
        onFinished: called on the main thread with the :class:`ProcessResult` once the run ended
            (after the widgets were reset, so it may start another run).
        timer: a ``qt.QTimer``-like object (``setInterval``, ``start``, ``stop``, ``connect("timeout()",
            slot)``); ``None`` creates a ``qt.QTimer``.
    """

    def __init__(self, progressBar: Any, statusLabel: Any, cancelButton: Any,
                 onFinished: Callable[[ProcessResult], None], timer: Any = None,
                 intervalMs: int = POLL_INTERVAL_MS) -> None:
        if timer is None:
            import qt

            timer = qt.QTimer()
        self.progressBar, self.statusLabel, self.cancelButton = progressBar, statusLabel, cancelButton
        self.onFinished = onFinished
        self._timer = timer
        self._timer.setInterval(int(intervalMs))
        self._timer.connect("timeout()", self.poll)
        self.cancelButton.connect("clicked(bool)", self.cancel)
        self._runner: Optional[BackgroundProcess] = None
        self._forwardProgress: Optional[Callable[[float, str], None]] = None
        self._showRunning(False)

    @property
    def running(self) -> bool:
        """True while a watched run has not been reported to ``onFinished`` yet."""
        return self._runner is not None

    def watch(self, runner: BackgroundProcess, message: str = "Starting...") -> None:
        """Show ``runner`` (already started) until it ends; its own progress callback still runs.

        Raises:
            RuntimeError: another run is being watched.
        """
        if self._runner is not None:
            raise RuntimeError("a background run is already shown in this panel; cancel it first")
        self._forwardProgress = runner.on_progress
        runner.on_progress = self._onProgress
        self._runner = runner
        self.progressBar.value = 0
        self.statusLabel.text = message
        self._showRunning(True)
        self._timer.start()

    def cancel(self, checked: bool = False) -> None:
        """Kill the watched process tree; the next poll reports the cancelled run (no-op when idle)."""
        if self._runner is None:
            return
        self.statusLabel.text = "Cancelling..."
        self.cancelButton.enabled = False
        self._runner.cancel()

    def poll(self) -> Optional[ProcessResult]:
        """Handle the output read so far; once the run ended, reset the widgets and call ``onFinished``."""
        runner = self._runner
        if runner is None:
            self._timer.stop()
            return None
        result = runner.poll()
        if result is None:
            return None
        self._timer.stop()
        runner.on_progress, self._runner, self._forwardProgress = self._forwardProgress, None, None
        self._showRunning(False)
        self.statusLabel.text = result_text(result)
        logger.info("background run ended: %s", result.message())
        self.onFinished(result)
        return result

    def _onProgress(self, fraction: float, message: str) -> None:
        self.progressBar.value = int(round(100.0 * fraction))
        if message:
            self.statusLabel.text = message
        if self._forwardProgress is not None:
            self._forwardProgress(fraction, message)

    def _showRunning(self, running: bool) -> None:
        self.progressBar.visible = running
        self.cancelButton.visible = running
        self.cancelButton.enabled = running
