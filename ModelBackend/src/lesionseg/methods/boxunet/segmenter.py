"""The registered ``box-unet`` method: a box around any lesion in CT -> a 2.5D U-Net on each axial slice.

TS-FCN (``tsfcn``) is the paper's lung method and learnt from lung nodules only; on soft-tissue sarcomas it
scores 0.18 3D Dice. ``box-unet`` is the Box panel's lesion-agnostic model: trained on lung nodules, soft-tissue
sarcomas and abdominal lesions together (``lesionseg train box-unet``, :mod:`.train`), it sees each slice of the
box as a scale-free 2.5D crop in two HU windows with the box drawn in as an input channel (:mod:`.preprocess`).
All slices of a box go through the network in one batched forward pass; the probabilities are pasted back,
thresholded at the model's threshold and, as the card says, only the largest 26-connected component is kept
(one box, one lesion).
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from ...errors import InputError, WeightsError
from ...geometry import IndexBox, box_to_index
from ...image import Image
from ...intensity import warn_unless_ct
from ...modelfolder import ModelFolder
from ...nets.unet import UNet
from ...options import Options
from ...prompts import Box, Prompt
from ...registry import register
from ...segmenter import Segmenter
from ..tsfcn.preprocess import paste_probability
from ..tsfcn.segmenter import binarize
from .preprocess import CHANNELS, BoxUNetPreprocessing, network_input

log = logging.getLogger(__name__)

MAX_BATCH = 64
"""Most slices per forward pass (bounds memory for very tall boxes)."""
NETWORK = {"spatial_dims": 2, "in_channels": len(CHANNELS), "out_channels": 1, "channels": [16, 32, 64, 128],
           "norm": "batch", "upsample": "transpose"}
"""The default network: a 4-level 2D U-Net, one lesion logit per pixel."""
REQUIRED_PREPROCESSING = ("wide", "soft", "size", "factor", "min_side", "threshold", "largest_component")


def lesion_probability(net: torch.nn.Module, x: torch.Tensor, device: str = "cpu",
                       layout=torch.contiguous_format) -> torch.Tensor:
    """Sigmoid of the network's logits for ``(n, C, s, s)`` inputs, in batches of :data:`MAX_BATCH`."""
    out = []
    with torch.inference_mode():
        for first in range(0, len(x), MAX_BATCH):
            batch = x[first:first + MAX_BATCH].to(device).contiguous(memory_format=layout)
            out.append(torch.sigmoid(net(batch).float())[:, 0].cpu())
    return torch.cat(out) if out else torch.zeros((0,) + tuple(x.shape[2:]))


def _turn(x: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n``-th (0..7) of the 8 mirror/rotations of ``(..., s, s)`` inputs."""
    x = torch.rot90(x, n % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if n >= 4 else x


def _undo(y: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`_turn` on ``(..., s, s)`` outputs."""
    y = torch.flip(y, dims=(-1,)) if n >= 4 else y
    return torch.rot90(y, -(n % 4), dims=(-2, -1))

@register("box-unet", prompt="box", inputs=("CT",), classes=("background", "lesion"),
          summary="lesion-agnostic box model: 2.5D U-Net per axial slice, the box as an input channel (CT; lung, "
                  "soft tissue, abdomen)",
          training="lesionseg.methods.boxunet.train:TRAINING",
          evaluation="lesionseg.methods.boxunet.evaluate:BoxUNetEvaluation")
class BoxUNet(Segmenter):
    """Box-prompt segmenter for lesions of any kind in CT (module docstring).

    Args:
        model: model folder with ``weights.pt`` and a card whose ``networks["weights.pt"]`` is
            ``{"class": "UNet", "kwargs": {...}}`` and whose ``preprocessing`` has every entry of
            :data:`REQUIRED_PREPROCESSING` (each changes the labels, so none is silently defaulted).
        device: ``"cpu"`` or ``"cuda"``.
        options: predict-time settings (none: the post-processing is the model's).
        net, preprocessing: an already built network and its pipeline (tests, training).
    """

    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu", options: Optional[Options] = None,
                 *, net: Optional[torch.nn.Module] = None,
                 preprocessing: Optional[BoxUNetPreprocessing] = None) -> None:
        super().__init__(model, device, options)
        if net is None:
            if model is None:
                raise WeightsError("box-unet needs a model folder (or a network passed as net=)")
            class_name, kwargs = model.network_spec("weights.pt")
            if class_name != "UNet":
                raise WeightsError(f"{model.card_path} describes network {class_name!r}, not UNet")
            preprocessing = model.settings(BoxUNetPreprocessing, "preprocessing", "the pre-processing the model "
                                           "was trained with", REQUIRED_PREPROCESSING)
            net = model.load_network("weights.pt", lambda: UNet(**kwargs))
        self._layout = torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
        self.net = net.eval().to(device, memory_format=self._layout)
        self.prep = preprocessing if preprocessing is not None else BoxUNetPreprocessing()

    def _prepare(self, image: Image, *others: Image) -> None:
        """Warn when the image does not look like a CT in HU (the model was trained on HU)."""
        warn_unless_ct(image, "box-unet")

    def index_box(self, prompt: Prompt) -> IndexBox:
        if not isinstance(prompt, Box):
            kind = "no prompt" if prompt is None else f"a {type(prompt).__name__} prompt"
            raise InputError(f"box-unet needs a Box prompt around the lesion, got {kind}")
        return box_to_index(self.image, prompt)

    def region_probability(self, box: IndexBox, tta: bool = False) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
        """Lesion probabilities of the part of the box's square inside the image (``(n, h, w)``) and the
        ``[k, j, i]`` slices of that region (``tta``: the mean over the 8 mirror/rotations of the input, the
        training augmentation; 8 network passes)."""
        x, sq = network_input(self.image.array, box, self.prep)
        if tta:
            prob = torch.stack([_undo(lesion_probability(self.net, _turn(x, n), self.device, self._layout), n)
                                for n in range(8)]).mean(dim=0)
        else:
            prob = lesion_probability(self.net, x, self.device, self._layout)
        log.debug("box-unet: %d slice(s), square %d px at (%d, %d)", sq.num_slices, sq.side, sq.i0, sq.j0)
        return paste_probability(prob, sq, self.image.shape)

    def predict_probability(self, prompt: Prompt = None) -> Image:
        """float32 lesion probability on the set image's grid (0 outside the box's square and slices)."""
        values, region = self.region_probability(self.index_box(prompt))
        out = np.zeros(self.image.shape, np.float32)
        out[region] = values
        return self.image.with_array(out)

    def predict(self, prompt: Prompt = None) -> Image:
        """uint8 0/1 label on the set image's grid: probability >= the model's threshold (and its largest
        26-connected component when the card says so)."""
        values, region = self.region_probability(self.index_box(prompt))
        out = np.zeros(self.image.shape, np.uint8)
        out[region] = binarize(values, self.prep.threshold, self.prep.largest_component)
        return self.image.with_array(out)
