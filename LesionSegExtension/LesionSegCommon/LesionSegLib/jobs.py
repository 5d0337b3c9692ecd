"""One background run at a time for a console-first panel logic: start, finish, cancel, and the run's folder.

The whole-volume panels (PET/CT, small lesions, screening) write their inputs to a temporary folder, start the
backend's command line in the background (:class:`LesionSegLib.process.BackgroundProcess` or a runner with the
same ``wait``/``cancel``/``poll``) and load the outputs once it ended. What they share lives here:

* :class:`BackgroundJobLogic` -- a mixin for the ``<M>Logic`` class: at most one job, ``finish(result)``
  (``None`` when cancelled), ``cancel()``, ``jumpTo(row)``, and ``lastResult`` / ``lastOutputDir`` /
  ``lastSeconds`` / ``lastVolumes`` of the last run that ended well. The module supplies the loading step
  (``_loadJob``). The runs themselves are started by :func:`LesionSegLib.wholevolume.start_job`.
* :func:`finish_run` -- turns an ended run into its loaded result and cleans the folder up (inputs deleted,
  ``out/`` kept, the previous run's folder freed; everything removed on failure or Cancel).
* :func:`jump_to_lesion` -- centre the slice views on a lesion row's RAS centroid.

A job is any object with ``runner``, ``folder`` (the run's temporary folder), ``output_dir``, ``started``
(``time.perf_counter()`` at the start), ``input_paths()`` (the files or folders written for the run) and
``volumes`` (``{role: input volume}``), e.g. :class:`LesionSegLib.wholevolume.Job`.
``slicer`` is imported inside the functions, so this module imports without Slicer.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional


def finish_run(job: Any, result: Any, load: Callable[[Any], Any], previous_output: Optional[Path] = None) -> Any:
    """What ``load(job)`` returns for an ended run; ``None`` when it was cancelled.

    On success the run's inputs (``job.input_paths()``: files or folders) are deleted, ``job.output_dir`` stays,
    and the folder holding ``previous_output`` (the previous run's ``out/``) is removed. When the run was
    cancelled, failed or its outputs could not be loaded, the whole ``job.folder`` is removed.

    Args:
        result: the run's :class:`LesionSegLib.process.ProcessResult` (``cancelled``, ``ok``, ``message()``).

    Raises:
        RuntimeError: the backend failed (its one error line as the message).
        Exception: whatever ``load`` raises (e.g. ValueError, lesionseg.InputError), after the cleanup.
    """
    if result.cancelled:
        shutil.rmtree(job.folder, ignore_errors=True)
        return None
    try:
        if not result.ok:
            raise RuntimeError(result.message())
        found = load(job)
    except Exception:
        shutil.rmtree(job.folder, ignore_errors=True)
        raise
    for path in job.input_paths():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if previous_output is not None and Path(previous_output).parent != job.folder:
        shutil.rmtree(Path(previous_output).parent, ignore_errors=True)
    return found


def jump_to_lesion(row: Any, volumeNode: Any) -> Any:
    """Centre the slice views on a lesion (an object with ``centroid_ras`` or a dict with that key: world RAS mm),
    shown over ``volumeNode``; returns the world RAS point (:func:`LesionSegLib.labelmaps.jump_slices_to`)."""
    from . import labelmaps

    ras = row["centroid_ras"] if isinstance(row, dict) else row.centroid_ras
    return labelmaps.jump_slices_to(ras, volumeNode)


class BackgroundJobLogic:
    """Mixin for a ``ScriptedLoadableModuleLogic`` that runs one background job at a time.

    ``class <M>Logic(BackgroundJobLogic, ScriptedLoadableModuleLogic)``; its ``process`` calls
    :meth:`_checkIdle` before writing anything and ends with ``return self._runJob(job, waitForCompletion)``.
    The module implements :meth:`_loadJob` (load the outputs into the scene, remember the run's nodes) and names
    its job in :attr:`jobName` for the error messages.

    Attributes:
        job: the running job, ``None`` when idle.
        lastResult: what :meth:`finish` returned for the last run that ended well (``None`` before).
        lastOutputDir: that run's ``out/`` folder (kept until the next run ends well).
        lastSeconds: that run's wall time from start to loaded results (s).
        lastVolumes: that run's input volumes (``{role: node}``), which :meth:`jumpTo` shows rows over.
    """

    jobName = "background run"
    """What a job is called in the messages ("a lesion segmentation is already running")."""

    job: Any = None
    lastResult: Any = None
    lastOutputDir: Optional[Path] = None
    lastSeconds: float = 0.0
    lastVolumes: dict = {}

    def _checkIdle(self) -> None:
        """Raise ``RuntimeError`` while a job is running."""
        if self.job is not None:
            raise RuntimeError(f"a {self.jobName} is already running; cancel it or wait for it first")

    def _runJob(self, job: Any, waitForCompletion: bool) -> Any:
        """Keep the started ``job``; its runner when not waiting, else (keeping the GUI painting) its result."""
        self.job = job
        if not waitForCompletion:
            return job.runner
        import slicer

        return self.finish(job.runner.wait(idle=slicer.app.processEvents))

    def _loadJob(self, job: Any) -> Any:
        """Hook: load the outputs of ``job`` (ended well) into the scene and return what :meth:`finish` returns.
        Raise (ValueError, lesionseg.InputError) without changing the scene when an output is invalid."""
        raise NotImplementedError

    def finish(self, result: Any) -> Any:
        """The ended run's result (None when cancelled); the scene changes only if every output is valid.
        Its output folder stays as ``lastOutputDir`` until the next run ends. RuntimeError: no run, or the
        backend failed (its one error line)."""
        job, self.job = self.job, None
        if job is None:
            raise RuntimeError(f"no {self.jobName} is running")
        found = finish_run(job, result, self._loadJob, self.lastOutputDir)
        if found is not None:
            self.lastSeconds = time.perf_counter() - job.started
            self.lastResult, self.lastOutputDir = found, job.output_dir
            self.lastVolumes = dict(job.volumes)
        return found

    def jumpTo(self, row: Any) -> Any:
        """Centre the slice views on a lesion or finding of the last run (an object or dict with ``centroid_ras``,
        RAS mm in its volume's node coordinates); a row with a ``phase`` is shown over that phase's volume, any
        other over the first input. Returns the world RAS point."""
        phase = row.get("phase") if isinstance(row, dict) else getattr(row, "phase", None)
        volumes = self.lastVolumes
        return jump_to_lesion(row, volumes.get(phase) if phase in volumes else next(iter(volumes.values()), None))

    def cancel(self) -> None:
        """Kill the running job's process tree (``finish`` then returns None); no-op when idle."""
        if self.job is not None:
            self.job.runner.cancel()
