"""Weight-free baselines inside a box: ``classical-box`` (GrabCut + DenseCRF) and a threshold.

Both take an axis-aligned :class:`~lesionseg.Box` in LPS mm and return a uint8 0/1 label on the grid of
the input image, with foreground only inside the box (the voxels :func:`~lesionseg.geometry.box_to_index`
selects). They are the yardsticks the learned box methods (TS-FCN) are compared against.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from ..errors import InputError, LesionSegWarning
from ..geometry import IndexBox, box_to_index
from ..image import Image
from ..modelfolder import ModelFolder
from ..options import Options, option
from ..prompts import Box, Prompt
from ..refiners import DenseCRFRefiner, GrabCutRefiner, chain, label_image
from ..registry import register
from ..segmenter import Segmenter

log = logging.getLogger(__name__)

INNER_PROBABILITY, RING_PROBABILITY = 0.6, 0.3
"""Initial probabilities: inside the box's inscribed ellipsoid (probable foreground for GrabCut) and in
the rest of the box (probable background); outside the box is 0 (sure background)."""


def _require_box(name: str, prompt: Prompt) -> Box:
    if not isinstance(prompt, Box):
        kind = "no prompt" if prompt is None else f"a {type(prompt).__name__} prompt"
        raise InputError(f"{name} needs a Box prompt around the lesion, got {kind}")
    return prompt


def box_prior(shape: tuple[int, int, int], box: IndexBox) -> np.ndarray:
    """``(K, J, I)`` float32 initial probability for a box given in voxels (inclusive ``lo..hi``, i, j, k).

    :data:`INNER_PROBABILITY` inside the ellipsoid inscribed in the box (in voxel units, so it follows
    anisotropic spacing and shrinks towards the box's first and last slices), :data:`RING_PROBABILITY`
    in the rest of the box, 0 outside.
    """
    prior = np.zeros(shape, np.float32)
    centre = (box.lo + box.hi) / 2.0
    radius = (box.hi - box.lo + 1) / 2.0
    k, j, i = np.ogrid[box.slices]
    inside = ((i - centre[0]) / radius[0]) ** 2 + ((j - centre[1]) / radius[1]) ** 2 \
        + ((k - centre[2]) / radius[2]) ** 2 <= 1.0
    prior[box.slices] = np.where(inside, INNER_PROBABILITY, RING_PROBABILITY)
    return prior


def threshold_in_box(image: Image, box: Box, hu: float = -400.0) -> Image:
    """Largest 6-connected component of voxels above ``hu`` inside ``box`` (a simple CT baseline).

    Args:
        image: CT image (HU) or any scalar image (``hu`` is then in its units).
        box: LPS mm box around the lesion.
        hu: threshold; voxels strictly above it are candidates.

    Returns:
        uint8 0/1 label on ``image``'s grid; empty (with a :class:`LesionSegWarning`) when no voxel in
        the box is above ``hu``.
    """
    index_box = box_to_index(image, box)
    components, count = ndimage.label(image.array[index_box.slices] > hu)
    out = np.zeros(image.shape, np.uint8)
    if count == 0:
        warnings.warn(f"no voxel inside the box is above {hu}", LesionSegWarning, stacklevel=2)
        return label_image(image, out)
    largest = 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    out[index_box.slices] = components == largest
    return label_image(image, out)


@dataclass(frozen=True)
class ClassicalBoxOptions(Options):
    """Predict-time settings of ``classical-box`` (flags ``--iterations``, ``--margin-mm``, ``--window``,
    ``--no-crf``)."""

    iterations: int = option(5, "GrabCut iterations per slice", advanced=True)
    margin_mm: float = option(10.0, "in-plane margin around the box from which GrabCut learns the background",
                              unit="mm", advanced=True)
    window: Optional[tuple[float, float]] = option(None, "intensity window LO HI (default: 1st-99th percentile of "
                                                         "the cropped region)", metavar=("LO", "HI"), advanced=True)
    crf: bool = option(True, "refine GrabCut's label with DenseCRF")

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or self.iterations < 1:
            raise InputError(f"{self.flag('iterations')} must be >= 1, got {self.iterations}")
        if not self.margin_mm >= 0:
            raise InputError(f"{self.flag('margin_mm')} must be >= 0, got {self.margin_mm}")
        if self.window is not None and not self.window[1] > self.window[0]:
            raise InputError(f"{self.flag('window')} needs LO < HI, got {self.window}")


@register("classical-box", prompt="box", needs_weights=False, classes=("background", "lesion"),
          summary="Classical baseline: GrabCut + DenseCRF inside the box",
          evaluation="lesionseg.methods.tsfcn.evaluate:ClassicalBoxEvaluation")
class ClassicalBox(Segmenter):
    """GrabCut initialised from the box, then DenseCRF, slice by slice on axial slices.

    ``predict(box)``: crop the box plus ``margin_mm`` in-plane (background for GrabCut to learn from) and
    one slice above and below (context for GrabCut's k-1/k/k+1 channels; a one-slice box needs it),
    start from :func:`box_prior`, run :class:`~lesionseg.refiners.GrabCutRefiner` and then
    :class:`~lesionseg.refiners.DenseCRFRefiner` on a soft probability from GrabCut's label, keep only
    voxels inside the box and paste the result into an all-zero label on the input grid.

    Args:
        model: unused (no weights). device: unused (CPU libraries).
        options: :class:`ClassicalBoxOptions` (GrabCut iterations, margin, window, whether to run DenseCRF).
        iterations, margin_mm, window, use_crf: the same settings as keywords (they override ``options``).
        crf: the DenseCRF step (default :class:`~lesionseg.refiners.DenseCRFRefiner` with its defaults).
    """

    Options = ClassicalBoxOptions

    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu",
                 options: Optional[ClassicalBoxOptions] = None, *, iterations: Optional[int] = None,
                 margin_mm: Optional[float] = None, window: Optional[tuple[float, float]] = None,
                 crf: Optional[DenseCRFRefiner] = None, use_crf: Optional[bool] = None) -> None:
        super().__init__(model, device, options)
        given = {"iterations": iterations, "margin_mm": margin_mm, "window": window, "crf": use_crf}
        given = {k: v for k, v in given.items() if v is not None}
        if given:
            self.options = self.options.replace(**{k: (tuple(v) if k == "window" else v) for k, v in given.items()})
        self._crf = crf
        self._apply_options()

    @property
    def margin_mm(self) -> float:
        return float(self.options.margin_mm)

    def _apply_options(self) -> None:
        """Build the GrabCut (+ DenseCRF) chain of the current options."""
        o = self.options
        steps = [GrabCutRefiner(o.iterations, window=o.window, margin_mm=o.margin_mm)]
        if o.crf:
            steps.append(self._crf if self._crf is not None else DenseCRFRefiner(window=o.window,
                                                                                  margin_mm=o.margin_mm))
        self.refiner = chain(*steps)

    def predict(self, prompt: Prompt = None) -> Image:
        """uint8 0/1 label on the set image's grid; :class:`InputError` unless ``prompt`` is a Box."""
        box = _require_box(self.name, prompt)
        image = self.image
        index_box = box_to_index(image, box)
        pad = np.ceil(self.margin_mm / image.spacing[:2]).astype(int)
        # one slice of context above and below: GrabCut's colour channels are slices k-1, k, k+1
        lo = np.array([index_box.lo[0] - pad[0], index_box.lo[1] - pad[1], index_box.lo[2] - 1])
        hi = np.array([index_box.hi[0] + pad[0], index_box.hi[1] + pad[1], index_box.hi[2] + 1])
        lo, hi = np.maximum(lo, 0), np.minimum(hi, image.size_ijk - 1)
        sub = image.crop(lo, hi)
        inner = IndexBox(index_box.lo - lo, index_box.hi - lo)
        prior = box_prior(sub.shape, inner)
        log.debug("classical-box: crop %s..%s, box %s..%s", lo, hi, index_box.lo, index_box.hi)
        refined = np.asarray(self.refiner.refine(sub, sub.with_array(prior)).array)
        inside = np.zeros(sub.shape, bool)
        inside[inner.slices] = True
        out = np.zeros(image.shape, np.uint8)
        out[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = refined & inside
        return label_image(image, out)
