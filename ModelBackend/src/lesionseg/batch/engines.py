"""Where a batch's cases run: ``local`` (this process, or N worker processes) or ``ray`` (actors on a Ray cluster).

Every engine runs :class:`~.worker.CaseRunner` — one per worker, the model built once — and calls
``on_result(row)`` in the calling process as each case ends, in completion order.

- ``local`` with one worker runs in the calling process (torch keeps its threads). With N > 1 it starts N processes
  (``spawn``: no torch state is forked), each with ``torch.set_num_threads(max(1, cores // N))`` threads and, on
  CUDA, its own GPU (worker i sees GPU ``i % count``). Workers ignore SIGINT: on Ctrl-C or SIGTERM the calling
  process stops them with SIGTERM, which each turns into an exception so that its unfinished case folder is
  removed; a worker outlives a killed parent by at most one signal (Linux: parent-death signal). A worker that dies
  (the OOM killer) fails its case with that message and is replaced.
- ``ray`` starts N actors (``--workers``; default: the cluster's CPUs / ``cpus_per_worker``), each with
  ``num_cpus=cpus_per_worker`` and ``num_gpus=gpus_per_worker``, on the cluster at ``address`` (``auto``,
  ``HOST:PORT``, or ``local`` for a private instance on this machine); an already connected driver (``ray.init``
  called by the caller) is used as it is. Inputs and ``OUT`` must be paths every node sees. On Ctrl-C the actors
  are killed; their unfinished case folders stay hidden and are removed by the next run.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
from typing import Callable, Optional, Sequence

from ..errors import InputError
from .cases import BatchCase
from .worker import BatchConfig, CaseRunner, describe_error

log = logging.getLogger(__name__)
ENGINES = ("local", "ray")
OnResult = Callable[[dict], None]


class WorkerStopped(BaseException):
    """Raised in a worker process on SIGTERM, so that its unfinished case folder is removed."""


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_count(device: str) -> int:
    """CUDA GPUs used for ``device`` (0 on the CPU)."""
    from ..registry import resolve_device

    if resolve_device(device) != "cuda":
        return 0
    import torch

    return torch.cuda.device_count()


def run_local(config: BatchConfig, cases: Sequence[BatchCase], workers: int, on_result: OnResult) -> None:
    """Run ``cases`` in this process (``workers == 1``) or in ``workers`` processes."""
    if workers <= 1 or len(cases) <= 1:
        runner = CaseRunner(config)
        for case in cases:
            on_result(runner.run(case))
        return
    _Pool(config, workers).run(cases, on_result)


def _stop(signum, frame) -> None:
    raise WorkerStopped(signum)


def _worker_main(config: BatchConfig, tasks, results, threads: int, gpu: Optional[int], parent: int) -> None:
    """A worker process: build the model, then run cases from ``tasks`` until a None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    _die_with_parent()
    if os.getppid() != parent:
        return
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        try:
            import torch

            torch.set_num_threads(threads)
            runner = CaseRunner(config)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the batch with it
            results.put(("init_error", os.getpid(), describe_error(exc)))
            return
        results.put(("ready", os.getpid(), None))
        while True:
            case = tasks.get()
            if case is None or os.getppid() != parent:
                return
            results.put(("start", os.getpid(), case.name))
            results.put(("result", os.getpid(), runner.run(case)))
    except WorkerStopped:
        return


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Pool:
    """N spawned worker processes fed from one queue (see the module docstring)."""

    def __init__(self, config: BatchConfig, workers: int) -> None:
        import multiprocessing

        self.config, self.workers = config, workers
        self.ctx = multiprocessing.get_context("spawn")
        self.tasks, self.results = self.ctx.Queue(), self.ctx.Queue()
        self.threads = max(1, cores() // workers)
        self.gpus = gpu_count(config.device)
        self.procs: dict[int, object] = {}
        self.current: dict[int, Optional[str]] = {}
        self.started = 0

    def _start(self) -> None:
        gpu = self.started % self.gpus if self.gpus else None
        proc = self.ctx.Process(target=_worker_main, daemon=True, args=(
            self.config, self.tasks, self.results, self.threads, gpu, os.getpid()))
        proc.start()
        self.started += 1
        self.procs[proc.pid] = proc
        self.current[proc.pid] = None

    def run(self, cases: Sequence[BatchCase], on_result: OnResult) -> None:
        for case in cases:
            self.tasks.put(case)
        for _ in range(self.workers):
            self.tasks.put(None)
        try:
            for _ in range(min(self.workers, len(cases))):
                self._start()
            self._collect(len(cases), on_result)
        finally:
            self._shutdown()

    def _collect(self, expected: int, on_result: OnResult) -> None:
        done = 0
        while done < expected:
            try:
                kind, pid, value = self.results.get(timeout=0.5)
            except queue.Empty:
                done += self._reap(on_result)
                continue
            if kind == "init_error":
                raise InputError(value)
            if kind == "start":
                self.current[pid] = value
            elif kind == "result":
                self.current[pid] = None
                on_result(value)
                done += 1

    def _reap(self, on_result: OnResult) -> int:
        """Fail the case of each worker that died unexpectedly and start a replacement; returns cases failed."""
        failed = 0
        for pid, proc in list(self.procs.items()):
            if proc.is_alive() or proc.exitcode == 0:
                continue
            del self.procs[pid]
            case = self.current.pop(pid, None)
            if case is not None:
                how = f"signal {-proc.exitcode}" if proc.exitcode < 0 else f"exit status {proc.exitcode}"
                on_result({"case": case, "status": "failed", "seconds": 0.0, "worker": pid,
                           "error": f"the worker process died ({how}; out of memory?) while running this case"})
                failed += 1
            self.tasks.put(None)  # its end-of-work marker was not taken
            self._start()
        return failed

    def _shutdown(self) -> None:
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the worker removes its unfinished case folder
        for proc in self.procs.values():
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()


class _Actor:
    """The Ray actor: one :class:`CaseRunner`; a build error is kept for :meth:`ready`."""

    def __init__(self, config: BatchConfig, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.runner, self.error = None, None
        try:
            self.runner = CaseRunner(config)
        except Exception as exc:  # noqa: BLE001 - reported by ready()
            self.error = describe_error(exc)

    def ready(self) -> Optional[str]:
        return self.error

    def run(self, case: BatchCase) -> dict:
        return self.runner.run(case)


def _connect(address: str):
    """``ray`` connected to ``address`` (already connected: as it is); returns (ray, whether we connected)."""
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'lesionseg[ray]' (or pip install ray)") from None
    if ray.is_initialized():
        return ray, False
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise InputError(f"no Ray cluster at --ray-address {address} ({exc}); start one with 'ray start --head', "
                         "or pass --ray-address local for a Ray instance on this machine") from None
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    return ray, True


def run_ray(config: BatchConfig, cases: Sequence[BatchCase], workers: Optional[int], on_result: OnResult,
            address: str = "auto", cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0) -> None:
    """Run ``cases`` on ``workers`` Ray actors (see the module docstring)."""
    ray, connected = _connect(address)
    actors: list = []
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_worker, 1e-6)))
        workers = max(1, min(workers, len(cases)))
        remote = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(_Actor)
        actors = [remote.remote(config, int(max(cpus_per_worker, 1))) for _ in range(workers)]
        for error in ray.get([actor.ready.remote() for actor in actors]):
            if error:
                raise InputError(error)
        pending, todo = {}, list(cases)
        for actor in actors:
            if todo:
                case = todo.pop(0)
                pending[actor.run.remote(case)] = (actor, case)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            actor, case = pending.pop(ready[0])
            try:
                row = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the actor or its node died
                row = {"case": case.name, "status": "failed", "seconds": 0.0,
                       "error": f"the Ray worker died while running this case: {str(exc).splitlines()[0]}"}
                actor = remote.remote(config, int(max(cpus_per_worker, 1)))
                actors.append(actor)
            on_result(row)
            if todo:
                case = todo.pop(0)
                pending[actor.run.remote(case)] = (actor, case)
    finally:
        for actor in actors:
            ray.kill(actor)
        if connected:
            ray.shutdown()
