"""A dimension-generic U-Net and the card-string -> network-class registry.

One class serves 2D and 3D (``spatial_dims``), as MONAI's ``spatial_dims`` networks do: no ``*_2d`` /
``*_3d`` twins. Constructor keyword arguments are plain JSON values, so a model card can store them
(``card["network"] = {"class": "UNet", "kwargs": net.config}``) and :func:`build_network` can rebuild the
same network from the card.

Tensors are ``(B, C, *spatial)``: ``(B, C, H, W)`` for 2D and ``(B, C, D, H, W)`` for 3D (``D`` = slices,
``H`` = rows, ``W`` = columns, i.e. the ``[k, j, i]`` order of :class:`lesionseg.Image` arrays).
"""
from __future__ import annotations

import importlib
import math
from typing import Any, Callable, Sequence, TypeVar, Union

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import WeightsError

NORMS = ("group", "batch", "instance", "layer")
UPSAMPLES = ("transpose", "linear")

N = TypeVar("N", bound=type)
NETWORKS: dict[str, type[nn.Module]] = {}
"""Card ``network.class`` strings -> classes; other modules add theirs with :func:`register_network`."""


def register_network(name: str) -> Callable[[N], N]:
    """Class decorator adding a network class to :data:`NETWORKS` under ``name``."""

    def deco(cls: N) -> N:
        if name in NETWORKS and NETWORKS[name] is not cls:
            raise ValueError(f"network {name!r} is registered twice")
        NETWORKS[name] = cls
        return cls

    return deco


def build_network(class_name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate the network a model card names.

    Args:
        class_name: a key of :data:`NETWORKS` (e.g. ``"UNet"``) or a dotted path inside the package
            (e.g. ``"lesionseg.methods.tsfcn.network.FCN"``), which is imported on demand.
        kwargs: the card's ``network.kwargs`` (JSON values).

    Raises:
        WeightsError: unknown class, or keyword arguments the class rejects (a broken card).
    """
    cls = NETWORKS.get(class_name)
    if cls is None and class_name.startswith("lesionseg.") and class_name.count(".") >= 2:
        module_name, _, attr = class_name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            cls = None
    if cls is None:
        raise WeightsError(
            f"the model card names an unknown network class {class_name!r}; known: {', '.join(sorted(NETWORKS))}"
        )
    try:
        return cls(**(kwargs or {}))
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"the model card's arguments for {class_name} are invalid: {exc}") from None


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


def make_norm(norm: str, dims: int, channels: int, groups: int = 8) -> nn.Module:
    """Normalisation layer for ``channels`` feature maps.

    ``"group"``: GroupNorm with ``gcd(groups, channels)`` groups; ``"layer"``: GroupNorm(1, C);
    ``"instance"``: affine InstanceNorm; ``"batch"``: BatchNorm.
    """
    if norm == "group":
        return nn.GroupNorm(math.gcd(groups, channels), channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    if norm == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if norm == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")


def pad_to_multiple(x: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple]:
    """Zero-pad the spatial axes of ``(B, C, *spatial)`` at their far ends to multiples of ``divisor``.

    Returns the padded tensor and the index that crops a full-resolution output back to the input size.
    """
    size = x.shape[2:]
    pad = [(-s) % divisor for s in size]
    if any(pad):
        x = F.pad(x, [p for extra in reversed(pad) for p in (0, extra)])
    return x, (Ellipsis, *(slice(0, s) for s in size))


def encode(x: torch.Tensor, encoders: nn.ModuleList, pool: nn.Module) -> list[torch.Tensor]:
    """The feature maps of each encoder level (the first at full resolution, then pooled by 2 per level)."""
    skips = []
    for level, encoder in enumerate(encoders):
        x = encoder(x if level == 0 else pool(x))
        skips.append(x)
    return skips


class ConvBlock(nn.Sequential):
    """Two ``3^d`` convolutions, each followed by a normalisation and ReLU; spatial size unchanged.

    The convolutions have no bias: every one is followed by a normalisation that removes it.
    """

    def __init__(self, dims: int, in_channels: int, out_channels: int, norm: str, groups: int = 8) -> None:
        conv = _conv(dims)
        super().__init__(
            conv(in_channels, out_channels, 3, padding=1, bias=False),
            make_norm(norm, dims, out_channels, groups),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, 3, padding=1, bias=False),
            make_norm(norm, dims, out_channels, groups),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """Upsample ``x`` by 2 to ``in_channels -> out_channels``, concatenate the skip, apply a ConvBlock."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, norm: str, upsample: str,
                 groups: int = 8) -> None:
        super().__init__()
        if upsample == "transpose":
            conv_t = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
            self.up: nn.Module = conv_t(in_channels, out_channels, 2, stride=2)
        elif upsample == "linear":
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear" if dims == 2 else "trilinear", align_corners=False),
                _conv(dims)(in_channels, out_channels, 1),
            )
        else:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, not {upsample!r}")
        self.block = ConvBlock(dims, 2 * out_channels, out_channels, norm, groups)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


