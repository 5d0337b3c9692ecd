"""Runs the backend's command line in a background process, with progress and a Cancel that kills the tree.

Long jobs (whole-volume methods, training) run out of Slicer's process, as SlicerTotalSegmentator and
SlicerMONAIAuto3DSeg do: ``[PythonSlicer, -m, lesionseg.cli, --progress, lines, ...]``. The backend then
prints ``PROGRESS <fraction 0..1> <message>`` lines on stderr and, on failure, exits non-zero with one
``error: ...`` line. Output is read on a daemon thread into a queue; :meth:`BackgroundProcess.poll`, called
from the main thread (e.g. by a ``qt.QTimer``), drains it and calls the callbacks there, so no callback ever
runs on the reader thread and the GUI stays responsive.

Cancelling kills the whole process tree without psutil:

* Linux / macOS: the child starts in a new session (``start_new_session=True``), so it leads a new process
  group; Cancel sends SIGTERM to the group, then SIGKILL to what is left after a grace period. Descendants
  that start their own session escape (the backend's workers do not).
* Windows: the child starts with ``CREATE_NEW_PROCESS_GROUP`` (and no console window); Cancel starts
  ``taskkill /F /T /PID <pid>``, which ends the process and every descendant.

:meth:`BackgroundProcess.cancel` returns at once (it runs on the GUI thread): it only sends the first signal (or
starts ``taskkill``); :meth:`BackgroundProcess.poll` sends SIGKILL once the grace period is over and reports the
run as cancelled when the process has ended.

Not hand-written elsewhere because ``slicer.util.launchConsoleProcess`` (5.12+ non-blocking mode) neither
parses progress nor kills a process tree, and older Slicer versions have no non-blocking mode at all.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

logger = logging.getLogger(__name__)

PROGRESS_PREFIX = "PROGRESS "
ERROR_PREFIX = "error: "
BACKEND_MODULE = "lesionseg.cli"

ProgressCallback = Callable[[float, str], None]
LogCallback = Callable[[str], None]


def python_executable() -> str:
    """Slicer's ``PythonSlicer`` launcher when on PATH (it sets up Slicer's environment), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def backend_command(args: Sequence[str], python: Optional[str] = None) -> list[str]:
    """``[python, -m, lesionseg.cli, --progress, lines, *args]``."""
    return [python or python_executable(), "-m", BACKEND_MODULE, "--progress", "lines", *map(str, args)]


def parse_progress(line: str) -> Optional[tuple[float, str]]:
    """``(fraction clipped to 0..1, message)`` of a ``PROGRESS`` line; ``None`` for any other line."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    parts = line[len(PROGRESS_PREFIX):].strip().split(" ", 1)
    try:
        fraction = float(parts[0])
    except ValueError:
        return None
    if fraction != fraction:  # NaN
        return None
    return min(max(fraction, 0.0), 1.0), (parts[1].strip() if len(parts) > 1 else "")


def parse_error(line: str) -> Optional[str]:
    """The message of an ``error: ...`` line; ``None`` for any other line."""
    return line[len(ERROR_PREFIX):].strip() if line.startswith(ERROR_PREFIX) else None


@dataclass
class ProcessResult:
    """How a background run ended.

    Attributes:
        returncode: the exit status (negative = killed by that signal on POSIX).
        error: the message of the last ``error:`` line, if any.
        output: every line that was neither progress nor error, in order.
        cancelled: True when :meth:`BackgroundProcess.cancel` ended it.
    """

    returncode: int
    error: Optional[str] = None
    output: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.cancelled

    def message(self) -> str:
        """One line for the user: the backend's error, or what ended the run."""
        if self.cancelled:
            return "cancelled"
        if self.error:
            return self.error
        return "finished" if self.returncode == 0 else f"failed with exit status {self.returncode}"


