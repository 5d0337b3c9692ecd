"""TS-FCN pre-processing and its exact geometric inverse (Ray 2016, "Lung Tumor Segmentation via FCNs").

For a box around the tumour (voxel range ``lo..hi`` in ``(i, j, k)`` order) every axial slice ``k`` of
the box is handled the same way:

1. **Liberal box**: a square of ``side = max(ceil(factor * max(box width, box height)), min_side)``
   pixels (paper: factor 2, at least 100), centred on the box centre, the same square on every slice.
2. **Crop** the square from ``image.array[k]``. Pixels of the square outside the image are filled with
   ``pad_value`` (default -1000 HU, air: what surrounds a patient and fills the lung). The LIDC crops
   used for training are 43-82 pixels wide, so their liberal boxes always reach past the image.
3. **Window**: clip to ``(lo, hi)`` HU and map linearly to 0..255 (paper: -2000..4095).
4. **Resize** the ``side x side`` crop to ``size x size`` (100) with antialiased bilinear interpolation
   (a no-op when ``side == size``), copy into 3 channels and normalise each channel
   ``(x - mean[c]) / std[c]`` with statistics of the training crops.

The inverse (:func:`paste_probability`) resizes the ``size x size`` network output back to ``side x
side`` (bilinear) and pastes the part that lies inside the image at the square's position; nothing
outside the liberal box is ever labelled, so a tumour larger than the liberal box is clipped to it.
Arrays are ``[k, j, i]`` as in :class:`lesionseg.Image`; the in-plane crop axes are ``(j, i)`` = rows,
columns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import InputError
from ...geometry import IndexBox

PAPER_WINDOW = (-2000.0, 4095.0)
"""The paper's HU window, mapped to 0..255."""

PAD_HU = -1000.0
"""Fill value (HU) for liberal-box pixels outside the image: air."""


@dataclass(frozen=True)
class Preprocessing:
    """Parameters of the TS-FCN input pipeline (stored in the model card's ``preprocessing``).

    Args:
        window: ``(lo, hi)`` HU clipped and mapped to 0..255.
        size: network input side in pixels.
        factor: liberal-box side as a multiple of the box's larger in-plane side.
        min_side: smallest liberal-box side in pixels.
        pad_value: HU used for pixels of the liberal box outside the image.
        mean, std: per-channel normalisation of the 0..255 values (3 channels).
        threshold: tumour-probability threshold of the final label (0.5 = argmax of two classes).
        largest_component: keep only the largest 26-connected component of the label.
    """

    window: tuple[float, float] = PAPER_WINDOW
    size: int = 100
    factor: float = 2.0
    min_side: int = 100
    pad_value: float = PAD_HU
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    threshold: float = 0.5
    largest_component: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.window)
        if not hi > lo:
            raise InputError(f"the HU window must have hi > lo, got {self.window}")
        if self.size < 1 or self.min_side < 1 or self.factor <= 0:
            raise InputError("size, min_side and factor must be positive")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise InputError("mean and std need three values each, std > 0")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold must lie in (0, 1), got {self.threshold}")
        object.__setattr__(self, "window", (lo, hi))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        return {"window": list(self.window), "size": self.size, "factor": self.factor,
                "min_side": self.min_side, "pad_value": self.pad_value, "mean": list(self.mean),
                "std": list(self.std), "threshold": self.threshold,
                "largest_component": self.largest_component, **self.extra}

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        known = {"window", "size", "factor", "min_side", "pad_value", "mean", "std", "threshold", "largest_component"}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})


@dataclass(frozen=True)
class LiberalBox:
    """The square crop of every slice: columns ``i0 .. i0+side-1``, rows ``j0 .. j0+side-1``, slices
    ``k0 .. k1`` (inclusive). ``i0``/``j0`` may be negative and the square may end past the image."""

    i0: int
    j0: int
    side: int
    k0: int
    k1: int

    @property
    def num_slices(self) -> int:
        return self.k1 - self.k0 + 1


def liberal_box(box: IndexBox, prep: Preprocessing) -> LiberalBox:
    """The liberal square for a box in voxels (inclusive ``lo..hi``, ``(i, j, k)``), same on all slices."""
    width = int(max(box.size[0], box.size[1]))
    side = max(int(math.ceil(prep.factor * width - 1e-9)), prep.min_side)
    centre = (np.asarray(box.lo, float) + np.asarray(box.hi, float)) / 2.0
    i0 = int(math.floor(centre[0] - (side - 1) / 2.0 + 0.5))
    j0 = int(math.floor(centre[1] - (side - 1) / 2.0 + 0.5))
    return LiberalBox(i0, j0, side, int(box.lo[2]), int(box.hi[2]))


