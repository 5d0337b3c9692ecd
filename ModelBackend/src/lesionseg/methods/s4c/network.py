"""The S4C segmentation network: a 3D encoder-decoder with summed skips and two auxiliary outputs.

Zhu et al. (S4C) use a 3D encoder-decoder in which each decoder level is a transposed convolution
("DeConv") whose output is **added** to the encoder features of the same level (a sum residual connection,
not a concatenation), and two auxiliary deep-supervision heads on the lower-resolution decoder levels whose
logits are up-sampled to the input size. The paper gives neither the channel counts nor the number of
levels; ``channels`` is configuration, and the default ``(16, 32, 64, 128)`` with batch normalisation is what
trains on two CPU cores here (the card stores what a model used).

Tensors are ``(B, C, D, H, W)`` (``D`` = slices, ``[k, j, i]`` order of :class:`lesionseg.Image`).
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from ...nets.unet import ConvBlock, encode, pad_to_multiple, register_network


@register_network("S4CNet")
class S4CNet(nn.Module):
    """3D encoder-decoder with summed skip connections, DeConv up-sampling and two auxiliary heads.

    Args:
        in_channels: input channels (1: one CT phase).
        out_channels: classes (4: background, pancreas, tumour, dilated duct).
        channels: feature maps per level (at least three levels, so that two auxiliary heads exist).
        norm: normalisation of :class:`~lesionseg.nets.unet.ConvBlock` (``"batch"`` as in the paper's era).

    Forward: ``(B, in_channels, D, H, W)`` -> in eval mode ``(B, out_channels, D, H, W)`` logits; in training
    mode ``[main, aux1, aux2]``, all at the input size (aux1 from the 1/2-resolution decoder level, aux2 from
    the 1/4 level, tri-linearly up-sampled). Inputs of any size are padded to a multiple of
    ``2 ** (levels - 1)`` internally and cropped back.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 4, channels: Sequence[int] = (16, 32, 64, 128),
                 norm: str = "batch") -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 3 or min(channels) < 1:
            raise ValueError(f"channels needs at least three positive entries, got {channels}")
        self.config: dict[str, Any] = {"in_channels": int(in_channels), "out_channels": int(out_channels),
                                       "channels": channels, "norm": norm}
        self.pool = nn.MaxPool3d(2)
        self.encoders = nn.ModuleList(ConvBlock(3, c_in, c_out, norm)
                                      for c_in, c_out in zip([in_channels, *channels[:-1]], channels))
        self.ups = nn.ModuleList(nn.ConvTranspose3d(channels[i + 1], channels[i], 2, stride=2)
                                 for i in reversed(range(len(channels) - 1)))
        self.decoders = nn.ModuleList(ConvBlock(3, channels[i], channels[i], norm)
                                      for i in reversed(range(len(channels) - 1)))
        self.head = nn.Conv3d(channels[0], out_channels, 1)
        self.aux_heads = nn.ModuleList([nn.Conv3d(channels[1], out_channels, 1),
                                        nn.Conv3d(channels[2], out_channels, 1)])

    @property
    def divisor(self) -> int:
        """Spatial sizes that are multiples of this need no internal padding."""
        return 2 ** (len(self.encoders) - 1)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        if x.ndim != 5:
            raise ValueError(f"expected a (B, C, D, H, W) tensor, got shape {tuple(x.shape)}")
        x, crop = pad_to_multiple(x, self.divisor)
        skips = encode(x, self.encoders, self.pool)
        x = skips[-1]
        decoded = [x]  # the bottleneck, then each decoder level (coarse to fine)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips[:-1])):
            x = decoder(up(x) + skip)
            decoded.append(x)
        main = self.head(x)[crop]
        if not self.training:
            return main
        full = x.shape[2:]
        aux1 = F.interpolate(self.aux_heads[0](decoded[-2]), size=full, mode="trilinear", align_corners=False)
        aux2 = F.interpolate(self.aux_heads[1](decoded[-3]), size=full, mode="trilinear", align_corners=False)
        return [main, aux1[crop], aux2[crop]]
