"""The TS-FCN network: a VGG-style "deep jet" FCN-32s on 100x100 axial crops (Ray 2016).

Layers (3x3 convolutions, stride 1, padding 1, except the first with padding 32):
``conv64-conv64-pool | conv128 x2-pool | conv256 x2-pool | conv fc 7x7-ReLU-dropout | conv fc 1x1-ReLU-dropout
| conv2 1x1 | transposed conv x8 (kernel 16, stride 8, bilinear, frozen) | crop to the input size``.
For a 100x100 input the feature map before the 7x7 layer is 20x20, after it 14x14, after the upsampling
120x120. The crop starts at :data:`CROP_OFFSET` = 11, the offset at which output pixel ``o`` lies exactly
over input pixel ``o`` (the padding of 32 shifts the receptive field centres; Caffe's ``Crop`` layer of
FCN-32s computes the same kind of offset). The paper's wording says "centre crop" (offset 10): one pixel
off.

Two configurations: ``paper`` (4096-channel fc layers, 69.3 M parameters) and ``slim`` (512 channels,
7.8 M). The net is 2D by definition of the method; volumes are segmented slice by slice.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import InputError

CONFIGS: dict[str, dict] = {
    "paper": {"fc_channels": 4096, "widths": (64, 128, 256)},
    "slim": {"fc_channels": 512, "widths": (64, 128, 256)},
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
    """

    def __init__(self, fc_channels: int = 512, widths: tuple[int, int, int] = (64, 128, 256),
                 num_classes: int = 2, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        w1, w2, w3 = (int(w) for w in widths)
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w1, 3, padding=32), relu(), nn.Conv2d(w1, w1, 3, padding=1), relu(),
            nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 3, padding=1), relu(), nn.Conv2d(w2, w2, 3, padding=1), relu(), nn.MaxPool2d(2),
            nn.Conv2d(w2, w3, 3, padding=1), relu(), nn.Conv2d(w3, w3, 3, padding=1), relu(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Conv2d(w3, fc_channels, 7), relu(), nn.Dropout2d(dropout),
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
        """Build a named configuration (``"paper"`` or ``"slim"``), optionally overriding keywords."""
        if config not in CONFIGS:
            raise InputError(f"unknown TS-FCN config {config!r}; choose one of {sorted(CONFIGS)}")
        return cls(**{**CONFIGS[config], **overrides})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise InputError(f"TS-FCN takes (B, C, H, W) input, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        up = self.upsample(self.head(self.features(x)))  # side 8 * floor((h + 62) / 8) - 40 >= h + 15
        return up[..., CROP_OFFSET:CROP_OFFSET + h, CROP_OFFSET:CROP_OFFSET + w]


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
