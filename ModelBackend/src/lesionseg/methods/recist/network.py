"""Siamese co-segmentation encoder-decoder with pair attention (2D; the paper works on the RECIST slice).

Tensors are ``(B, C, H, W)`` crops (``H`` rows, ``W`` columns of the crop frame). The encoder is shared
by both images of a pair; an attention module joins the pair at the bottleneck; a decoder with skip
connections upsamples each image's features back to ``(B, 2, H, W)`` logits (background, lesion).

Encoders (``encoder=`` and the lists that shape them):

- ``"vgg"``: stages of ``blocks[s]`` 3x3 conv + BatchNorm + ReLU with ``channels[s]`` maps, 2x2 max-pool
  between stages. VGG-16 is ``channels=(64, 128, 256, 512, 512), blocks=(2, 2, 3, 3, 3)``; the default
  ``(16, 32, 64, 128), (1, 2, 2, 2)`` trains on two CPU cores in minutes.
- ``"resnet"``: 7x7/2 stem + max-pool and bottleneck stages (expansion 4), stride 2 from the second stage.
  ResNet-101 is ``channels=(64, 128, 256, 512), blocks=(3, 4, 23, 3)``.
- ``"drn"``: the ResNet with the last two stages at stride 1 and dilation 2 and 4 (output stride 8), as
  DRN-101 in the paper (``channels=(64, 128, 256, 512), blocks=(3, 4, 23, 3)``).

Attention (``attention=``), after Chen et al., "Semantic aware attention based deep object
co-segmentation" (ACCV 2018), which the paper adopts:

- ``"none"``: no interaction; the network is a plain FCN of one image (the paper's FCN baseline).
- ``"ca"``: channel attention. Each image's bottleneck gets squeeze-and-excitation weights
  ``sigmoid(MLP(avgpool(f)))`` (one shared MLP); both images are multiplied by the *product* of the two
  weight vectors, so only channels active in both images stay on.
- ``"csa"``: ``"ca"`` followed by spatial attention: each image's map is multiplied by
  ``sigmoid(conv3x3([mean_c f, max_c f]))`` of its own channel-attended features.

The pretrained ImageNet weights the paper starts from are not available here (no torchvision); every
configuration trains from scratch.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...nets.unet import register_network

ENCODERS = ("vgg", "resnet", "drn")
ATTENTIONS = ("none", "ca", "csa")


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with stride / dilation, 1x1 with ``4 * width`` maps) + projection."""

    def __init__(self, c_in: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        c_out = 4 * width
        self.body = nn.Sequential(_conv_bn(c_in, width, 1), _conv_bn(width, width, 3, stride, dilation),
                                  nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class Encoder(nn.Module):
    """Shared encoder; :meth:`forward` returns the feature maps of every stage, highest resolution first."""

    def __init__(self, kind: str, in_channels: int, channels: Sequence[int], blocks: Sequence[int]) -> None:
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, not {kind!r}")
        if len(channels) != len(blocks) or len(channels) < 2 or min(blocks) < 1 or min(channels) < 1:
            raise ValueError("channels and blocks need the same length (>= 2) and positive entries")
        self.kind = kind
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        if kind == "vgg":
            c_prev = in_channels
            for s, (c, n) in enumerate(zip(channels, blocks)):
                layers: list[nn.Module] = [nn.MaxPool2d(2)] if s > 0 else []
                for b in range(n):
                    layers.append(_conv_bn(c_prev if b == 0 else c, c))
                self.stages.append(nn.Sequential(*layers))
                self.out_channels.append(c)
                c_prev = c
            return
        self.stem = nn.Sequential(_conv_bn(in_channels, channels[0], 7, 2), nn.MaxPool2d(3, 2, 1))
        c_prev = channels[0]
        last = len(channels) - 1
        for s, (width, n) in enumerate(zip(channels, blocks)):
            dilated = kind == "drn" and s >= last - 1
            stride = 1 if s == 0 or dilated else 2
            dilation = 2 ** (s - last + 2) if dilated else 1
            layers = [Bottleneck(c_prev, width, stride, dilation)]
            layers += [Bottleneck(4 * width, width, 1, dilation) for _ in range(n - 1)]
            self.stages.append(nn.Sequential(*layers))
            c_prev = 4 * width
            self.out_channels.append(c_prev)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        if self.kind != "vgg":
            x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class PairAttention(nn.Module):
    """Channel (``"ca"``) or channel-spatial (``"csa"``) attention over a pair of ``(B, C, h, w)`` maps."""

    def __init__(self, channels: int, mode: str, reduction: int = 4) -> None:
        super().__init__()
        if mode not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, not {mode!r}")
        self.mode = mode
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.spatial = nn.Conv2d(2, 1, 3, padding=1) if mode == "csa" else None

    def forward(self, fa: torch.Tensor, fb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "none":
            return fa, fb
        wa = torch.sigmoid(self.mlp(fa.mean(dim=(2, 3))))
        wb = torch.sigmoid(self.mlp(fb.mean(dim=(2, 3))))
        joint = (wa * wb)[:, :, None, None]
        fa, fb = fa * joint, fb * joint
        if self.spatial is not None:
            fa = fa * torch.sigmoid(self.spatial(torch.cat([fa.mean(1, keepdim=True), fa.amax(1, keepdim=True)], 1)))
            fb = fb * torch.sigmoid(self.spatial(torch.cat([fb.mean(1, keepdim=True), fb.amax(1, keepdim=True)], 1)))
        return fa, fb


@register_network("RecistCoSeg")
class RecistCoSeg(nn.Module):
    """Siamese co-segmentation network (see the module docstring for the options).

    Args:
        in_channels: input channels (2: a lung and a soft-tissue window of the same crop).
        encoder: ``"vgg"``, ``"resnet"`` or ``"drn"``. channels, blocks: encoder stage widths and depths.
        attention: ``"none"``, ``"ca"`` or ``"csa"``. reduction: squeeze ratio of the channel MLP.
        decoder_channels: maps of every decoder stage (default: the encoder's widths of the skip stages).

    Forward: ``forward(a, b=None)`` with ``a``, ``b`` ``(B, in_channels, H, W)`` float (``b`` defaults to
    ``a``: the lesion paired with itself) -> ``(logits_a, logits_b)``, each ``(B, 2, H, W)``. ``H`` and
    ``W`` must be multiples of the encoder's output stride (128 is).
    """

    def __init__(self, in_channels: int = 2, encoder: str = "vgg", channels: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] = (1, 2, 2, 2), attention: str = "csa", reduction: int = 4,
                 decoder_channels: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        channels, blocks = [int(c) for c in channels], [int(b) for b in blocks]
        self.encoder = Encoder(encoder, int(in_channels), channels, blocks)
        enc = self.encoder.out_channels
        dec = [int(c) for c in decoder_channels] if decoder_channels else [min(c, 256) for c in enc[:-1]]
        if len(dec) != len(enc) - 1:
            raise ValueError(f"decoder_channels needs {len(enc) - 1} entries")
        self.attention = PairAttention(enc[-1], attention, int(reduction))
        self.decoders = nn.ModuleList()
        c_prev = enc[-1]
        for skip_c, c in zip(reversed(enc[:-1]), reversed(dec)):
            self.decoders.append(nn.Sequential(_conv_bn(c_prev + skip_c, c), _conv_bn(c, c)))
            c_prev = c
        self.head = nn.Conv2d(c_prev, 2, 1)
        self.config: dict[str, Any] = {"in_channels": int(in_channels), "encoder": encoder, "channels": channels,
                                       "blocks": blocks, "attention": attention, "reduction": int(reduction),
                                       "decoder_channels": dec}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_bottleneck)`` global-average-pooled bottleneck features (the clustering embedding)."""
        return self.encoder(x)[-1].mean(dim=(2, 3))

    def _decode(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = feats[-1]
        for decoder, skip in zip(self.decoders, reversed(feats[:-1])):
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)

    def forward(self, a: torch.Tensor, b: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if a.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) crops, got shape {tuple(a.shape)}")
        if self.attention.mode == "none" and b is None:
            feats = self.encoder(a)
            out = self._decode(feats, a.shape[2:])
            return out, out
        b = a if b is None else b
        n = a.shape[0]
        feats = self.encoder(torch.cat([a, b], dim=0))
        fa, fb = self.attention(feats[-1][:n], feats[-1][n:])
        feats[-1] = torch.cat([fa, fb], dim=0)
        out = self._decode(feats, a.shape[2:])
        return out[:n], out[n:]
