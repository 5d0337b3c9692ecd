"""Progress reporting shared by the CLI and long library calls.

Library functions take an optional callback ``progress(done: int, total: int)``; the CLI turns it into a
tqdm bar (``--progress bar``, the default on a terminal), machine-readable lines for the Slicer
background-process runner (``--progress lines``: ``PROGRESS <fraction 0..1> <message>`` on stderr), or
nothing (``--progress none``).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

ProgressCallback = Callable[[int, int], None]
MODES = ("bar", "lines", "none")
_mode = "bar"


def set_mode(mode: str) -> None:
    """Select how :func:`task` reports: ``bar``, ``lines`` or ``none``."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}")
    _mode = mode


def emit_line(fraction: float, message: str) -> None:
    """Write one ``PROGRESS`` line (only in ``lines`` mode)."""
    if _mode == "lines":
        sys.stderr.write(f"PROGRESS {min(max(fraction, 0.0), 1.0):.4f} {message}\n")
        sys.stderr.flush()


@contextmanager
def task(description: str, total: Optional[int] = None) -> Iterator[ProgressCallback]:
    """Context yielding a ``(done, total)`` callback that reports ``description``'s progress."""
    if _mode == "bar":
        from tqdm import tqdm

        bar = tqdm(total=total, desc=description, unit="step", leave=False, file=sys.stderr,
                   disable=None)

        def update(done: int, new_total: int) -> None:
            if bar.total != new_total:
                bar.total = new_total
            bar.n = done
            bar.refresh()

        try:
            yield update
        finally:
            bar.close()
    else:
        emit_line(0.0, description)

        def update(done: int, new_total: int) -> None:
            emit_line(done / max(new_total, 1), description)

        yield update
