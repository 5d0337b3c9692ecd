"""Interactive work off the GUI thread: one long-lived worker thread, its tasks, and the session's warm models.

A radiologist draws a box or a line and waits; building a model (importing torch, loading weights) takes
seconds and a prediction up to a few, so neither may run on Slicer's main thread. As SLICER.md (section 10)
recommends for interactive prompt models, they stay warm in-process on ONE long-lived worker thread that never
touches MRML or Qt:

* the main thread reads what it needs from the scene (the volume's voxels, the prompt), submits a job with
  :meth:`Worker.submit` and polls the returned :class:`Task` (a ``qt.QTimer`` in a panel, or
  :meth:`Task.wait` with ``slicer.app.processEvents`` in console use); it writes the result into the scene
  itself once the task is done;
* the job reports what it is doing (``report("Loading tsfcn...")``), shown as the panel's progress line;
* :meth:`Task.cancel` returns at once: the job stops at its next ``report`` call, and a step that is already
  running (a network forward pass cannot be interrupted) finishes in the background and its result is dropped;
* jobs run one after the other, so the models and sessions they use are never touched by two threads at once.

:class:`ModelCache` keeps ONE built model per ``(method, weights, device)`` for the whole Slicer session, shared
by every panel (:data:`MODELS`), together with the key of the image it was last primed with (``set_image``).
Pure Python: no ``slicer``, ``qt`` or backend import.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional

logger = logging.getLogger(__name__)


PREFERRED_BOX_METHODS = ("box-unet", "tsfcn", "classical-box")
"""Default order for box prompts: the lesion-agnostic box model when its weights exist (it matches TS-FCN on lung
nodules and is far better on other lesions, docs/box-unet.md), then TS-FCN (the paper's lung method), else the
weight-free baseline. Also the
choices a panel offers before the backend's registry was read in this session (reading it imports torch)."""

KNOWN_BOX_METHODS: list = []
"""``[names]``: the box methods of the backend's registry once ``LesionSegLib.session.box_methods`` read it."""


def box_method_choices() -> list[str]:
    """The box methods a panel offers without importing the backend (or torch): the registry's, once a click has
    read it in this session, else :data:`PREFERRED_BOX_METHODS`."""
    return list(KNOWN_BOX_METHODS[0]) if KNOWN_BOX_METHODS else list(PREFERRED_BOX_METHODS)


class TaskCancelled(Exception):
    """The task was cancelled (raised by its ``report`` callback and by :meth:`Task.result`)."""


class Task:
    """One job submitted to a :class:`Worker`.

    Attributes:
        label: what the job is, for messages.
        status: the job's latest progress message (written by the worker thread, read by the main thread).
        started: ``time.monotonic()`` when it was submitted.
    """

    def __init__(self, function: Callable[..., Any], args: tuple, label: str = "task") -> None:
        self.label = label
        self.status = "Waiting..."
        self.started = time.monotonic()
        self._function, self._args = function, args
        self._done = threading.Event()
        self._cancelled = False
        self._result: Any = None
        self._error: Optional[BaseException] = None

    def report(self, message: str) -> None:
        """Called by the job: show ``message``; raises :class:`TaskCancelled` once the task was cancelled."""
        if self._cancelled:
            raise TaskCancelled(f"{self.label} was cancelled")
        self.status = str(message)

    def run(self) -> None:
        """Run the job (on the worker thread); its return value or exception is kept for :meth:`result`."""
        try:
            self.report("Starting...")
            self._result = self._function(self.report, *self._args)
        except BaseException as exc:  # handed to the main thread by result()
            self._error = exc
        finally:
            self._done.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop waiting for this task (returns at once); its result, when it comes, is dropped."""
        self._cancelled = True
        self.status = "Cancelled"

    def done(self) -> bool:
        """True once the job ended, or once it was cancelled (nobody waits for it any more)."""
        return self._cancelled or self._done.is_set()

    def elapsed(self) -> float:
        """Seconds since the task was submitted."""
        return time.monotonic() - self.started

    def result(self) -> Any:
        """The job's return value; re-raises its exception; :class:`TaskCancelled` when cancelled.

        Raises:
            RuntimeError: the job has not ended yet.
        """
        if self._cancelled:
            raise TaskCancelled(f"{self.label} was cancelled")
        if not self._done.is_set():
            raise RuntimeError(f"{self.label} has not finished yet")
        if self._error is not None:
            raise self._error
        return self._result

    def join(self, timeout: Optional[float] = None, interval: float = 0.02,
             idle: Optional[Callable[[], None]] = None) -> None:
        """Wait until :meth:`done`, calling ``idle()`` (e.g. ``slicer.app.processEvents``) between short sleeps.

        Raises:
            TimeoutError: ``timeout`` seconds passed (the task is cancelled first).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"{self.label} did not finish within {timeout} s")
            if idle is not None:
                idle()
            self._done.wait(interval)

    def wait(self, timeout: Optional[float] = None, interval: float = 0.02,
             idle: Optional[Callable[[], None]] = None) -> Any:
        """:meth:`join`, then :meth:`result` (the job's exception is raised here)."""
        self.join(timeout, interval, idle)
        return self.result()


