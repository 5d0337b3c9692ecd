"""One device queue: every ``set_image``, ``predict`` and refinement runs on a single worker thread, in the order
asked, so that predictions never run side by side into an out-of-memory on one GPU (or fight over CPU cores).

The request handlers await their job (:meth:`DeviceQueue.run`) without holding a thread; a request whose client
went away still finishes its job (a forward pass cannot be interrupted) and its answer is dropped. No fastapi here.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from .errors import Busy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobResult:
    """What a job returned, with ``wait_s`` (time queued), ``run_s`` and the warnings it raised (messages)."""

    value: Any
    wait_s: float
    run_s: float
    warnings: tuple[str, ...]


class DeviceQueue:
    """A single worker thread and a bound on the jobs waiting for it.

    Args:
        max_waiting: jobs queued (not counting the running one) beyond which :meth:`run` raises :class:`Busy`.
    """

    def __init__(self, max_waiting: int = 64) -> None:
        self.max_waiting = int(max_waiting)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lesionseg-device")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished (the running one included)."""
        with self._lock:
            return self._pending

    def _call(self, function: Callable[..., Any], args: tuple, queued: float) -> JobResult:
        started = time.perf_counter()
        try:
            # Only this thread runs jobs, so recording warnings here does not race with another job.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = function(*args)
            messages = tuple(dict.fromkeys(str(w.message) for w in caught))
            return JobResult(value, started - queued, time.perf_counter() - started, messages)
        finally:
            with self._lock:
                self._pending -= 1

    async def run(self, function: Callable[..., Any], *args: Any) -> JobResult:
        """Run ``function(*args)`` on the worker thread once the jobs before it are done.

        Raises:
            Busy: too many jobs are waiting already. Whatever ``function`` raises.
        """
        with self._lock:
            if self._pending > self.max_waiting:
                raise Busy(f"the server is busy ({self._pending} jobs queued, --max-queue {self.max_waiting}); "
                           "try again in a moment")
            self._pending += 1
        try:
            future = self._executor.submit(self._call, function, args, time.perf_counter())
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        """Stop taking jobs; the running one finishes."""
        self._executor.shutdown(wait=False, cancel_futures=True)