@register_network("UNet")
class UNet(nn.Module):
    """U-Net for 2D or 3D inputs (Ronneberger et al. 2015; Çiçek et al. 2016 for 3D).

    Each level is :class:`ConvBlock` (two ``3^d`` conv + norm + ReLU); the encoder goes down by ``2^d``
    max-pooling, the decoder up by a stride-2 transposed convolution (or (bi/tri)linear interpolation and a
    ``1^d`` conv) followed by concatenation with the skip connection; a ``1^d`` conv gives the logits.

    Inputs whose spatial size is not a multiple of ``2 ** (len(channels) - 1)`` are zero-padded at the far
    end of each axis inside :meth:`forward` and the output is cropped back, so any size is accepted.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (e.g. 1 for CT, 2 for PET + CT).
        out_channels: output channels (logits, e.g. 2 for background / lesion).
        channels: feature maps per level, e.g. ``(8, 16, 32, 64)`` (at least two levels).
        norm: ``"group"``, ``"batch"``, ``"instance"`` or ``"layer"`` (= GroupNorm(1, C)).
        upsample: ``"transpose"`` (stride-2 transposed conv) or ``"linear"`` (interpolation + 1^d conv).
        deep_supervision: in training mode :meth:`forward` returns a list ``[full, 1/2, 1/4, ...]`` of logits
            (one per decoder level, highest resolution first); in eval mode only the full-resolution tensor.
        groups: group count for ``norm="group"`` (reduced to ``gcd(groups, C)`` per layer).

    Forward: ``(B, in_channels, *spatial)`` float -> ``(B, out_channels, *spatial)`` logits.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2,
                 channels: Sequence[int] = (8, 16, 32, 64), norm: str = "group", upsample: str = "transpose",
                 deep_supervision: bool = False, groups: int = 8) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, not {spatial_dims!r}")
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"channels needs at least two positive entries, got {channels}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError("in_channels and out_channels must be positive")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        if upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, not {upsample!r}")
        self.spatial_dims = spatial_dims
        self.config: dict[str, Any] = {
            "spatial_dims": spatial_dims, "in_channels": int(in_channels), "out_channels": int(out_channels),
            "channels": channels, "norm": norm, "upsample": upsample,
            "deep_supervision": bool(deep_supervision), "groups": int(groups),
        }
        self.deep_supervision = bool(deep_supervision)
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        self.pool = pool(2)
        self.encoders = nn.ModuleList(
            ConvBlock(spatial_dims, c_in, c_out, norm, groups)
            for c_in, c_out in zip([in_channels, *channels[:-1]], channels)
        )
        self.decoders = nn.ModuleList(
            UpBlock(spatial_dims, channels[i + 1], channels[i], norm, upsample, groups)
            for i in reversed(range(len(channels) - 1))
        )
        conv = _conv(spatial_dims)
        self.head = conv(channels[0], out_channels, 1)
        self.aux_heads = nn.ModuleList(
            conv(channels[level], out_channels, 1) for level in range(1, len(channels) - 1)
        ) if self.deep_supervision else nn.ModuleList()

    @property
    def divisor(self) -> int:
        """Spatial sizes that are multiples of this need no internal padding."""
        return 2 ** (len(self.encoders) - 1)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected a (B, C, {self.spatial_dims} spatial dims) tensor, got shape {tuple(x.shape)}")
        size = x.shape[2:]
        x, crop = pad_to_multiple(x, self.divisor)
        skips = encode(x, self.encoders, self.pool)
        x = skips[-1]
        aux = []
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            aux.append(x)
            x = decoder(x, skip)
        out = self.head(x)[crop]
        if not (self.deep_supervision and self.training):
            return out
        # aux[0] is the bottleneck, which gets no head; aux[1:] are the decoder outputs, lowest resolution first.
        outputs = [out]
        for level, (head, feat) in enumerate(zip(self.aux_heads, reversed(aux[1:])), start=1):
            outputs.append(head(feat)[(Ellipsis, *(slice(0, -(-s // 2 ** level)) for s in size))])
        return outputs


def set_prior_probability(head: nn.Module, probability: float, channel: int = 0) -> None:
    """Set the bias of output ``channel`` of a fresh network's final 1x1 convolution ``head`` so that its sigmoid
    starts at ``probability`` everywhere (Lin et al. 2017's prior-probability initialisation).

    For lesions that fill 0.01-0.1 % of a patch, a start at 0.5 spends the first steps pushing every voxel towards
    background (and, with a generalized or batch soft Dice, leaves the background gradient tiny)."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    with torch.no_grad():
        head.bias[channel] = math.log(probability / (1.0 - probability))