class Worker:
    """One daemon thread running submitted jobs in order (started on the first :meth:`submit`)."""

    def __init__(self, name: str = "LesionSeg interactive worker") -> None:
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def submit(self, function: Callable[..., Any], *args: Any, label: str = "task") -> Task:
        """Run ``function(report, *args)`` on the worker thread; returns its :class:`Task` at once."""
        task = Task(function, args, label)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        self._queue.put(task)
        return task

    def _loop(self) -> None:
        while True:
            task = self._queue.get()
            if task.cancelled:
                continue
            t0 = time.perf_counter()
            task.run()
            logger.debug("%s took %.3f s", task.label, time.perf_counter() - t0)

    @property
    def thread(self) -> Optional[threading.Thread]:
        """The worker thread (``None`` before the first submit)."""
        return self._thread


WORKER = Worker()
"""The one worker thread of the Slicer session, shared by the interactive panels and the refine effect."""


Builder = Callable[[str, Optional[str], str], Any]
"""``builder(method, weights, device) -> segmenter`` (``weights`` ``None``: the installed model)."""


CRF_METHODS = ("classical-box", "recist-coseg")
"""Registered methods whose predictions end with DenseCRF (pydensecrf2), which may not install on every platform."""


def build_with_backend(method: str, weights: Optional[str], device: str) -> Any:
    """``lesionseg.build(method, weights, device)``; the backend (and torch) are imported here, on the worker.

    A method of :data:`CRF_METHODS` is built without its DenseCRF step when pydensecrf2 is not installed (a warning
    says so) if its options allow it, else refused (:func:`options_without_crf`). When "Run on" is a server
    (:mod:`LesionSegLib.remote`), a ``lesionseg.client.RemoteSegmenter`` is built instead (the server's own
    weights and device)."""
    from . import remote

    if remote.current().server:
        return remote.build_remote(method)
    import lesionseg

    options = None
    if method in CRF_METHODS:
        from .dependencies import crf_available

        if not crf_available():
            options = options_without_crf(method, lesionseg.get_method(method))
            warnings.warn(f"DenseCRF (pydensecrf2) is not installed: {method} runs without its DenseCRF step",
                          stacklevel=2)
    return lesionseg.build(method, weights=weights, device=device, options=options)


def options_without_crf(method: str, method_class: Any) -> Any:
    """The method's options with ``use_crf=False`` (its ``Options`` dataclass must have that field).

    Raises:
        LesionSegLib.dependencies.DependencyError: the method cannot run without DenseCRF.
    """
    from .dependencies import DependencyError

    options = getattr(method_class, "Options", None)
    if options is not None and dataclasses.is_dataclass(options) \
            and any(f.name == "use_crf" for f in dataclasses.fields(options)):
        return options(use_crf=False)
    raise DependencyError(f"{method} needs DenseCRF (the pydensecrf2 package), which is not installed: it builds "
                          "from source on most platforms and needs a C++ compiler (see the LesionSeg README). "
                          "Choose another method, or install a compiler and run "
                          "LesionSegLib.dependencies.ensure_installed(optional=['pydensecrf']) in the Python console.")


@dataclass
class CachedModel:
    """A built model and the key of the image its ``set_image`` was last called with (``None``: not primed)."""

    model: Any
    image_key: Optional[Hashable] = None


