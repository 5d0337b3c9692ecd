"""Keeps one built segmenter and its ``set_image`` alive between clicks (pure Python; no ``slicer``).

Interactive panels call :func:`segment_box` on every click. The expensive steps -- building the method
(loading weights) and ``set_image`` (pre-computing features) -- run only when the method, the device or the
image changes; the image is identified by a caller-supplied key (e.g. node ID + voxel MTime + world
geometry), and read only when that key changes. Segmenters are injected through :class:`Predictor`-typed
builders, so tests run with fakes.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, Protocol

import numpy as np

from lesionseg import Box, Image, InputError, LesionSegError, Prompt

from .results import LabelPatch, keep_slice, label_patch, slice_index

logger = logging.getLogger(__name__)

PREFERRED_BOX_METHODS = ("tsfcn", "classical-box")
"""Default order for box prompts: the trained TS-FCN when its weights exist, else the weight-free baseline."""


class Predictor(Protocol):
    """What a session needs from a method (the backend's ``Segmenter`` protocol)."""

    def set_image(self, image: Image, *others: Image) -> None: ...

    def predict(self, prompt: Prompt = None) -> Image: ...


Builder = Callable[[str, str], Predictor]
"""``builder(method_name, device) -> Predictor``."""


def _build_with_backend(method: str, device: str) -> Predictor:
    import lesionseg

    return lesionseg.build(method, device=device)


@dataclass
class SegmenterSession:
    """One warm segmenter: rebuilt when ``(method, device)`` changes, re-primed when the image key changes."""

    builder: Builder = _build_with_backend
    _segmenter: Optional[Predictor] = field(default=None, init=False, repr=False)
    _segmenter_key: Optional[tuple[str, str]] = field(default=None, init=False)
    _image_key: Optional[Hashable] = field(default=None, init=False)
    _image: Optional[Image] = field(default=None, init=False, repr=False)

    def prepare(self, method: str, device: str, image_key: Hashable, load_image: Callable[[], Image]) -> Image:
        """Build (if needed) and ``set_image`` (if needed); returns the image the segmenter holds."""
        if self._segmenter_key != (method, device):
            self.clear()
            t0 = time.perf_counter()
            self._segmenter = self.builder(method, device)
            self._segmenter_key = (method, device)
            logger.info("built %s on %s in %.2f s", method, device, time.perf_counter() - t0)
        if self._image_key != image_key or self._image is None:
            self._image_key, self._image = None, None
            image = load_image()
            t0 = time.perf_counter()
            self._segmenter.set_image(image)
            self._image_key, self._image = image_key, image
            logger.info("set_image %s in %.2f s", image.shape, time.perf_counter() - t0)
        return self._image

    def predict(self, prompt: Prompt) -> Image:
        """Run the warm segmenter; the label must come back on the image's grid."""
        if self._segmenter is None or self._image is None:
            raise InputError("call prepare() before predict()")
        label = self._segmenter.predict(prompt)
        if not isinstance(label, Image) or not label.same_grid(self._image):
            raise LesionSegError(f"{self._segmenter_key[0]} returned a label that is not on the image grid")
        return label

    def clear(self) -> None:
        """Drop the segmenter and the cached image (frees the model)."""
        self._segmenter, self._segmenter_key, self._image_key, self._image = None, None, None, None

    @property
    def warm(self) -> bool:
        """True when a segmenter is built and primed with an image."""
        return self._segmenter is not None and self._image is not None


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
                slice_point_lps: Optional[np.ndarray] = None) -> BoxResult:
    """Segment the lesion inside an LPS ``box``; only the changed region is returned.

    Args:
        session: keeps the segmenter warm between calls.
        method, device: registered method name; ``"auto"``, ``"cpu"`` or ``"cuda"``.
        image_key, load_image: identify and (lazily) read the image; see :class:`SegmenterSession`.
        box: the prompt, LPS mm.
        slice_point_lps: when given, only the slice of the image nearest to this LPS point is segmented
            (the box is flattened onto it and the label is cleared elsewhere).

    Raises:
        LesionSegError: bad input (from the backend) or no lesion found in the box.
    """
    from lesionseg.geometry import box_to_index, index_box_to_world

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = session.prepare(method, device, image_key, load_image)
        k = None
        if slice_point_lps is not None:
            k = slice_index(image, slice_point_lps)
            index_box = box_to_index(image, box)
            box = index_box_to_world(image, (index_box.lo[0], index_box.lo[1], k),
                                     (index_box.hi[0], index_box.hi[1], k))
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


def box_methods(method_classes: Optional[list] = None,
                has_weights: Optional[Callable[[str], bool]] = None) -> list[str]:
    """Registered methods taking a box prompt that can run now (weights found or not needed), sorted."""
    if method_classes is None:
        from lesionseg import list_methods

        method_classes = list_methods()
    if has_weights is None:
        has_weights = _weights_found
    return [cls.name for cls in method_classes
            if cls.prompt_kind == "box" and (not cls.needs_weights or has_weights(cls.name))]


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