def _overlap(start: int, side: int, length: int) -> tuple[int, int, int, int]:
    """Source range ``a..b`` (exclusive end) inside ``0..length`` and its offset range in the square."""
    a, b = max(start, 0), min(start + side, length)
    return a, b, a - start, b - start


def crop_slices(array: np.ndarray, lb: LiberalBox, pad_value: float = PAD_HU,
                pad_mode: str = "constant") -> np.ndarray:
    """``(n, side, side)`` float32 crops of ``array[k0..k1]`` (``[k, j, i]``) at the liberal square.

    Pixels outside the image take ``pad_value`` (``pad_mode="constant"``) or numpy's ``"reflect"`` /
    ``"edge"`` padding (used as training augmentation). Raises :class:`InputError` when the square does
    not overlap the image.
    """
    kdim, jdim, idim = array.shape
    if lb.k0 < 0 or lb.k1 >= kdim or lb.k1 < lb.k0:
        raise InputError(f"slices {lb.k0}..{lb.k1} are not inside the image (0..{kdim - 1})")
    ja, jb, jo, je = _overlap(lb.j0, lb.side, jdim)
    ia, ib, io, ie = _overlap(lb.i0, lb.side, idim)
    if jb <= ja or ib <= ia:
        raise InputError("the liberal box does not overlap the image")
    region = np.asarray(array[lb.k0:lb.k1 + 1, ja:jb, ia:ib], dtype=np.float32)
    pads = ((0, 0), (jo, lb.side - je), (io, lb.side - ie))
    if pad_mode == "constant":
        return np.pad(region, pads, mode="constant", constant_values=pad_value)
    return np.pad(region, pads, mode=pad_mode)


def resize(stack: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(n, H, W)`` float to ``(n, size, size)``: antialiased bilinear (identity when equal)."""
    if stack.shape[-1] == size and stack.shape[-2] == size:
        return stack
    down = stack.shape[-1] > size
    return F.interpolate(stack[:, None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=down)[:, 0]


def to_network(crops: np.ndarray | torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """``(n, side, side)`` HU crops -> ``(n, 3, size, size)`` float32 network input (window, resize, norm)."""
    x = torch.as_tensor(np.asarray(crops, dtype=np.float32)) if isinstance(crops, np.ndarray) else crops.float()
    lo, hi = prep.window
    x = (x.clamp(lo, hi) - lo) * (255.0 / (hi - lo))
    x = resize(x, prep.size)
    mean = torch.tensor(prep.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x[:, None].expand(-1, 3, -1, -1) - mean) / std


def mask_to_network(masks: np.ndarray, size: int) -> torch.Tensor:
    """``(n, side, side)`` 0/1 masks -> ``(n, size, size)`` int64 targets (area-weighted, >= 0.5)."""
    m = resize(torch.as_tensor(np.asarray(masks, dtype=np.float32)), size)
    return (m >= 0.5).long()


def paste_probability(prob: torch.Tensor | np.ndarray, lb: LiberalBox, image_shape: tuple[int, int, int]
                      ) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
    """Inverse of the crop: ``(n, size, size)`` probabilities back onto the image grid.

    Returns ``(values, slices)``: ``values`` is the ``(n, jb-ja, ib-ia)`` float32 probability of the part of
    the liberal square inside the image, and ``slices`` indexes that region of a ``[k, j, i]`` array of
    shape ``image_shape``.
    """
    p = torch.as_tensor(np.asarray(prob, dtype=np.float32)) if isinstance(prob, np.ndarray) else prob.float()
    if p.ndim != 3 or p.shape[0] != lb.num_slices:
        raise InputError(f"expected ({lb.num_slices}, size, size) probabilities, got {tuple(p.shape)}")
    if p.shape[-1] != lb.side:
        p = F.interpolate(p[:, None], size=(lb.side, lb.side), mode="bilinear", align_corners=False,
                          antialias=lb.side < p.shape[-1])[:, 0]
    _, jdim, idim = image_shape
    ja, jb, jo, je = _overlap(lb.j0, lb.side, jdim)
    ia, ib, io, ie = _overlap(lb.i0, lb.side, idim)
    values = p[:, jo:je, io:ie].cpu().numpy()
    return values, (slice(lb.k0, lb.k1 + 1), slice(ja, jb), slice(ia, ib))
