"""Shows a :class:`LesionSegLib.interactive.Task` in a panel, and the panel side of an interactive click.

:class:`TaskMonitor` polls the task from a ``qt.QTimer`` on the main thread: the status line shows what the worker
is doing and for how long, the panel's run button becomes "Cancel" while it runs (a click returns at once and drops
the result), and ``onFinished(task)`` is called on the main thread once it ended. Widgets are used through PythonQt
properties only (``text``, ``enabled``) and ``connect``, so tests drive it with stand-ins and a fake timer.

:class:`InteractivePanelMixin` is what the Box and RECIST panels share: install missing packages (asking first,
without a wait cursor over the dialog), start the logic's click without waiting, finish it (write the result) and
undo. ``slicer`` and ``qt`` are imported inside the methods.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from .interactive import Task
from .panel import install_packages

logger = logging.getLogger(__name__)

POLL_INTERVAL_MS = 50


class TaskMonitor:
    """Wires one task at a time to a status label and the panel's run button (which cancels while running).

    Args:
        statusLabel: a ``QLabel``. button: the ``QPushButton`` that started the task; its text becomes
            ``cancelText`` while the task runs and a click then cancels it (the panel's click handler calls
            :meth:`cancel` when :attr:`running`).
        onFinished: called with the ended (or cancelled) task on the main thread, after the widgets were reset.
        timer: a ``qt.QTimer``-like object; ``None`` creates one.
    """

    def __init__(self, statusLabel: Any, button: Any, onFinished: Callable[[Task], None], timer: Any = None,
                 intervalMs: int = POLL_INTERVAL_MS, cancelText: str = "Cancel") -> None:
        if timer is None:
            import qt

            timer = qt.QTimer()
        self.statusLabel, self.button, self.onFinished = statusLabel, button, onFinished
        self.cancelText = cancelText
        self._timer = timer
        self._timer.setInterval(int(intervalMs))
        self._timer.connect("timeout()", self.poll)
        self._task: Optional[Task] = None
        self._buttonText = ""

    @property
    def running(self) -> bool:
        return self._task is not None

    def watch(self, task: Task) -> None:
        """Show ``task`` until it ends. RuntimeError: another task is shown."""
        if self._task is not None:
            raise RuntimeError("a task is already shown in this panel; cancel it first")
        self._task, self._buttonText = task, self.button.text
        self.button.text = self.cancelText
        self.button.enabled = True
        self.statusLabel.text = task.status
        self._timer.start()

    def cancel(self, checked: bool = False) -> None:
        """Cancel the shown task; returns at once (the result is dropped), ``onFinished`` runs now."""
        if self._task is not None:
            self._task.cancel()
            self.poll()

    def poll(self) -> Optional[Task]:
        """Update the status line; once the task ended, reset the widgets and call ``onFinished``."""
        task = self._task
        if task is None:
            self._timer.stop()
            return None
        if not task.done():
            self.statusLabel.text = f"{task.status} ({task.elapsed():.0f} s)"
            return None
        self._timer.stop()
        self._task = None
        self.button.text = self._buttonText
        self.statusLabel.text = "Cancelled." if task.cancelled else ""
        self.onFinished(task)
        return task


class InteractivePanelMixin:
    """Panel side of an :class:`LesionSegLib.interactive.InteractiveLogic` (Box, RECIST).

    The panel calls :meth:`_watchTasks` in ``setup()`` (its ``.ui`` has ``segmentButton``, ``undoButton`` and
    ``statusLabel``), connects ``segmentButton`` to a handler that calls :meth:`_startTask` and implements
    ``_taskDone(result)`` (show what was added) and ``_updateButtons()``.
    """

    ui: Any = None
    logic: Any = None
    taskMonitor: Optional[TaskMonitor] = None
    _failureTitle = "LesionSeg could not segment the lesion."

    def _watchTasks(self) -> None:
        self.taskMonitor = TaskMonitor(self.ui.statusLabel, self.ui.segmentButton, self._onTaskFinished)

    def _startTask(self, start: Callable[[], Task]) -> None:
        """Cancel the running click, or install what is missing (asks first) and ``start()`` a click without waiting."""
        import slicer

        if self.taskMonitor.running:
            self.taskMonitor.cancel()
            return
        if not install_packages("LesionSeg needs Python packages.", self.ui.statusLabel):
            return
        try:
            with slicer.util.tryWithErrorDisplay(self._failureTitle):
                task = start()
        except Exception as exc:  # shown to the user by tryWithErrorDisplay
            self.ui.statusLabel.text = f"Failed: {exc}"
            return
        self.taskMonitor.watch(task)
        self._updateButtons()

    def _onTaskFinished(self, task: Task) -> None:
        import slicer

        try:
            with slicer.util.tryWithErrorDisplay(self._failureTitle, waitCursor=True):
                result = self.logic.finish(task)
        except Exception as exc:  # shown to the user by tryWithErrorDisplay
            self.ui.statusLabel.text = f"Failed: {exc}"
            result = None
        if result is not None:
            self._taskDone(result)
        self._updateButtons()

    def onUndo(self) -> None:
        import slicer

        with slicer.util.tryWithErrorDisplay("Undo failed.", waitCursor=True):
            description = self.logic.undo()
            self.ui.statusLabel.text = f"Undone: {description}" if description else "Nothing to undo."
        self._updateButtons()

    def cleanup(self) -> None:
        """The module is unloaded: stop waiting for the running click, then the other bases' cleanup."""
        if self.taskMonitor is not None:
            self.taskMonitor.cancel()
        super().cleanup()

    def _resetPanel(self) -> None:
        """The scene is closing: drop the running click and what belonged to the scene."""
        if self.taskMonitor is not None and self.taskMonitor.running:
            self.taskMonitor.cancel()
        self.logic.reset()

    def _taskDone(self, result: Any) -> None:
        """Hook: show what ``logic.finish`` returned."""
        raise NotImplementedError

    def _updateButtons(self) -> None:
        """Hook: enable the panel's buttons."""
        raise NotImplementedError
