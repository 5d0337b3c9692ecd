"""Keeps the built segmenters and their ``set_image`` alive between clicks (pure Python; no ``slicer``).

Interactive panels call :func:`segment_box` on every click (on the worker thread of
:mod:`LesionSegLib.interactive`). The expensive steps -- building the method (importing torch, loading weights)
and ``set_image`` (pre-computing features) -- run only when needed: the built model comes from a
:class:`~LesionSegLib.interactive.ModelCache` (one per ``(method, weights, device)`` for the Slicer session,
shared by every panel), and ``set_image`` runs only when the model was last primed with another image. The image
is identified by a caller-supplied key (e.g. node ID + voxel MTime + world geometry) and read only when that key
changes. Tests inject :class:`Predictor`-typed builders, so they run with fakes.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, Protocol

import numpy as np

from lesionseg import Box, Image, InputError, LesionSegError, Prompt

from .interactive import KNOWN_BOX_METHODS, MODELS, PREFERRED_BOX_METHODS, CachedModel, ModelCache
from .results import LabelPatch, keep_slice, label_patch, slice_index

logger = logging.getLogger(__name__)


Report = Callable[[str], None]
"""``report(message)``: progress of a worker task (:meth:`LesionSegLib.interactive.Task.report`)."""


def _quiet(message: str) -> None:
    """A ``report`` that shows nothing."""


class Predictor(Protocol):
    """What a session needs from a method (the backend's ``Segmenter`` protocol)."""

    def set_image(self, image: Image, *others: Image) -> None: ...

    def predict(self, prompt: Prompt = None) -> Image: ...


Builder = Callable[[str, str], Predictor]
"""``builder(method_name, device) -> Predictor``."""


@dataclass
class SegmenterSession:
    """The segmenter a panel uses now, and the image it read last.

    Args:
        builder: builds a method for a device (tests inject fakes; the session then keeps its own cache).
            ``None``: the session's shared :data:`LesionSegLib.interactive.MODELS` (``lesionseg.build``).
        weights: the model folder passed to the builder (``None``: the installed one).
    """

    builder: Optional[Builder] = None
    weights: Optional[str] = None
    cache: ModelCache = field(default=None, repr=False)  # type: ignore[assignment]
    _model: Optional[CachedModel] = field(default=None, init=False, repr=False)
    _model_key: Optional[tuple[str, str]] = field(default=None, init=False)
    _image_key: Optional[Hashable] = field(default=None, init=False)
    _image: Optional[Image] = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.cache is None:
            builder = self.builder
            self.cache = MODELS if builder is None else ModelCache(lambda method, weights, device: builder(method,
                                                                                                          device))

    def cached_image(self, image_key: Hashable) -> Optional[Image]:
        """The image read last when its key is ``image_key`` (else ``None``: read it again)."""
        return self._image if self._image is not None and self._image_key == image_key else None

    def prepare(self, method: str, device: str, image_key: Hashable, load_image: Callable[[], Image],
                report: Report = _quiet) -> Image:
        """Build (if needed), read the image (if its key changed) and ``set_image`` (if the model holds another
        image); returns the image the segmenter holds."""
        if not self.cache.has(method, self.weights, device):
            report(f"Loading {method} (first use in this session)...")
        self._model, self._model_key = None, None
        cached = self.cache.get(method, self.weights, device)
        if self._image_key != image_key or self._image is None:
            self._image_key, self._image = None, None
            report("Reading the image...")
            image = load_image()
            self._image_key, self._image = image_key, image
        if cached.image_key != image_key:
            cached.image_key = None
            report(f"Preparing the image {' x '.join(map(str, self._image.shape[::-1]))} for {method}...")
            t0 = time.perf_counter()
            cached.model.set_image(self._image)
            cached.image_key = image_key
            logger.info("set_image %s in %.2f s", self._image.shape, time.perf_counter() - t0)
        self._model, self._model_key = cached, (method, device)
        return self._image

    def predict(self, prompt: Prompt) -> Image:
        """Run the warm segmenter; the label must come back on the image's grid."""
        if self._model is None or self._image is None:
            raise InputError("call prepare() before predict()")
        label = self._model.model.predict(prompt)
        if not isinstance(label, Image) or not label.same_grid(self._image):
            raise LesionSegError(f"{self._model_key[0]} returned a label that is not on the image grid")
        return label

    def clear(self) -> None:
        """Forget the current segmenter and the image read (the shared models stay built; a private cache, made
        for an injected builder, is emptied)."""
        self._model, self._model_key, self._image_key, self._image = None, None, None, None
        if self.cache is not MODELS:
            self.cache.clear()

    @property
    def warm(self) -> bool:
        """True when a segmenter is built and primed with an image."""
        return self._model is not None and self._image is not None


@dataclass(frozen=True)
class BoxResult:
    """What one box click produced: the changed region, the prompt actually used, timing, warnings."""

    patch: LabelPatch
    prompt: Box
    method: str
    seconds: float
    warnings: tuple[str, ...] = ()


def segment_box(session: SegmenterSession, method: str, device: str, image_key: Hashable,
                load_image: Callable[[], Image], box: Box,
                slice_point_lps: Optional[np.ndarray] = None, report: Report = _quiet) -> BoxResult:
    """Segment the lesion inside an LPS ``box``; only the changed region is returned.

    Args:
        session: keeps the segmenter warm between calls.
        method, device: registered method name; ``"auto"``, ``"cpu"`` or ``"cuda"``.
        image_key, load_image: identify and (lazily) read the image; see :class:`SegmenterSession`.
        box: the prompt, LPS mm.
        slice_point_lps: when given, only the slice of the image nearest to this LPS point is segmented
            (the box is flattened onto it and the label is cleared elsewhere).
        report: progress messages (a worker task's ``report``; it raises when the task was cancelled).

    Raises:
        LesionSegError: bad input (from the backend) or no lesion found in the box.
    """
    from lesionseg.geometry import box_to_index, index_box_to_world

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = session.prepare(method, device, image_key, load_image, report)
        k = None
        if slice_point_lps is not None:
            k = slice_index(image, slice_point_lps)
            index_box = box_to_index(image, box)
            box = index_box_to_world(image, (index_box.lo[0], index_box.lo[1], k),
                                     (index_box.hi[0], index_box.hi[1], k))
        report(f"Segmenting with {method}...")
        label = session.predict(box)
        if k is not None:
            label = keep_slice(label, k)
    patch = label_patch(label.array)
    if patch is None:
        raise LesionSegError(f"{method} found no lesion inside the box; nothing was added")
    messages = tuple(str(w.message) for w in caught)
    for message in messages:
        logger.warning("%s", message)
    return BoxResult(patch, box, method, time.perf_counter() - t0, messages)


def segment_box_job(report: Report, session: SegmenterSession, method: Optional[str], device: str,
                    image_key: Hashable, image: Image, box: Box,
                    slice_point_lps: Optional[np.ndarray] = None) -> BoxResult:
    """:func:`segment_box` as a worker task (:mod:`LesionSegLib.interactive`): the backend's registry is read here
    (it imports torch) when ``method`` is ``None`` (the default method); ``image`` was read on the main thread."""
    if method is None:
        report("Loading the LesionSeg backend...")
        method = default_method(box_methods())
        if method is None:
            raise InputError("no box-prompt method is available (no trained weights found)")
    return segment_box(session, method, device, image_key, lambda: image, box, slice_point_lps, report)


def box_methods(method_classes: Optional[list] = None,
                has_weights: Optional[Callable[[str], bool]] = None) -> list[str]:
    """Registered methods taking a box prompt that can run now (weights found or not needed), sorted; with "Run on" a
    server, the server's (:func:`LesionSegLib.remote.server_methods`).

    Reading the registry imports every method (and torch): call it on the worker thread, not when a panel is
    shown (:func:`LesionSegLib.interactive.box_method_choices` is for that)."""
    registry = method_classes is None
    if registry:
        from . import remote

        if remote.current().server:
            return remote.server_methods("box")
        from lesionseg import list_methods

        method_classes = list_methods()
    if has_weights is None:
        has_weights = _weights_found
    names = [cls.name for cls in method_classes
             if cls.prompt_kind == "box" and (not cls.needs_weights or has_weights(cls.name))]
    if registry:
        KNOWN_BOX_METHODS[:] = [names]
    return names


def _weights_found(name: str) -> bool:
    from lesionseg.modelfolder import find_model_folder

    try:
        return find_model_folder(name) is not None
    except LesionSegError as exc:
        logger.warning("weights of %s are unusable: %s", name, exc)
        return False


def default_method(available: list[str], preferred: tuple[str, ...] = PREFERRED_BOX_METHODS) -> Optional[str]:
    """The first of ``preferred`` that is available, else the first available, else ``None``."""
    for name in preferred:
        if name in available:
            return name
    return available[0] if available else None
