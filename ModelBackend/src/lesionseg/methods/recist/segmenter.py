"""``recist-coseg``: RECIST axes -> lesion crop -> Siamese co-segmentation network -> DenseCRF.

``predict(RecistLine)`` maps the axes onto their axial slice (:func:`lesionseg.geometry.recist_to_index`
raises for a line outside the image or axes on different slices, and warns and projects for an oblique
line or a short axis that does not cross the long one), samples the 128 x 128 crop frame around the long
axis, runs the network on the crop paired with its *partner*, refines the lesion probability with
DenseCRF in the crop (``use_crf``), keeps the connected parts that touch the long axis and maps the result
back onto the slice. The label is 2D, on the RECIST slice only, as in the paper, unless ``propagate`` asks
for neighbouring slices too (see :class:`RecistCoSegSegmenter`).

Partner choice at inference: by default the lesion is paired with itself, which needs
nothing else and measured as well as pairing with another lesion (see ``docs/recist.md``). A caller that
marked another lesion in the same study can pass its axes to :meth:`RecistCoSegSegmenter.set_partner`.

The spec (``@register`` below) names the rest of the method by ``"module:attribute"``, so that this module
imports none of them: training (:mod:`.train`), evaluation (:mod:`.evaluate`) and the ``lesionseg refine``
verb (:mod:`.cli_refine`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from ...errors import InputError, WeightsError
from ...geometry import RecistIndex, recist_to_index
from ...image import Image
from ...modelfolder import ModelFolder
from ...options import Options, option
from ...prompts import Prompt, RecistLine
from ...refiners import DenseCRFRefiner, label_image
from ...registry import register
from ...segmenter import Segmenter
from .initial_mask import CropFrame, crop_frame, grabcut_from_recist, network_input, slice_axes

log = logging.getLogger(__name__)

CRF_SETTINGS = {"iterations": 5, "gaussian_sxy": 0.05, "gaussian_compat": 1.0, "bilateral_sxy": 0.1,
                "bilateral_sintensity": 10.0, "bilateral_compat": 5.0}
"""DenseCRF settings; kernel widths are fractions of the long-axis length (crops are scaled to the lesion).
Chosen on the training patients by agreement with the GrabCut masks (weak labels only), from a grid of
widths 0.05/0.15 (Gaussian) x 0.1/0.4 (bilateral), weights 1/3 x 1/5 and intensity widths 10/25."""


MIN_PROPAGATE_PIXELS = 4
PROPAGATE_STOP = 0.1
"""Propagation stops at a slice whose result overlapping the previous slice's is below this fraction of the
RECIST slice's area (the lesion has ended)."""


def crf_for(long_mm: float) -> DenseCRFRefiner:
    """The DenseCRF step for a lesion whose long axis is ``long_mm`` (see :data:`CRF_SETTINGS`)."""
    c = CRF_SETTINGS
    return DenseCRFRefiner(int(c["iterations"]), c["gaussian_sxy"] * long_mm, c["gaussian_compat"],
                           c["bilateral_sxy"] * long_mm, c["bilateral_sintensity"], c["bilateral_compat"])


def crop_of(image: Image, recist: RecistIndex) -> tuple[CropFrame, np.ndarray]:
    """The crop frame of ``recist`` and the ``(3, S, S)`` float32 crop of slices ``k-1, k, k+1``."""
    frame = crop_frame(recist, image.spacing, image.shape[1:])
    k, last = recist.k, image.shape[0] - 1
    return frame, frame.sample(image.array[[max(k - 1, 0), k, min(k + 1, last)]].astype(np.float32))


def axes_in_crop(frame: CropFrame, recist: RecistIndex) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The axes in crop pixels ``(u, v)``: ``(2, 2)`` long and ``(2, 2)`` short (or None)."""
    return frame.to_crop(recist.long), (frame.to_crop(recist.short) if recist.short is not None else None)


def long_mm(image: Image, recist: RecistIndex) -> float:
    """Length in mm of the long axis of ``recist`` on ``image``'s slice."""
    return float(np.linalg.norm((recist.long[1] - recist.long[0]) * image.spacing[:2]))


def keep_touching_axis(mask: np.ndarray, long_uv: np.ndarray) -> np.ndarray:
    """Connected parts of a ``(S, S)`` bool crop mask that touch the long axis' middle half, holes filled."""
    t = np.linspace(0.25, 0.75, 64)[:, None]
    line = np.round(long_uv[0] + t * (long_uv[1] - long_uv[0])).astype(int)
    inside = np.all((line >= 0) & (line < mask.shape[0]), axis=1)
    components, _ = ndimage.label(mask)
    hit = np.unique(components[line[inside, 1], line[inside, 0]])
    return ndimage.binary_fill_holes(np.isin(components, hit[hit > 0]))


def slice_label(image: Image, k: int, frame: CropFrame, crop_mask: np.ndarray) -> Image:
    """uint8 label on ``image``'s grid holding ``crop_mask`` mapped back onto slice ``k`` (0 elsewhere)."""
    out = np.zeros(image.shape, np.uint8)
    out[k] = frame.paste(crop_mask.astype(np.float32)) >= 0.5
    return label_image(image, out)


