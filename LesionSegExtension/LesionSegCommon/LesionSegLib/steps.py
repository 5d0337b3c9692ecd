"""Several backend commands run one after the other as ONE background run (pure Python; no ``slicer``).

E.g. a prior learnt from a segment needs ``lesionseg prior`` to write ``prior.json`` before ``lesionseg predict``
reads it (small lesions). :class:`SequentialRun` starts each command as a
:class:`LesionSegLib.process.BackgroundProcess` once the one before it succeeded, and looks like a single
``BackgroundProcess`` to ``LesionSegLib.background_ui.ProcessMonitor`` and to the logic (``start``, ``poll``,
``wait``, ``cancel``, ``on_progress``, ``on_log``): one progress bar split into a share per step, one Cancel that
kills the running step's process tree and starts no further step, one :class:`LesionSegLib.process.ProcessResult`
(the first failing step's, else the last step's).
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

from .process import BackgroundProcess, LogCallback, ProcessResult, ProgressCallback

logger = logging.getLogger(__name__)


class SequentialRun:
    """Commands run in order; see the module docstring.

    Args:
        commands: the command lines, in order (at least one).
        shares: the fraction of the progress bar of each step (normalised to sum 1); ``None``: equal shares.
        on_progress, on_log: as for ``BackgroundProcess`` (the fraction covers the whole sequence).
        make: builds one step's runner (``BackgroundProcess`` or a test stand-in) from ``(command, on_progress,
            on_log)``.
    """

    def __init__(self, commands: Sequence[Sequence[str]], shares: Optional[Sequence[float]] = None,
                 on_progress: Optional[ProgressCallback] = None, on_log: Optional[LogCallback] = None,
                 make: Callable[..., BackgroundProcess] = BackgroundProcess) -> None:
        self.commands = [[str(c) for c in command] for command in commands]
        if not self.commands or not all(self.commands):
            raise ValueError("a sequential run needs at least one non-empty command")
        weights = [1.0] * len(self.commands) if shares is None else [float(s) for s in shares]
        if len(weights) != len(self.commands) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"one non-negative share per command expected, got {shares!r}")
        self._shares = [w / sum(weights) for w in weights]
        self._offsets = [sum(self._shares[:n]) for n in range(len(self._shares))]
        self.command = self.commands[0]
        self.on_progress, self.on_log, self._make = on_progress, on_log, make
        self._index = -1
        self._current: Optional[BackgroundProcess] = None
        self._output: list[str] = []
        self._result: Optional[ProcessResult] = None
        self._cancelled = False

    @property
    def step(self) -> int:
        """Index of the running (or last) step; -1 before :meth:`start`."""
        return self._index

    @property
    def output(self) -> list[str]:
        """The non-progress, non-error lines of every step handled so far."""
        return self._output + (self._current.output if self._current is not None and self._result is None else [])

    def start(self) -> "SequentialRun":
        """Start the first command (returns self)."""
        if self._index >= 0:
            raise RuntimeError("already started")
        self._next()
        return self

    def _next(self) -> None:
        self._index += 1
        offset, share = self._offsets[self._index], self._shares[self._index]
        self.command = self.commands[self._index]
        self._current = self._make(self.command, lambda fraction, message: self._progress(offset + share * fraction,
                                                                                          message), self._log)
        self._current.start()

    def _progress(self, fraction: float, message: str) -> None:
        if self.on_progress:
            self.on_progress(min(max(fraction, 0.0), 1.0), message)

    def _log(self, line: str) -> None:
        if self.on_log:
            self.on_log(line)

    def poll(self) -> Optional[ProcessResult]:
        """Handle the running step's output; start the next step after a success; the result once all ended."""
        if self._current is None:
            raise RuntimeError("not started")
        if self._result is not None:
            return self._result
        ended = self._current.poll()
        if ended is None:
            return None
        self._output += ended.output
        if ended.ok and not self._cancelled and self._index + 1 < len(self.commands):
            try:
                self._next()
                return None
            except OSError as exc:
                ended = ProcessResult(-1, f"could not start {self.commands[self._index][0]}: {exc}")
        self._result = ProcessResult(ended.returncode, ended.error, list(self._output),
                                     ended.cancelled or self._cancelled)
        logger.info("sequential run ended after step %d of %d: %s", self._index + 1, len(self.commands),
                    self._result.message())
        return self._result

    wait = BackgroundProcess.wait
    """Poll until the sequence ends (``BackgroundProcess.wait``: ``timeout``, ``interval``, ``idle``)."""

    def cancel(self, grace: float = 2.0) -> None:
        """Kill the running step's process tree; no further step starts (no-op once ended)."""
        if self._current is None or self._result is not None:
            return
        self._cancelled = True
        self._current.cancel(grace)
