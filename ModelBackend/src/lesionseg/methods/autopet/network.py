"""The two L2SNet networks: a 2D localisation U-Net on coronal PET slices and a 3D segmentation U-Net on PET+CT.

**Localisation** (:class:`L2SLocNet`). The paper uses a U-Net whose encoder is an ImageNet-pretrained
Res2Net-50 and whose decoder has five stages of {320, 256, 128, 64, 32} channels, each two 3x3 conv + BN +
ReLU after bilinear up-sampling. No pretrained weights exist offline (and ``timm``/``torchvision`` would pull
a CUDA torch, see ENV.md), so the encoder here is a **residual encoder trained from scratch**: a full-resolution
stem, then one stage per down-sampling made of basic residual blocks (two 3x3 conv + BN, identity or 1x1
shortcut), the first block of each stage with stride 2, as ResNet does. It is not Res2Net (no hierarchical
split of the channels inside a block). :data:`PAPER_LOC` is paper-sized: the paper's decoder and an encoder
of the same depth (down to 1/32) and about Res2Net-50's 25 M parameters (Res2Net-50 reaches 256..2048 channels
through 1x1 bottlenecks; plain 3x3 residual blocks at half those widths cost the same); :data:`CPU_LOC` is the
small default.

**Segmentation** (:func:`seg_network`): the generic :class:`~lesionseg.nets.unet.UNet` configured as the paper's
3D U-Net: 2 input channels (PET, CT), four levels starting at 16 filters, two 3x3x3 conv + layer
normalisation (GroupNorm with one group) + ReLU per block, max-pooling, a symmetric decoder (stride-2
transposed convolutions) and one output channel (lesion logit, trained with a sigmoid loss).

Tensors are ``(B, C, H, W)`` for the 2D net (``H`` = rows = the image's ``k`` axis of a coronal slice, ``W`` =
columns = ``i``) and ``(B, C, D, H, W)`` = ``[k, j, i]`` for the 3D net.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...nets.unet import ConvBlock, UNet, register_network

CPU_LOC = {"encoder": [16, 16, 32, 64, 128], "decoder": [128, 64, 32, 16], "blocks": 1}
"""Default localisation net for two CPU cores: 4 down-samplings, 0.85 M parameters."""
PAPER_LOC = {"encoder": [32, 64, 128, 256, 512, 1024], "decoder": [320, 256, 128, 64, 32], "blocks": 1}
"""Paper-sized: the paper's decoder channels, 5 down-samplings, 27.6 M parameters (Res2Net-50: 25 M)."""
SEG_CHANNELS = [16, 32, 64, 128]
"""The paper's 3D U-Net: four levels, 16 initial filters (also the default here)."""


class ResidualBlock(nn.Module):
    """Basic residual block: ``relu(bn(conv3x3(relu(bn(conv3x3(x, stride))))) + shortcut(x))``.

    The shortcut is the identity, or a strided 1x1 conv + BN when the stride or the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


@register_network("L2SLocNet")
class L2SLocNet(nn.Module):
    """2D U-Net with a residual encoder (see the module docstring) giving a lesion logit per pixel.

    Args:
        in_channels: input channels (1: the PET slice).
        out_channels: output logits (1: lesion).
        encoder: widths of the full-resolution stem and of each down-sampling stage (``L + 1`` entries for
            ``L`` down-samplings, ``L >= 1``).
        decoder: widths of the ``L`` decoder stages, coarsest first (bilinear x2, concatenation with the
            encoder feature of that resolution, two 3x3 conv + BN + ReLU).
        blocks: residual blocks per encoder stage.

    Forward: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)`` logits; any ``H, W`` (padded inside to a
    multiple of ``2 ** L`` and cropped back).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, encoder: Sequence[int] = tuple(CPU_LOC["encoder"]),
                 decoder: Sequence[int] = tuple(CPU_LOC["decoder"]), blocks: int = 1) -> None:
        super().__init__()
        encoder, decoder = [int(c) for c in encoder], [int(c) for c in decoder]
        if len(encoder) < 2 or len(decoder) != len(encoder) - 1 or min(encoder + decoder) < 1 or int(blocks) < 1:
            raise ValueError(f"need >= 2 encoder widths, one decoder width fewer, all positive, and blocks >= 1; "
                             f"got encoder {encoder}, decoder {decoder}, blocks {blocks}")
        self.config: dict[str, Any] = {"in_channels": int(in_channels), "out_channels": int(out_channels),
                                       "encoder": encoder, "decoder": decoder, "blocks": int(blocks)}
        self.stem = nn.Sequential(nn.Conv2d(in_channels, encoder[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(encoder[0]), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(
            nn.Sequential(ResidualBlock(c_in, c_out, 2), *(ResidualBlock(c_out, c_out) for _ in range(int(blocks) - 1)))
            for c_in, c_out in zip(encoder[:-1], encoder[1:]))
        widths = [encoder[-1], *decoder]
        skips = encoder[-2::-1]  # skip widths, coarsest first
        self.decoders = nn.ModuleList(ConvBlock(2, c_in + c_skip, c_out, "batch")
                                      for c_in, c_skip, c_out in zip(widths[:-1], skips, widths[1:]))
        self.head = nn.Conv2d(decoder[-1], out_channels, 1)

    @property
    def divisor(self) -> int:
        """Spatial sizes that are multiples of this need no internal padding."""
        return 2 ** len(self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        size = x.shape[2:]
        pad = [(-s) % self.divisor for s in size]
        if any(pad):
            x = F.pad(x, [0, pad[1], 0, pad[0]])
        x = self.stem(x)
        skips = [x]
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        return self.head(x)[..., : size[0], : size[1]]


def loc_network(encoder: Sequence[int] = tuple(CPU_LOC["encoder"]), decoder: Sequence[int] = tuple(CPU_LOC["decoder"]),
                blocks: int = int(CPU_LOC["blocks"])) -> L2SLocNet:
    """The localisation net on one PET channel with one lesion logit."""
    return L2SLocNet(1, 1, encoder, decoder, blocks)


def seg_network(channels: Sequence[int] = tuple(SEG_CHANNELS)) -> UNet:
    """The paper's 3D segmentation U-Net: ``UNet(spatial_dims=3, in_channels=2, out_channels=1, channels,
    norm="layer")`` with transposed-convolution up-sampling."""
    return UNet(spatial_dims=3, in_channels=2, out_channels=1, channels=channels, norm="layer", upsample="transpose")
