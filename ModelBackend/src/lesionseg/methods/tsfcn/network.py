"""The TS-FCN network: a VGG-style "deep jet" FCN-32s on 100x100 axial crops (Ray 2016).

Layers (3x3 convolutions, stride 1, padding 1, except the first with padding 32):
``conv64-conv64-pool | conv128 x2-pool | conv256 x2-pool | conv fc 7x7-ReLU-dropout | conv fc 1x1-ReLU-dropout
| conv2 1x1 | transposed conv x8 (kernel 16, stride 8, bilinear, frozen) | crop to the input size``.
For a 100x100 input the feature map before the 7x7 layer is 20x20, after it 14x14, after the upsampling
120x120. The crop starts at :data:`CROP_OFFSET` = 11, the offset at which output pixel ``o`` lies exactly
over input pixel ``o`` (the padding of 32 shifts the receptive field centres; Caffe's ``Crop`` layer of
FCN-32s computes the same kind of offset). The paper's wording says "centre crop" (offset 10): one pixel
off.

Four configurations: ``paper`` (4096-channel fc layers, 69.3 M parameters), ``slim`` (512 channels, 7.8 M), ``fast``
and ``lite``. ``fast`` has the same layers and parameters as ``slim`` with "same" padding: the first convolution pads
1 pixel, not 32, and the 7x7 layer pads 3. FCN's large first padding exists so that any input size gives an output
that can be cropped to it; on TS-FCN's fixed 100x100 crops it only makes the first block work on 162x162 maps, 2.6x
the pixels, and the 7x7 layer on 20x20. ``fast`` computes the same kind of 1/8-resolution map (12x12 for 100x100,
where ``slim`` has 14x14) and resizes the two-class logits bilinearly to the input size (the transposed convolution's
8x grid does not fit sizes that are not multiples of 8); it is 2-2.5x faster on a CPU, which the interactive box
targets need (issue #19: <= 20 ms per slice). Its frozen upsampling kernel is kept, unused, so weights move between
``slim`` and ``fast`` (``lesionseg train tsfcn --config fast --init SLIM_MODEL``). ``lite`` (shipped) is ``fast`` with
half the channels in every layer (1.96 M parameters, ~4x fewer operations); it starts from a wider model by keeping
the filters with the largest L1 norms (:func:`shrink_state`, the filter pruning of Li et al., ICLR 2017) and is then
fine-tuned. The net is 2D by definition of the method; volumes are segmented slice by slice.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import InputError

CONFIGS: dict[str, dict] = {
    "paper": {"fc_channels": 4096, "widths": (64, 128, 256)},
    "slim": {"fc_channels": 512, "widths": (64, 128, 256)},
    "fast": {"fc_channels": 512, "widths": (64, 128, 256), "same_padding": True},
    "lite": {"fc_channels": 256, "widths": (32, 64, 128), "same_padding": True},
}
"""Named configurations: keyword arguments of :class:`TSFCNNet`."""

CROP_OFFSET = 11
"""First output pixel of the 8x upsampled map that lies over input pixel 0."""


def bilinear_kernel(channels: int, kernel: int) -> torch.Tensor:
    """``(C, C, k, k)`` weights that make a transposed convolution bilinear upsampling, per channel."""
    factor = (kernel + 1) // 2
    centre = factor - 1 if kernel % 2 == 1 else factor - 0.5
    og = np.ogrid[:kernel, :kernel]
    filt = (1 - abs(og[0] - centre) / factor) * (1 - abs(og[1] - centre) / factor)
    weight = np.zeros((channels, channels, kernel, kernel), np.float32)
    weight[range(channels), range(channels)] = filt
    return torch.from_numpy(weight)


class TSFCNNet(nn.Module):
    """TS-FCN. Input ``(B, 3, H, W)`` float32 (normalised crops, any size; trained on 100x100); output
    ``(B, 2, H, W)`` logits (background, tumour).

    Args:
        fc_channels: channels of the two convolutional "fully connected" layers (4096 paper, 512 slim).
        widths: channels of the three conv blocks (64, 128, 256 in the paper; tiny values for tests).
        num_classes: output classes (2).
        in_channels: input channels (3: the CT slice copied).
        dropout: dropout probability after each fc layer.
        same_padding: pad the first convolution by 1 and the 7x7 layer by 3 and resize the logits bilinearly
            (the ``fast`` configuration) instead of FCN's padding of 32, transposed convolution and crop.
    """

    def __init__(self, fc_channels: int = 512, widths: tuple[int, int, int] = (64, 128, 256),
                 num_classes: int = 2, in_channels: int = 3, dropout: float = 0.5,
                 same_padding: bool = False) -> None:
        super().__init__()
        w1, w2, w3 = (int(w) for w in widths)
        self.same_padding = bool(same_padding)
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w1, 3, padding=1 if self.same_padding else 32), relu(),
            nn.Conv2d(w1, w1, 3, padding=1), relu(),
            nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 3, padding=1), relu(), nn.Conv2d(w2, w2, 3, padding=1), relu(), nn.MaxPool2d(2),
            nn.Conv2d(w2, w3, 3, padding=1), relu(), nn.Conv2d(w3, w3, 3, padding=1), relu(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Conv2d(w3, fc_channels, 7, padding=3 if self.same_padding else 0), relu(), nn.Dropout2d(dropout),
            nn.Conv2d(fc_channels, fc_channels, 1), relu(), nn.Dropout2d(dropout),
            nn.Conv2d(fc_channels, num_classes, 1),
        )
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, bias=False)
        self.upsample.weight.data.copy_(bilinear_kernel(num_classes, 16))
        self.upsample.weight.requires_grad_(False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.head[-1].weight, std=0.01)

    @classmethod
    def from_config(cls, config: str, **overrides) -> "TSFCNNet":
        """Build a named configuration (:data:`CONFIGS`), optionally overriding keywords."""
        if config not in CONFIGS:
            raise InputError(f"unknown TS-FCN config {config!r}; choose one of {sorted(CONFIGS)}")
        return cls(**{**CONFIGS[config], **overrides})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise InputError(f"TS-FCN takes (B, C, H, W) input, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if self.same_padding:
            return F.interpolate(self.head(self.features(x)), size=(h, w), mode="bilinear", align_corners=False)
        up = self.upsample(self.head(self.features(x)))  # side 8 * floor((h + 62) / 8) - 40 >= h + 15
        return up[..., CROP_OFFSET:CROP_OFFSET + h, CROP_OFFSET:CROP_OFFSET + w]


def shrink_state(wide: dict[str, torch.Tensor], net: "TSFCNNet") -> dict[str, torch.Tensor]:
    """A state dict for ``net`` taken from the state dict ``wide`` of a network with the same layers and at least
    as many channels: each convolution keeps the output filters with the largest L1 norms over the input channels
    the previous layer kept (all outputs of the classifier), and its biases. Raises :class:`InputError` when the
    layers do not match or ``net`` is wider."""
    own = net.state_dict()
    convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    out: dict[str, torch.Tensor] = {}
    kept_in: Optional[torch.Tensor] = None
    for name in convs:
        w, b = wide.get(f"{name}.weight"), wide.get(f"{name}.bias")
        target = own[f"{name}.weight"]
        if w is None or b is None or w.ndim != 4 or w.shape[2:] != target.shape[2:] or w.shape[0] < target.shape[0]:
            raise InputError(f"cannot start a {tuple(target.shape)} layer {name} from "
                             f"{None if w is None else tuple(w.shape)}: the networks' layers differ")
        w = w if kept_in is None else w[:, kept_in]
        if w.shape[1] != target.shape[1]:
            raise InputError(f"layer {name} takes {target.shape[1]} channels, the wider network's {w.shape[1]}")
        keep = torch.sort(torch.topk(w.abs().flatten(1).sum(1), target.shape[0]).indices).values
        out[f"{name}.weight"], out[f"{name}.bias"] = w[keep].clone(), b[keep].clone()
        kept_in = keep
    for name, value in own.items():
        out.setdefault(name, value.clone())  # the frozen upsampling kernel
    return out


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
