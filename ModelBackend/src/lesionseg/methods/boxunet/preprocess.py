"""Input of the lesion-agnostic box model: 2.5D crops in two HU windows plus the box as a channel.

For a box (voxel range ``lo..hi``, ``(i, j, k)``) every axial slice ``k`` of it becomes one network input:

1. **Square**: the same square on every slice, ``factor`` (1.5) x the box's larger in-plane side and at least
   ``min_side`` pixels, centred on the box (:func:`lesionseg.methods.tsfcn.preprocess.liberal_box`). Unlike
   TS-FCN's fixed 100-pixel minimum this keeps the *lesion* at a similar share of the input whatever its size
   (a 4 mm nodule and a 20 cm sarcoma both fill about two thirds of it): the model is scale-free, which is
   what lets one network serve lesions of every kind. Pixels outside the image repeat the nearest edge pixel
   (neither air nor soft tissue is assumed).
2. **Resize** the square to ``size x size`` (64; antialiased bilinear when shrinking).
3. **Channels** (:data:`CHANNELS`): slices ``k - 1``, ``k``, ``k + 1`` (the nearest slice inside the image at
   its ends) in a wide window (-1000..1000 HU: lung and bone), slice ``k`` in a soft-tissue window
   (-160..240 HU), each mapped to -1..1, and the box itself (1 inside its in-plane rectangle, 0 outside): the
   box's aspect ratio and the jitter of a hand-drawn box reach the network this way.

The inverse is TS-FCN's (:func:`~lesionseg.methods.tsfcn.preprocess.paste_probability`): the ``size x size``
probability resized back to the square and pasted onto the image grid; nothing outside the square or the box's
slices is labelled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import InputError
from ...geometry import IndexBox
from ..tsfcn.preprocess import LiberalBox, crop_slices, liberal_box, resize

CHANNELS = ("previous slice (wide)", "slice (wide)", "next slice (wide)", "slice (soft tissue)", "box")
"""The network's input channels, in order."""


@dataclass(frozen=True)
class BoxUNetPreprocessing:
    """Parameters of the input pipeline (the model card's ``preprocessing``; module docstring).

    Args:
        wide, soft: ``(lo, hi)`` HU windows mapped to -1..1.
        size: network input side in pixels.
        factor: square side as a multiple of the box's larger in-plane side.
        min_side: smallest square side in pixels (tiny boxes still see some surroundings).
        threshold: lesion-probability threshold of the final label.
        largest_component: keep only the largest 26-connected component of the label.
        recist_reach: ``recist-3d`` propagates at most this many long-axis lengths away from the RECIST slice on
            each side; training chooses it on the training lesions
            (:func:`lesionseg.methods.boxunet.train.choose_geometry`); model folders written before it was
            learnt get 2.0, the old fixed limit.
        recist_key_margin: ``recist-3d``'s key-slice box is the RECIST axes' bounding box enlarged by this share
            of its size on each side (chosen with ``recist_reach``; 0.1 before it was learnt).
    """

    wide: tuple[float, float] = (-1000.0, 1000.0)
    soft: tuple[float, float] = (-160.0, 240.0)
    size: int = 64
    factor: float = 1.5
    min_side: int = 24
    threshold: float = 0.5
    largest_component: bool = True
    recist_reach: float = 2.0
    recist_key_margin: float = 0.1
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("wide", "soft"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not hi > lo:
                raise InputError(f"the {name} HU window must have hi > lo, got {getattr(self, name)}")
            object.__setattr__(self, name, (lo, hi))
        if self.size < 8 or self.min_side < 1 or not self.factor >= 1.0:
            raise InputError("size must be >= 8, min_side >= 1 and factor >= 1")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold must lie in (0, 1), got {self.threshold}")
        if not self.recist_reach > 0.0 or not self.recist_key_margin >= 0.0:
            raise InputError(f"need recist_reach > 0 and recist_key_margin >= 0, got {self.recist_reach} and "
                             f"{self.recist_key_margin}")

    def to_dict(self) -> dict:
        return {"wide": list(self.wide), "soft": list(self.soft), "size": self.size, "factor": self.factor,
                "min_side": self.min_side, "threshold": self.threshold,
                "largest_component": self.largest_component, "recist_reach": self.recist_reach,
                "recist_key_margin": self.recist_key_margin, **self.extra}

    @classmethod
    def from_dict(cls, data: dict) -> "BoxUNetPreprocessing":
        known = {"wide", "soft", "size", "factor", "min_side", "threshold", "largest_component", "recist_reach",
                 "recist_key_margin"}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})


def _window(x: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
    lo, hi = window
    return (x.clamp(lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0


def box_channel(box: IndexBox, sq: LiberalBox, size: int) -> torch.Tensor:
    """``(size, size)`` float: 1 where the network pixel's centre lies inside the box's in-plane rectangle
    (its outer voxel faces, ``lo - 0.5 .. hi + 0.5``), 0 elsewhere."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) * (sq.side / size) - 0.5
    cols = (centres + sq.i0 >= box.lo[0] - 0.5) & (centres + sq.i0 <= box.hi[0] + 0.5)
    rows = (centres + sq.j0 >= box.lo[1] - 0.5) & (centres + sq.j0 <= box.hi[1] + 0.5)
    return (rows[:, None] & cols[None, :]).float()


def network_input(array: np.ndarray, box: IndexBox, prep: BoxUNetPreprocessing,
                  hu: tuple[float, float] = (1.0, 0.0), neighbour: int = 1
                  ) -> tuple[torch.Tensor, LiberalBox]:
    """``(n, 5, size, size)`` float32 inputs of the ``n`` slices of ``box`` in ``array`` (``[k, j, i]``, HU) and
    their square. ``hu = (scale, offset)`` maps the HU first (training augmentation: contrast and brightness);
    ``neighbour`` is the slice step of the previous/next channels (training: 2 mimics thicker slices)."""
    sq = liberal_box(box, prep)  # step 1: uses prep.factor and prep.min_side
    kdim = array.shape[0]
    first, last = max(sq.k0 - neighbour, 0), min(sq.k1 + neighbour, kdim - 1)
    crops = crop_slices(array, LiberalBox(sq.i0, sq.j0, sq.side, first, last), pad_mode="edge")
    x = resize(torch.from_numpy(crops), prep.size)
    if hu != (1.0, 0.0):
        x = x * float(hu[0]) + float(hu[1])
    wide, soft = _window(x, prep.wide), _window(x, prep.soft)
    ks = torch.arange(sq.k0, sq.k1 + 1)
    at = lambda k: (k.clamp(0, kdim - 1) - first)  # noqa: E731
    rect = box_channel(box, sq, prep.size).expand(len(ks), -1, -1)
    return torch.stack([wide[at(ks - neighbour)], wide[at(ks)], wide[at(ks + neighbour)], soft[at(ks)], rect],
                       dim=1), sq
