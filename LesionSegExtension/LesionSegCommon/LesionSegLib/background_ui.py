"""Shows a :class:`LesionSegLib.process.BackgroundProcess` in a panel: progress bar, status line, Cancel.

One :class:`ProcessMonitor` per panel. It polls the running process from a ``qt.QTimer`` on the main thread
(``BackgroundProcess.poll`` runs the progress/log callbacks there), so the GUI never blocks and no MRML or
Qt call happens on the reader thread. Cancel kills the process tree; the next poll then reports the
cancelled run like any other end. When the run ends the monitor hides the progress bar and Cancel, writes
"Finished" / "Failed: <the backend's error line>" / "Cancelled" in the status line and calls
``onFinished(result)``; the panel loads results or shows the error from there.

Widgets are used through PythonQt properties only (``value``, ``text``, ``visible``, ``enabled``) and
``connect(signal, slot)``, so tests drive the monitor with plain stand-ins and a fake timer.

:class:`BackgroundRunPanelMixin` is the panel side every whole-volume panel shares: start a run of its logic
(installing missing packages first, with consent), finish it, list the results in a table whose rows are
double-clicked to centre the views. ``slicer`` and ``qt`` are imported inside the methods.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

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


class BackgroundRunPanelMixin:
    """Start / finish / jump-to of a panel whose logic runs one background job (``LesionSegLib.jobs``).

    The panel (``class <M>Widget(BackgroundRunPanelMixin, ParameterNodePanelMixin, ...)``) calls :meth:`_watchRuns`
    in ``setup()`` (its ``.ui`` has ``progressBar``, ``statusLabel`` and ``cancelButton``) and has
    ``onFinished(result)``, ``_showResult(found)`` (``None`` clears the results) and ``_updateButtons()``; its
    ``_showResult`` sets :attr:`_jumpRows` (e.g. with :meth:`_fillTable`) and its table's
    ``cellDoubleClicked(int,int)`` goes to :meth:`onJump`. Unloading the module or closing the scene cancels the
    run (and the scene close clears the results).
    """

    monitor: Any = None
    ui: Any = None
    logic: Any = None
    _jumpRows: Sequence[Any] = ()
    """The rows of the results table, in order; ``logic.jumpTo(row)`` centres the views on one."""
    _jumpFailure = "Could not centre the views on the lesion."
    """The error title when ``logic.jumpTo`` fails."""

    def _watchRuns(self) -> None:
        """Create :attr:`monitor`: the panel's progress bar, status line and Cancel button, ending in
        ``self.onFinished(result)``."""
        self.monitor = ProcessMonitor(self.ui.progressBar, self.ui.statusLabel, self.ui.cancelButton, self.onFinished)

    def cleanup(self) -> None:
        """The module is unloaded: cancel the run, then the other bases' cleanup."""
        self.monitor.cancel()
        super().cleanup()

    def _resetPanel(self) -> None:
        """The scene is closing: cancel the run and clear the results."""
        self.monitor.cancel()
        self._showResult(None)

    def _startRun(self, failureTitle: str, start: Callable[[], BackgroundProcess], message: str) -> None:
        """Install missing packages (asks first, no wait cursor over its dialogs), ``start()`` the run without waiting
        and show it in the monitor; on failure the error is shown (``failureTitle``) and the status line says
        ``Failed: <error>``."""
        import slicer

        from .panel import install_packages

        if not install_packages("LesionSeg needs Python packages.", self.ui.statusLabel):
            return
        try:
            with slicer.util.tryWithErrorDisplay(failureTitle, waitCursor=True):
                runner = start()
        except Exception as exc:  # already shown to the user by tryWithErrorDisplay
            self.ui.statusLabel.text = f"Failed: {exc}"
            return
        self._showResult(None)
        self.monitor.watch(runner, message)
        self._updateButtons()

    def _finishRun(self, result: ProcessResult, failureTitle: str) -> Any:
        """``logic.finish(result)`` (``None``: cancelled or failed; a failure is shown with ``failureTitle`` and
        the backend's error line goes to the status line)."""
        import slicer

        found = None
        try:
            with slicer.util.tryWithErrorDisplay(failureTitle, waitCursor=True):
                found = self.logic.finish(result)
        except Exception as exc:  # already shown to the user (the backend's error line) by tryWithErrorDisplay
            self.ui.statusLabel.text = f"Failed: {exc}"
        return found

    def _fillTable(self, table: Any, rows: Sequence[Any]) -> None:
        """Show ``rows`` (each with ``cells()``: one text per column) in a ``QTableWidget``; they become the
        :attr:`_jumpRows`."""
        import qt

        self._jumpRows = list(rows)
        table.setRowCount(len(self._jumpRows))
        for row, item in enumerate(self._jumpRows):
            for column, text in enumerate(item.cells()):
                table.setItem(row, column, qt.QTableWidgetItem(text))

    def onJump(self, row: int, column: int = 0) -> None:
        """A table row was double-clicked: centre the slice views on it (``logic.jumpTo``)."""
        import slicer

        if 0 <= row < len(self._jumpRows):
            with slicer.util.tryWithErrorDisplay(self._jumpFailure):
                self.logic.jumpTo(self._jumpRows[row])

    def _showResult(self, found: Any) -> None:
        """Hook: show ``found`` (``None``: clear the results)."""
        raise NotImplementedError

    def _updateButtons(self) -> None:
        """Hook: enable the panel's buttons for the current inputs and run state."""
        raise NotImplementedError

    def onFinished(self, result: ProcessResult) -> None:
        """Hook: the run ended (the monitor calls it on the main thread); e.g. :meth:`_finishRun` and show it."""
        raise NotImplementedError