def check_preprocessing(model: ModelFolder) -> None:
    """Check the card's ``preprocessing`` against the crop this code samples.

    The crop (``crop_size`` pixels, ``context`` times the long axis, at least ``min_side_mm``) is fixed in
    :mod:`.initial_mask`, not read from the card, so a card trained with another crop cannot be honoured: it is
    a :class:`WeightsError`, as is a card without ``preprocessing`` or one of those three entries. The card's
    ``channels`` and ``plane`` entries are descriptions and are not checked.
    """
    from . import initial_mask

    prep = model.require("preprocessing", "the crop the model was trained on")
    used = {"crop_size": initial_mask.CROP_SIZE, "context": initial_mask.CONTEXT,
            "min_side_mm": initial_mask.MIN_SIDE_MM}
    missing = [f"preprocessing.{k}" for k in used if k not in prep]
    if missing:
        raise model.lacks(missing, "part of the crop the model was trained on")
    for key, value in used.items():
        if not isinstance(prep[key], (int, float)) or float(prep[key]) != float(value):
            raise WeightsError(f"{model.card_path}: the model was trained with preprocessing.{key} = {prep[key]!r}, "
                               f"but this version of recist-coseg uses {value}")


@dataclass(frozen=True)
class RecistOptions(Options):
    """Predict-time settings of recist-coseg (``lesionseg predict recist-coseg``, ``lesionseg evaluate``).

    ``use_crf`` (``--no-crf`` turns it off): refine the network's lesion probability with DenseCRF (the paper's
    last step; :func:`crf_for` the long axis). ``propagate``: 0 is the paper's 2D output on the RECIST slice; N
    also segments up to N slices on each side, each from the RECIST axes measured on the previous slice's result
    (:func:`.initial_mask.slice_axes`), keeping the parts that overlap the previous slice, until the lesion ends
    (:data:`PROPAGATE_STOP`). ``threshold``: lesion-probability threshold without DenseCRF.
    """

    use_crf: bool = option(True, "refine the network's lesion probability with DenseCRF", flag="--crf")
    propagate: int = option(0, "also segment up to N slices on each side, each from the RECIST axes of the "
                               "previous slice's result (0: the RECIST slice only)", metavar="N", unit="slices")
    threshold: float = option(0.5, "lesion-probability threshold without DenseCRF", advanced=True)

    def __post_init__(self) -> None:
        if isinstance(self.propagate, bool) or not isinstance(self.propagate, int) or self.propagate < 0:
            raise InputError(f"{self.flag('propagate')} must be a whole number >= 0, got {self.propagate!r}")
        if isinstance(self.threshold, bool) or not 0.0 < float(self.threshold) < 1.0:
            raise InputError(f"{self.flag('threshold')} must be a number between 0 and 1, got {self.threshold!r}")


@register("recist-coseg", prompt="recist", inputs=("CT",), options=RecistOptions,
          training="lesionseg.methods.recist.train:TRAINING",
          evaluation="lesionseg.methods.recist.evaluate:RecistEvaluation",
          verbs=("lesionseg.methods.recist.cli_refine",), demo_case="chest_ct",
          summary="RECIST line -> attention co-segmentation (trained on GrabCut masks) -> DenseCRF, 2D")
