"""The registered ``tsfcn`` method: a box around a lung tumour -> a 2D FCN on each axial slice.

``predict(box)`` segments the axial slices the box spans (``box_to_index``: clipped with a warning when
partly outside, an error when outside or of zero size). Every slice is cropped at the same liberal square
(twice the box's larger in-plane side, at least 100 pixels, see :mod:`.preprocess`), the crops of all
slices go through the network in one batched forward pass (the network is 2D, so this is slice-wise
inference in one call), and the tumour probabilities are resized back and pasted onto the input grid.
Nothing outside the liberal square or the box's slices is labelled: a tumour larger than the liberal
square is clipped to it.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
from scipy import ndimage

from ...errors import InputError, WeightsError
from ...geometry import box_to_index
from ...image import Image
from ...intensity import warn_unless_ct
from ...modelfolder import ModelFolder
from ...options import Options
from ...prompts import Box, Prompt
from ...registry import register
from ...segmenter import Segmenter
from .network import TSFCNNet
from .preprocess import Preprocessing, crop_slices, liberal_box, paste_probability, to_network

log = logging.getLogger(__name__)

MAX_BATCH = 64
"""Most slices per forward pass (bounds memory for very tall boxes)."""
REQUIRED_PREPROCESSING = ("window", "size", "factor", "min_side", "pad_value", "mean", "std", "threshold",
                          "largest_component")
"""Entries of the card's ``preprocessing`` a model cannot run without: all of them, as each changes the labels."""


def binarize(prob: np.ndarray, threshold: float, largest_component: bool = False) -> np.ndarray:
    """``(K, J, I)`` uint8 label ``prob >= threshold``, optionally only its largest 26-connected component."""
    label = prob >= threshold
    if largest_component and label.any():
        components, count = ndimage.label(label, np.ones((3, 3, 3), bool))
        if count > 1:
            label = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    return label.astype(np.uint8)


@register("tsfcn", prompt="box", inputs=("CT",), classes=("background", "lesion"),
          summary="TS-FCN (Ray 2016): 2D FCN per axial slice in a liberal box around a lung tumour (CT)",
          training="lesionseg.methods.tsfcn.train:TRAINING",
          evaluation="lesionseg.methods.tsfcn.evaluate:TSFCNEvaluation")
class TSFCN(Segmenter):
    """TS-FCN box-prompt segmenter.

    Args:
        model: model folder with ``weights.pt`` and a card whose ``networks["weights.pt"]`` (old cards:
            ``network``) is ``{"class": "TSFCNNet", "kwargs": {...}}`` and whose ``preprocessing`` is a
            :class:`Preprocessing` dict. Both are required, the latter with every entry
            (:data:`REQUIRED_PREPROCESSING`): each changes the labels, so a default is never silently used.
            The network and its weights are loaded here, so a broken folder fails before any image is read.
        device: ``"cpu"`` or ``"cuda"``.
        options: predict-time settings (TS-FCN has none: its post-processing is the model's).
        net: an already built network (used instead of the model folder, e.g. in tests).
        preprocessing: pipeline parameters when ``net`` is given.
    """

    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu", options: Optional[Options] = None,
                 *, net: Optional[torch.nn.Module] = None, preprocessing: Optional[Preprocessing] = None) -> None:
        super().__init__(model, device, options)
        if net is None:
            if model is None:
                raise WeightsError("tsfcn needs a model folder (or a network passed as net=)")
            class_name, kwargs = model.network_spec("weights.pt")
            if class_name != "TSFCNNet":
                raise WeightsError(f"{model.card_path} describes network {class_name!r}, not TSFCNNet")
            preprocessing = model.settings(Preprocessing, "preprocessing", "the pre-processing the model was "
                                           "trained with", REQUIRED_PREPROCESSING)
            net = model.load_network("weights.pt", lambda: TSFCNNet(**kwargs))
        # channels-last convolutions measured 1.3-1.5x faster on this project's CPUs (2 threads)
        self._layout = torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
        self.net = net.eval().to(device, memory_format=self._layout)
        self.prep = preprocessing if preprocessing is not None else Preprocessing()

    def _prepare(self, image: Image, *others: Image) -> None:
        """Warn when the image does not look like a CT in HU (the model was trained on HU)."""
        warn_unless_ct(image, "tsfcn")

    def _region(self, prompt: Prompt) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
        """Tumour probabilities ``(n, h, w)`` of the part of the liberal square inside the image, and the
        ``[k, j, i]`` slices of that region."""
        if not isinstance(prompt, Box):
            kind = "no prompt" if prompt is None else f"a {type(prompt).__name__} prompt"
            raise InputError(f"tsfcn needs a Box prompt around the tumour, got {kind}")
        image = self.image
        lb = liberal_box(box_to_index(image, prompt), self.prep)
        x = to_network(crop_slices(image.array, lb, self.prep.pad_value), self.prep)
        probs = []
        with torch.inference_mode():
            for first in range(0, len(x), MAX_BATCH):
                batch = x[first:first + MAX_BATCH].to(self.device).contiguous(memory_format=self._layout)
                probs.append(torch.softmax(self.net(batch).float(), dim=1)[:, 1].cpu())
        log.debug("tsfcn: %d slice(s), liberal square %d px at (%d, %d)", lb.num_slices, lb.side, lb.i0, lb.j0)
        return paste_probability(torch.cat(probs), lb, image.shape)

    def predict_probability(self, prompt: Prompt = None) -> Image:
        """float32 tumour probability on the set image's grid (0 outside the liberal square and the box's
        slices). Raises :class:`InputError` unless ``prompt`` is a :class:`Box` overlapping the image."""
        values, region = self._region(prompt)
        image = self.image
        out = np.zeros(image.shape, np.float32)
        out[region] = values
        return Image(out, image.spacing, image.origin, image.direction)

    def predict(self, prompt: Prompt = None) -> Image:
        """uint8 0/1 label on the set image's grid: probability >= the model's threshold (and the largest
        connected component when the model's card asks for it)."""
        values, region = self._region(prompt)
        image = self.image
        out = np.zeros(image.shape, np.uint8)
        out[region] = binarize(values, self.prep.threshold, self.prep.largest_component)
        return Image(out, image.spacing, image.origin, image.direction)
