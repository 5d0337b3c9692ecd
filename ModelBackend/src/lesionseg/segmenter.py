"""The one protocol every method follows (after segment-anything's ``SamPredictor``).

``set_image`` does the expensive work once and caches it; ``predict(prompt)`` is cheap and repeatable
and returns a label image on the grid of the first image given to ``set_image``. Automatic methods
accept the empty prompt (``None``). The CLI, the Slicer logic, evaluation and tests use nothing else.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar, Optional

from .errors import InputError
from .image import Image, require_image
from .modelfolder import ModelFolder
from .options import Options
from .prompts import Prompt

if TYPE_CHECKING:
    from .registry import MethodSpec


class Segmenter(abc.ABC):
    """Base class of all registered methods.

    Class attributes (filled by :func:`lesionseg.registry.register`): ``name``, ``prompt_kind``
    (``"box"``, ``"recist"``, ``"none"``), ``inputs`` (names of the images ``set_image`` takes, in order),
    ``optional_inputs`` (how many trailing ``inputs`` may be left out, e.g. the CT of a PET/CT method), ``spec``
    (the whole :class:`~lesionseg.registry.MethodSpec`), ``Options`` (its predict-time settings).

    Args:
        model: the model folder, or ``None`` for methods that need no weights.
        device: ``"cpu"`` or ``"cuda"`` (already resolved from ``"auto"``).
        options: predict-time settings (an instance of the method's ``Options``; default: its defaults).
    """

    name: ClassVar[str] = ""
    prompt_kind: ClassVar[str] = "none"
    inputs: ClassVar[tuple[str, ...]] = ("image",)
    optional_inputs: ClassVar[int] = 0
    needs_weights: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    spec: ClassVar["MethodSpec"]

    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu",
                 options: Optional[Options] = None) -> None:
        self.model = model
        self.device = device
        self._image: Optional[Image] = None
        self.options = self._check_options(options)

    def _check_options(self, options: Optional[Options]) -> Options:
        if options is None:
            return self.Options()
        if not isinstance(options, self.Options):
            raise InputError(f"{self.name} takes {self.Options.__name__} options, got {type(options).__name__}")
        return options

    def set_options(self, options: Options) -> None:
        """Change the predict-time settings (no need to call :meth:`set_image` again unless a method's
        :meth:`_apply_options` says so). When they cannot be applied (e.g. an ROI outside the image), the
        error is raised and the previous settings stay."""
        previous = self.options
        self.options = self._check_options(options)
        try:
            self._apply_options()
        except BaseException:
            self.options = previous
            raise

    def _apply_options(self) -> None:
        """Hook for subclasses: react to new :attr:`options` (default: nothing; ``predict`` reads them)."""

    @property
    def image(self) -> Image:
        """The image given to :meth:`set_image` (raises when none was set)."""
        if self._image is None:
            raise InputError(f"{self.name}: call set_image() before predict()")
        return self._image

    def set_image(self, image: Image, *others: Image) -> None:
        """Cache ``image`` (and any further inputs, e.g. CT after PET) and do the expensive work.

        The last :attr:`optional_inputs` of :attr:`inputs` may be left out; ``_prepare`` then gets fewer
        ``others``.

        Raises:
            InputError: another number of images than :attr:`inputs` allows, a value that is not a
                :class:`~lesionseg.Image` (e.g. a path or a bare array), or NaN / infinite voxels.
        """
        total = len(self.inputs)
        needed = total - self.optional_inputs
        if not needed <= len(others) + 1 <= total:
            names = [*self.inputs[:needed], *(f"{name} (optional)" for name in self.inputs[needed:])]
            raise InputError(f"{self.name} takes {total} image(s): {', '.join(names)}; got {len(others) + 1}")
        for name, value in zip(self.inputs, (image, *others)):
            what = "set_image" if len(self.inputs) == 1 else f"set_image ({name})"
            require_image(value, what)
        image.check_finite()
        for other in others:
            other.check_finite()
        self._image = image
        self._prepare(image, *others)

    def _prepare(self, image: Image, *others: Image) -> None:
        """Hook for subclasses: pre-compute what every prompt needs (default: nothing)."""

    @abc.abstractmethod
    def predict(self, prompt: Prompt = None) -> Image:
        """Label image (uint8) on the grid of the image given to :meth:`set_image`."""
