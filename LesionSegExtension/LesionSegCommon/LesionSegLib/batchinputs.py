"""The batch path of the panels' console API: ``Logic.process`` with lists of inputs (pure Python; no ``slicer``).

Every panel's ``process`` is decorated with :func:`each_input`, naming its input parameters. Given a list (or
tuple) for any of them, ``process`` runs once per element, one after the other, with the other arguments as given
(an argument given once applies to every run; lists must have one element per run), and returns the list of the
single runs' results::

    logic = slicer.util.getModuleLogic("LesionSegScreening")
    reports = logic.process(venousNode=[ct1, ct2, ct3])          # three screenings, three report dicts

A run that fails does not stop the others: the results (the exception object in place of a failed run's result)
are kept in ``logic.lastBatchResults`` and a :class:`BatchInputError` naming every failed input is raised at the
end. A list needs ``waitForCompletion=True`` (runs are sequential). For whole cohorts on disk, the backend's
``lesionseg batch`` command is faster (the model is loaded once per worker, runs resume, DICOM SEG output).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence


class BatchInputError(RuntimeError):
    """Some runs of a list ``process`` failed; ``results`` holds every run's result or exception, in order."""

    def __init__(self, results: list, failed: Sequence[tuple[int, BaseException]]) -> None:
        lines = "; ".join(f"input {i + 1}: {exc}" for i, exc in failed)
        super().__init__(f"{len(failed)} of {len(results)} inputs failed: {lines}")
        self.results = results
        self.failed = list(failed)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def each_input(*names: str) -> Callable:
    """Decorator for ``Logic.process(self, ...)``: the parameters ``names`` may be given as lists (see the
    module docstring). The decorated function keeps its signature (``inspect.signature``) and records
    ``names`` as ``batch_parameters``."""

    def decorate(process: Callable) -> Callable:
        signature = inspect.signature(process)
        unknown = [n for n in names if n not in signature.parameters]
        if unknown:
            raise TypeError(f"{process.__qualname__} has no parameter {', '.join(unknown)}")

        @functools.wraps(process)
        def wrapper(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            lists = {n: list(bound.arguments[n]) for n in names if _is_list(bound.arguments.get(n))}
            if not lists:
                return process(self, *args, **kwargs)
            lengths = {n: len(v) for n, v in lists.items()}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"lists of inputs must have one element per run; got lengths {lengths}")
            if not bound.arguments.get("waitForCompletion", True):
                raise ValueError("a list of inputs runs one input after the other: use waitForCompletion=True")
            count = next(iter(lengths.values()))
            results: list = []
            failed: list[tuple[int, BaseException]] = []
            for index in range(count):
                call = {k: v for k, v in bound.arguments.items() if k != "self"}
                call.update({n: values[index] for n, values in lists.items()})
                try:
                    results.append(process(self, **call))
                except Exception as exc:  # noqa: BLE001 - the other inputs still run; all failures are raised at the end
                    results.append(exc)
                    failed.append((index, exc))
            self.lastBatchResults = results
            if failed:
                raise BatchInputError(results, failed)
            return results

        wrapper.batch_parameters = tuple(names)
        return wrapper

    return decorate