class RecistCoSegSegmenter(Segmenter):
    """Weakly supervised RECIST-slice segmentation (Agarwal et al., arXiv 2001.08590).

    Args:
        model: model folder with the :class:`~.network.RecistCoSeg` card and weights. The card's network
            and ``preprocessing`` are required, and the latter's ``crop_size``, ``context`` and ``min_side_mm``
            must be the crop this code samples (:mod:`.initial_mask`); see :func:`check_preprocessing`. The
            network is loaded here, so a broken folder fails before any image is read.
        device: ``"cpu"`` or ``"cuda"``.
        options: :class:`RecistOptions` (default: DenseCRF on, no propagation, threshold 0.5).
        use_crf, threshold: the same as the options of those names, for the Python API of before (given, they
            replace ``options``' values).
        crf: a fixed DenseCRF step (default: :func:`crf_for` the prompt's long axis).

    The attributes ``use_crf``, ``propagate`` and ``threshold`` read and set the options (checked as
    :class:`RecistOptions` checks them): ``seg.propagate = 5`` is ``seg.set_options(seg.options.replace(
    propagate=5))``.
    """

    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu",
                 options: Optional[RecistOptions] = None, *, use_crf: Optional[bool] = None,
                 crf: Optional[DenseCRFRefiner] = None, threshold: Optional[float] = None) -> None:
        super().__init__(model, device, options)
        if model is None:
            raise WeightsError("recist-coseg needs a trained model folder")
        import torch

        from ...inference import prepare_for_inference
        from . import network  # noqa: F401  (registers the RecistCoSeg network class)

        check_preprocessing(model)
        self.net = prepare_for_inference(model.load_network("weights.pt"), device)
        self._torch = torch
        given = {k: v for k, v in (("use_crf", use_crf), ("threshold", threshold)) if v is not None}
        if given:
            self.set_options(self.options.replace(**given))
        self.crf = crf
        self._partner: Optional[np.ndarray] = None

    @property
    def use_crf(self) -> bool:
        """Whether DenseCRF refines the network's probability (:attr:`RecistOptions.use_crf`)."""
        return self.options.use_crf

    @use_crf.setter
    def use_crf(self, value: bool) -> None:
        self.set_options(self.options.replace(use_crf=bool(value)))

    @property
    def propagate(self) -> int:
        """Slices segmented on each side of the RECIST slice (:attr:`RecistOptions.propagate`)."""
        return self.options.propagate

    @propagate.setter
    def propagate(self, value: int) -> None:
        self.set_options(self.options.replace(propagate=value))

    @property
    def threshold(self) -> float:
        """Probability threshold without DenseCRF (:attr:`RecistOptions.threshold`)."""
        return self.options.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.set_options(self.options.replace(threshold=value))

    def _prepare(self, image: Image, *others: Image) -> None:
        self._partner = None

    def set_partner(self, line: Optional[RecistLine]) -> None:
        """Pair every following prediction with the lesion under ``line`` (None: the lesion itself)."""
        if line is None:
            self._partner = None
            return
        _, crop = crop_of(self.image, recist_to_index(self.image, line))
        self._partner = network_input(crop)

    def probability(self, crop_hu: np.ndarray, partner: Optional[np.ndarray] = None) -> np.ndarray:
        """``(S, S)`` float32 lesion probability of a ``(3, S, S)`` HU crop, paired with ``partner``
        (a ``(2, S, S)`` network input; None pairs the crop with itself)."""
        torch = self._torch
        x = torch.from_numpy(network_input(crop_hu)[None]).to(self.device)
        y = None if partner is None else torch.from_numpy(partner[None]).to(self.device)
        with torch.inference_mode():
            logits, _ = self.net(x, y)
            return torch.softmax(logits, dim=1)[0, 1].float().cpu().numpy()

    def refine_crop(self, crop_hu: np.ndarray, prob: np.ndarray, pixel_mm: float, long_mm: float) -> np.ndarray:
        """DenseCRF of a crop probability: ``(S, S)`` bool (the middle slice of ``crop_hu`` is the image;
        ``pixel_mm`` the crop's pixel size, ``long_mm`` the long-axis length)."""
        crop_image = Image(crop_hu[1], (pixel_mm, pixel_mm, 1.0))
        crf = self.crf if self.crf is not None else crf_for(long_mm)
        return crf.refine(crop_image, crop_image.with_array(prob)).array[0] > 0

    def predict(self, prompt: Prompt = None) -> Image:
        """uint8 0/1 label on the set image's grid; foreground on the RECIST slice (and, with
        ``propagate > 0``, on up to that many neighbouring slices each side)."""
        if not isinstance(prompt, RecistLine):
            kind = "no prompt" if prompt is None else f"a {type(prompt).__name__} prompt"
            raise InputError(f"recist-coseg needs a RecistLine prompt (long axis, optional short axis), got {kind}")
        image = self.image
        recist = recist_to_index(image, prompt)
        out = np.zeros(image.shape, np.uint8)
        out[recist.k] = self._segment_slice(recist)
        for step in (-1, 1):
            previous = recist.k
            for k in range(recist.k + step, recist.k + step * (self.propagate + 1), step):
                if not 0 <= k < image.shape[0] or out[previous].sum() < MIN_PROPAGATE_PIXELS:
                    break
                axes = slice_axes(label_image(image, out), previous)
                if axes is None:
                    break
                components, _ = ndimage.label(self._segment_slice(RecistIndex(k, axes[0], axes[1])))
                keep = np.unique(components[out[previous] > 0])
                found = np.isin(components, keep[keep > 0])
                if found.sum() < PROPAGATE_STOP * out[recist.k].sum():
                    break
                out[k] = found
                previous = k
        return label_image(image, out)

    def _segment_slice(self, recist: RecistIndex) -> np.ndarray:
        """``(J, I)`` uint8 mask of the lesion under ``recist`` on its slice ``recist.k``."""
        image = self.image
        frame, crop = crop_of(image, recist)
        prob = self.probability(crop, self._partner)
        mask = (self.refine_crop(crop, prob, frame.pixel_mm, long_mm(image, recist)) if self.use_crf
                else prob >= self.threshold)
        long_uv, _ = axes_in_crop(frame, recist)
        return (frame.paste(keep_touching_axis(mask, long_uv).astype(np.float32)) >= 0.5).astype(np.uint8)

    def grabcut(self, prompt: RecistLine) -> Image:
        """The GrabCut initial mask of ``prompt`` (the weak label the network learnt from) as a label image."""
        recist = recist_to_index(self.image, prompt)
        frame, crop = crop_of(self.image, recist)
        return slice_label(self.image, recist.k, frame, grabcut_from_recist(crop, *axes_in_crop(frame, recist)))