@dataclass
class ModelCache:
    """One built model per ``(method, weights, device)``, kept until :meth:`clear` (thread-safe)."""

    builder: Builder = build_with_backend
    _models: dict = field(default_factory=dict, init=False, repr=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False)

    @staticmethod
    def _key(method: str, weights: Optional[str], device: str) -> tuple:
        """``(method, weights, device, where)``: a model on a server is another model than the local one."""
        from .remote import current

        return method, None if weights is None else str(weights), device, current().key

    def get(self, method: str, weights: Optional[str], device: str) -> CachedModel:
        """The cached model of ``(method, weights, device)`` where "Run on" points now, built on first use (a failed
        build is not kept)."""
        key = self._key(method, weights, device)
        with self._lock:
            found = self._models.get(key)
        if found is None:
            t0 = time.perf_counter()
            found = CachedModel(self.builder(*key[:3]))
            with self._lock:
                found = self._models.setdefault(key, found)
            logger.info("built %s on %s in %.2f s", method, device, time.perf_counter() - t0)
        return found

    def has(self, method: str, weights: Optional[str], device: str) -> bool:
        """True when that model is built (nothing is built to find out)."""
        with self._lock:
            return self._key(method, weights, device) in self._models

    def forget_images(self) -> None:
        """Mark every model as not primed (e.g. the scene was closed): the next use calls ``set_image`` again."""
        with self._lock:
            for cached in self._models.values():
                cached.image_key = None

    def clear(self) -> None:
        """Drop every model (frees their memory once no task uses them)."""
        with self._lock:
            self._models.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)


MODELS = ModelCache()
"""The session's warm models, shared by every panel (Box, RECIST) and console logic."""


class InteractiveLogic:
    """Mixin for a console-first ``ScriptedLoadableModuleLogic`` whose clicks run on :data:`WORKER`.

    ``class <M>Logic(InteractiveLogic, ScriptedLoadableModuleLogic)``; its ``process`` reads the scene on the main
    thread, then ends with ``return self._start(job, args, apply, waitForCompletion)``: ``job(report, *args)`` runs
    on the worker, ``apply(result)`` writes the result into the scene on the main thread (in :meth:`finish`) and
    returns what ``process`` returns. The module's ``__init__`` sets ``self._undo`` (an ``UndoStack``) and
    ``self.segmenterSession`` (``None`` until the first click).

    Attributes:
        task: the running :class:`Task` (``None`` when idle).
    """

    task: Optional[Task] = None
    segmenterSession: Any = None
    _undo: Any = None
    _apply: Optional[Callable[[Any], Any]] = None

    def _start(self, job: Callable[..., Any], args: tuple, apply: Callable[[Any], Any], waitForCompletion: bool,
               label: str) -> Any:
        """Submit ``job``; the :class:`Task` when not waiting, else (keeping the GUI painting) ``finish(task)``."""
        if self.task is not None:
            raise RuntimeError(f"a {self.task.label} is already running; cancel it or wait for it first")
        self.task, self._apply = WORKER.submit(job, *args, label=label), apply
        if not waitForCompletion:
            return self.task
        import slicer

        self.task.join(idle=slicer.app.processEvents)
        return self.finish(self.task)

    def finish(self, task: Optional[Task] = None) -> Any:
        """Main thread: write the ended ``task``'s result into the scene; ``None`` when it was cancelled.

        Raises:
            RuntimeError: no such task is running, or it has not ended yet.
            Exception: the job's own error (e.g. ``lesionseg.LesionSegError``); the scene is unchanged then.
        """
        task = task or self.task
        if task is None or task is not self.task:
            raise RuntimeError("no interactive segmentation of this panel is running")
        if not task.done():
            raise RuntimeError(f"{task.label} has not finished yet")
        apply, self.task, self._apply = self._apply, None, None
        return None if task.cancelled else apply(task.result())

    def cancel(self) -> None:
        """Stop waiting for the running task (returns at once; its result is dropped)."""
        if self.task is not None:
            self.task.cancel()

    def undo(self) -> Optional[str]:
        """Remove the last result; returns its description (``None``: nothing to undo)."""
        return self._undo.undo()

    def canUndo(self) -> bool:
        return len(self._undo) > 0

    def reset(self) -> None:
        """The scene closed: cancel the running task, forget the undo history and the images (models stay warm)."""
        self.cancel()
        self.task, self._apply = None, None
        self._undo.clear()
        if self.segmenterSession is not None:
            # A cancelled job may still be using it; it only reads the image it was given, so clearing is safe
            # (image keys hold the node's modification time, which a new scene never repeats).
            self.segmenterSession.clear()
        MODELS.forget_images()
