"""The "Run on" section of every LesionSeg panel and of the refine effect: this computer or a LesionSeg server, its URL
and token (Slicer's application settings), and a Test connection button that shows the server's device and methods.

Every section shows the one setting of :mod:`LesionSegLib.remote`: a change in one panel is saved at once and shown
by the others. The connection test runs on its own thread (the GUI keeps painting while it waits, at most
:data:`TEST_TIMEOUT_S`). Widgets are used through PythonQt properties (``text``, ``currentIndex``, ``enabled``) and
``connect``; ``qt``, ``ctk`` and ``slicer`` are imported inside the methods.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from . import remote
from .interactive import Worker

logger = logging.getLogger(__name__)

TEST_TIMEOUT_S = 20.0
_TESTER = Worker("LesionSeg connection test")


class RunOnSection:
    """A collapsible "Run on" section; add :attr:`widget` to a panel's layout (or an effect's options).

    Args:
        settings: a ``QSettings``-like object (default: Slicer's application settings, ``qt.QSettings()``).
    """

    def __init__(self, settings: Any = None) -> None:
        import ctk
        import qt

        self.settings = settings if settings is not None else qt.QSettings()
        self.widget = ctk.ctkCollapsibleButton()
        self.widget.text = "Run on"
        self.widget.collapsed = True
        form = qt.QFormLayout(self.widget)
        self.whereCombo = qt.QComboBox()
        for label in remote.WHERE_LABELS:
            self.whereCombo.addItem(label)
        self.whereCombo.toolTip = ("Where the models run: here, or on a LesionSeg server (lesionseg serve) on a GPU "
                                   "machine; S4C screening always runs here")
        self.urlEdit = qt.QLineEdit()
        self.urlEdit.placeholderText = remote.DEFAULT_URL
        self.urlEdit.toolTip = "The server, e.g. http://127.0.0.1:8765 through an SSH tunnel (see the README)"
        self.tokenEdit = qt.QLineEdit()
        self.tokenEdit.echoMode = qt.QLineEdit.Password
        self.tokenEdit.toolTip = "The server's token (empty when it has none); kept in Slicer's settings file"
        self.testButton = qt.QPushButton("Test connection")
        self.statusLabel = qt.QLabel("")
        self.statusLabel.wordWrap = True
        form.addRow("Run on:", self.whereCombo)
        form.addRow("Server URL:", self.urlEdit)
        form.addRow("Token:", self.tokenEdit)
        form.addRow(self.testButton)
        form.addRow(self.statusLabel)
        self.whereCombo.connect("currentIndexChanged(int)", self.onChanged)
        self.urlEdit.connect("editingFinished()", self.onChanged)
        self.tokenEdit.connect("editingFinished()", self.onChanged)
        self.testButton.connect("clicked(bool)", self.onTest)
        remote.add_listener(self.show)
        target = remote.load(self.settings)
        remote.set_current(target)

    def target(self) -> remote.RunTarget:
        """The setting the widgets show."""
        index = max(0, min(int(self.whereCombo.currentIndex), len(remote.WHERE) - 1))
        return remote.RunTarget(remote.WHERE[index], str(self.urlEdit.text).strip(), str(self.tokenEdit.text).strip())

    def show(self, target: remote.RunTarget) -> None:
        """Show ``target`` (without firing the change handlers)."""
        for widget in (self.whereCombo, self.urlEdit, self.tokenEdit):
            widget.blockSignals(True)
        try:
            self.whereCombo.currentIndex = remote.WHERE.index(target.where)
            self.urlEdit.text, self.tokenEdit.text = target.url, target.token
        finally:
            for widget in (self.whereCombo, self.urlEdit, self.tokenEdit):
                widget.blockSignals(False)
        server = target.server
        self.urlEdit.enabled = self.tokenEdit.enabled = self.testButton.enabled = server
        if not server:
            self.statusLabel.text = "Models run on this computer."

    def onChanged(self, *args: Any) -> None:
        """Save and apply what the widgets show (a server without a URL gets the default URL)."""
        target = self.target()
        if target.server and not target.url:
            target = remote.RunTarget("server", remote.DEFAULT_URL, target.token)
        remote.save(self.settings, target)
        remote.set_current(target)
        if target.server:
            self.statusLabel.text = f"Models run on {target.url} (Test connection to check)."

    def onTest(self, checked: bool = False) -> Optional[str]:
        """Connect to the server shown; the status line shows its version, device and methods, or the error."""
        import slicer

        target = self.target()
        self.statusLabel.text = f"Connecting to {target.url or remote.DEFAULT_URL}..."
        try:
            task = _TESTER.submit(remote.check_connection_job, target, label="connection test")
            text = task.wait(timeout=TEST_TIMEOUT_S, idle=slicer.app.processEvents)
        except Exception as exc:  # shown in the status line: a failed test is an answer, not a crash
            logger.info("connection test failed: %s", exc)
            self.statusLabel.text = f"Failed: {exc}"
            return None
        self.statusLabel.text = text
        return text

    def cleanup(self) -> None:
        """Stop following the setting (the panel is unloaded)."""
        remote.remove_listener(self.show)
