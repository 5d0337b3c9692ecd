"""One RECIST click: warm segmenter -> 2D label on the RECIST slice -> measured axes (pure; no ``slicer``).

The panel draws the long axis (and optionally the short axis) as markups lines; :mod:`LesionSegLib.nodes`
turns them into an LPS :class:`lesionseg.RecistLine`. :func:`segment_recist` runs the method through a
:class:`LesionSegLib.session.SegmenterSession` (kept warm between clicks), returns the changed region and
measures the result's own RECIST axes (:func:`lesionseg.metrics.recist_axes`, LPS mm) so the panel can show
them next to the drawn ones.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Hashable, Optional

import numpy as np

from lesionseg import Image, LesionSegError, RecistLine

logger = logging.getLogger(__name__)

PREFERRED_RECIST_METHODS = ("recist-coseg",)


@dataclass(frozen=True)
class RecistResult:
    """What one RECIST click produced.

    Attributes:
        patch: the changed region (:class:`LesionSegLib.results.LabelPatch`).
        prompt: the drawn axes (LPS mm). method: the method used. seconds: wall time.
        warnings: backend warnings (e.g. an oblique line was projected).
        measured_long_lps, measured_short_lps: ``(2, 3)`` LPS mm end points of the result's axes.
        measured_long_mm, measured_short_mm: their lengths.
    """

    patch: object
    prompt: RecistLine
    method: str
    seconds: float
    warnings: tuple[str, ...]
    measured_long_lps: np.ndarray
    measured_short_lps: np.ndarray
    measured_long_mm: float
    measured_short_mm: float

    def summary(self) -> str:
        """One line: drawn and measured axes in mm."""
        return axes_text(self.prompt, self.measured_long_mm, self.measured_short_mm)


def axes_text(prompt: RecistLine, long_mm: float, short_mm: float) -> str:
    """``"drawn 23.0 x 15.0 mm, result 24.1 x 14.2 mm"`` (long x short; a missing short axis shows '-')."""
    drawn_short = f"{prompt.short_length_mm:.1f}" if prompt.short_start is not None else "-"
    return f"drawn {prompt.long_length_mm:.1f} x {drawn_short} mm, result {long_mm:.1f} x {short_mm:.1f} mm"


def _quiet(message: str) -> None:
    """A ``report`` that shows nothing."""


def segment_recist(session, method: str, device: str, image_key: Hashable, load_image: Callable[[], Image],
                   prompt: RecistLine, report: Callable[[str], None] = _quiet) -> RecistResult:
    """Segment the lesion under the RECIST axes; only the changed region is returned.

    Args:
        session: a :class:`LesionSegLib.session.SegmenterSession` (or anything with ``prepare``/``predict``).
        method, device: registered RECIST method; ``"auto"``, ``"cpu"`` or ``"cuda"``.
        image_key, load_image: identify and (lazily) read the image.
        prompt: the drawn axes, LPS mm.
        report: progress messages (a worker task's ``report``; it raises when the task was cancelled).

    Raises:
        LesionSegError: bad input (from the backend) or an empty result.
    """
    from lesionseg.metrics import recist_axes
    from LesionSegLib.results import label_patch

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session.prepare(method, device, image_key, load_image, report)
        report(f"Segmenting with {method}...")
        label = session.predict(prompt)
    patch = label_patch(label.array)
    if patch is None:
        raise LesionSegError(f"{method} found no lesion under the RECIST line; nothing was added")
    axes = recist_axes(label)
    messages = tuple(str(w.message) for w in caught)
    for message in messages:
        logger.warning("%s", message)
    return RecistResult(patch, prompt, method, time.perf_counter() - t0, messages, axes.long_endpoints_lps,
                        axes.short_endpoints_lps, axes.long_mm, axes.short_mm)


def segment_recist_job(report: Callable[[str], None], session, method: Optional[str], device: str,
                       image_key: Hashable, image: Image, prompt: RecistLine) -> RecistResult:
    """:func:`segment_recist` as a worker task (``LesionSegLib.interactive``): the backend's registry is read here
    (it imports torch) when ``method`` is ``None`` (the default method); ``image`` was read on the main thread."""
    from lesionseg import InputError

    if method is None:
        report("Loading the LesionSeg backend...")
        method = default_method(recist_methods())
        if method is None:
            raise InputError("no RECIST method is available (no trained weights found)")
    return segment_recist(session, method, device, image_key, lambda: image, prompt, report)


def recist_methods(method_classes: Optional[list] = None,
                   has_weights: Optional[Callable[[str], bool]] = None) -> list[str]:
    """Registered methods taking a RECIST prompt that can run now (weights found or not needed), sorted; with "Run on"
    a server, the server's (:func:`LesionSegLib.remote.server_methods`)."""
    if method_classes is None:
        from LesionSegLib import remote

        if remote.current().server:
            return remote.server_methods("recist")
        from lesionseg import list_methods

        method_classes = list_methods()
    if has_weights is None:
        from lesionseg.modelfolder import find_model_folder

        def has_weights(name: str) -> bool:
            try:
                return find_model_folder(name) is not None
            except LesionSegError as exc:
                logger.warning("weights of %s are unusable: %s", name, exc)
                return False

    return sorted(cls.name for cls in method_classes
                  if cls.prompt_kind == "recist" and (not cls.needs_weights or has_weights(cls.name)))


def default_method(available: list[str]) -> Optional[str]:
    """The preferred RECIST method when available, else the first available, else ``None``."""
    for name in PREFERRED_RECIST_METHODS:
        if name in available:
            return name
    return available[0] if available else None