class BackgroundProcess:
    """One command run in the background; see the module docstring for the protocol and Cancel."""

    PIPE_GRACE = 2.0
    """Seconds to keep reading after the process ended, while a descendant still holds its output open."""

    def __init__(self, command: Sequence[str], on_progress: Optional[ProgressCallback] = None,
                 on_log: Optional[LogCallback] = None, env: Optional[dict] = None,
                 cwd: Optional[str] = None) -> None:
        if not command:
            raise ValueError("empty command")
        self.command = [str(c) for c in command]
        self.on_progress, self.on_log = on_progress, on_log
        self._env, self._cwd = env, cwd
        self._proc: Optional[subprocess.Popen] = None
        self._lines: queue.Queue = queue.Queue()
        self._reader: Optional[threading.Thread] = None
        self._result: Optional[ProcessResult] = None
        self._output: list[str] = []
        self._error: Optional[str] = None
        self._cancelled = False
        self._kill_at = 0.0
        self._eof = False
        self._killed = False
        self._killer: Optional[subprocess.Popen] = None
        self._exited_at: Optional[float] = None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    @property
    def output(self) -> list[str]:
        """The non-progress, non-error lines handled by :meth:`poll` so far."""
        return list(self._output)

    def start(self) -> "BackgroundProcess":
        """Start the process and its reader thread (returns self)."""
        if self._proc is not None:
            raise RuntimeError("already started")
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True
        logger.info("starting: %s", subprocess.list2cmdline(self.command))
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                      bufsize=1, env=self._env, cwd=self._cwd, **kwargs)
        self._reader = threading.Thread(target=self._read, name="LesionSeg output reader", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        stream = self._proc.stdout
        for line in stream:
            self._lines.put(line.rstrip("\r\n"))
        stream.close()
        self._lines.put(None)

    def poll(self) -> Optional[ProcessResult]:
        """Handle the lines read so far (callbacks run here); the result once the process has ended."""
        if self._proc is None:
            raise RuntimeError("not started")
        if self._result is not None:
            return self._result
        if self._cancelled:
            self._finish_cancel()
        while not self._eof:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._eof = True
                break
            self._handle(line)
        if self._proc.poll() is None:
            return None  # still running (its output may already be closed): never block the GUI thread here
        finished_reading = self._eof
        if not finished_reading:
            # Ended, but a descendant may still hold the output pipe open: stop waiting for it after a while.
            self._exited_at = self._exited_at or time.monotonic()
            finished_reading = self._cancelled or time.monotonic() - self._exited_at > self.PIPE_GRACE
        if finished_reading:
            returncode = self._proc.wait()
            self._result = ProcessResult(returncode, self._error, self._output, self._cancelled)
            logger.info("process %s ended: %s", self._proc.pid, self._result.message())
        return self._result

    def _handle(self, line: str) -> None:
        progress = parse_progress(line)
        if progress is not None:
            if self.on_progress:
                self.on_progress(*progress)
            return
        error = parse_error(line)
        if error is not None:
            self._error = error
        else:
            self._output.append(line)
        if self.on_log:
            self.on_log(line)

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05,
             idle: Optional[Callable[[], None]] = None) -> ProcessResult:
        """Poll until the process ends; ``idle()`` runs between polls (e.g. ``slicer.app.processEvents``).

        Raises:
            TimeoutError: ``timeout`` seconds passed (the process tree is killed first).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.poll()
            if result is not None:
                return result
            if deadline is not None and time.monotonic() > deadline:
                self.cancel(grace=0.0)
                while self.poll() is None:
                    time.sleep(interval)
                raise TimeoutError(f"{self.command[0]} did not finish within {timeout} s; it was killed")
            if idle is not None:
                idle()
            time.sleep(interval)

    def cancel(self, grace: float = 2.0) -> None:
        """Start killing the process and all its descendants and return at once (no-op when it already ended or
        is being cancelled); the next :meth:`poll` calls finish the job (SIGKILL after ``grace`` seconds)."""
        if self._proc is None or self._result is not None or self._cancelled:
            return
        self._cancelled = True
        self._kill_at = time.monotonic() + grace
        pid = self._proc.pid
        if os.name == "nt":
            self._killer = subprocess.Popen(["taskkill", "/F", "/T", "/PID", str(pid)], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        else:
            self._signal_group(pid, signal.SIGTERM)
        logger.info("cancelling the process tree of %s", pid)

    def _finish_cancel(self) -> None:
        """While cancelled: SIGKILL the group after the grace period, and once the process ended (its descendants
        may still hold the output open)."""
        if os.name == "nt" or self._killed:
            return
        ended = self._proc.poll() is not None
        if ended or time.monotonic() >= self._kill_at:
            self._signal_group(self._proc.pid, signal.SIGKILL)
            self._killed = ended

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
