"""The arrays of ``autopet-l2snet`` (:mod:`.segmenter`): its pre-processing settings, the working grid, the scaled
network input (PET-only: the CT channel :data:`NO_CT`), the two networks' maps by sliding window, the label rule
and the way back onto the PET grid. Shared by the segmenter, training (:mod:`.data`, :mod:`.train`) and evaluation;
no model folder, options or registry here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ...errors import InputError
from ...image import Image
from ...inference import inference_context, slice_wise, sliding_window
from ...modelfolder import CardSettings
from ...resample import resample_to_grid, world_bounds

MODES = ("l2snet", "2d", "3d")
CORONAL_AXIS = 1
"""Array axis of the LPS-aligned working grid (``j``, posterior) along which coronal slices are taken."""
NO_CT = 0.0
"""The scaled CT channel's value everywhere when there is no CT (PET-only mode; CT-channel dropout in training)."""
NETWORK_FILES = {"loc": "loc.pt", "seg": "seg.pt", "plain": "seg_plain.pt"}
"""Weight files of a model folder: localisation, cue-weighted 3D net, 3D net trained without the cue (optional)."""
REQUIRED_PREPROCESSING = ("spacing_mm", "pet_window", "ct_window", "loc_size", "seg_patch", "overlap",
                          "cue_threshold", "threshold", "adaptive_threshold")
"""Card ``preprocessing`` entries a model needs; only ``batch_size`` (speed and memory) may be missing."""
PAPER_PREPROCESSING = {"spacing_mm": "native autoPET grid (2.04 x 2.04 x 3 mm)", "loc_size": [320, 384],
                       "seg_patch": [128, 192, 160], "pet_window": [0.0, 15.0], "ct_window": [100.0, 250.0]}
"""The paper's settings as the issue gives them (recorded in model cards beside the ones used)."""


@dataclass(frozen=True)
class L2SPreprocessing(CardSettings):
    """Working grid, intensity scaling, window sizes and thresholds (the model card's ``preprocessing``).

    ``spacing_mm``: isotropic working voxel (mm); ``pet_window`` (SUV) and ``ct_window`` (HU): clipped and
    mapped to 0..1; ``loc_size``: ``(rows, columns)`` = ``(k, i)`` window of the coronal slices (voxels);
    ``seg_patch``: ``(D, H, W)`` = ``(k, j, i)`` 3D window; ``overlap``: sliding-window overlap fraction;
    ``batch_size``: windows per forward pass; ``cue_threshold``: ``P_loc`` above which the cue counts;
    ``threshold``: probability threshold; ``adaptive_threshold``: the threshold where the cue counts;
    ``ct_dropout``: the share of training patches whose CT channel was blanked (set to :data:`NO_CT`) so that the
    3D nets also learnt to work from the PET alone; 0 (models trained before PET-only mode) means the model has
    never seen a PET without its CT and must not be run PET-only.
    """

    spacing_mm: float = 4.0
    pet_window: tuple[float, float] = (0.0, 15.0)
    ct_window: tuple[float, float] = (100.0, 250.0)
    loc_size: tuple[int, int] = (192, 128)
    seg_patch: tuple[int, int, int] = (64, 64, 64)
    overlap: float = 0.5
    batch_size: int = 2
    cue_threshold: float = 0.5
    threshold: float = 0.5
    adaptive_threshold: float = 0.1
    ct_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pet_window", "ct_window"):
            lo, hi = getattr(self, name)
            if not hi > lo:
                raise InputError(f"{name} must be (low, high) with high > low, got {getattr(self, name)}")
        if not self.spacing_mm > 0 or min(self.loc_size) < 8 or min(self.seg_patch) < 8 or self.batch_size < 1:
            raise InputError("spacing_mm must be > 0, loc_size and seg_patch >= 8 voxels and batch_size >= 1")
        if not 0 <= self.overlap < 1 or not 0 < self.adaptive_threshold <= self.threshold < 1:
            raise InputError("need 0 <= overlap < 1 and 0 < adaptive_threshold <= threshold < 1")
        if not 0.0 <= self.ct_dropout < 1.0:
            raise InputError(f"ct_dropout must be in [0, 1), got {self.ct_dropout}")


def scale(array: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """``array`` clipped to ``window = (low, high)`` and mapped linearly to 0..1 (float32, same shape)."""
    lo, hi = float(window[0]), float(window[1])
    return ((np.clip(array.astype(np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def working_grid(image: Image, spacing_mm: float) -> Image:
    """An empty (uint8) LPS-aligned grid of ``spacing_mm`` voxels covering ``image``'s extent (identity
    direction; voxel centres half a voxel inside the extent's lower corner). For an LPS-aligned image of
    that spacing it is the image's own grid."""
    lo, hi = world_bounds(image)
    size = np.maximum(np.ceil((hi - lo) / spacing_mm - 1e-6), 1).astype(int)
    return Image(np.zeros(tuple(size[::-1]), np.uint8), (spacing_mm,) * 3, lo + spacing_mm / 2.0, np.eye(3))


def to_working_grid(pet: Image, ct: Optional[Image], prep: L2SPreprocessing) -> tuple[Image, Optional[Image]]:
    """PET (SUV) and CT (HU) resampled onto :func:`working_grid` of the PET: float32, CT -1000 outside
    (None without a CT)."""
    grid = working_grid(pet, prep.spacing_mm)
    work = resample_to_grid(pet.with_array(pet.array.astype(np.float32)), grid, "linear", 0.0)
    if ct is None:
        return work, None
    return work, resample_to_grid(ct.with_array(ct.array.astype(np.float32)), grid, "linear", -1000.0)


def network_input(pet_work: Image, ct_work: Optional[Image], prep: L2SPreprocessing) -> np.ndarray:
    """``(2, K, J, I)`` float32: the scaled PET and CT of the working grid (the 3D net's channels); without a CT
    (PET-only mode) the CT channel is :data:`NO_CT` everywhere, as in CT-channel dropout in training."""
    pet = scale(pet_work.array, prep.pet_window)
    if ct_work is None:
        return np.stack([pet, np.full_like(pet, NO_CT)])
    return np.stack([pet, scale(ct_work.array, prep.ct_window)])


def location_cue_array(net: torch.nn.Module, pet_scaled: np.ndarray, prep: L2SPreprocessing,
                       device: str = "cpu") -> np.ndarray:
    """``P_loc``: the 2D net's sigmoid on every coronal slice ``pet_scaled[:, j, :]`` of a working-grid PET
    ``(K, J, I)`` (scaled), each slice covered by ``prep.loc_size`` windows; slices whose PET is all 0 get 0.
    Float32 ``(K, J, I)``."""
    def predict(batch: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(net(batch))

    def one_slice(plane: np.ndarray) -> np.ndarray:
        if not plane.any():
            return np.zeros_like(plane, dtype=np.float32)
        return sliding_window(predict, plane[None], prep.loc_size, prep.overlap, batch_size=2 * prep.batch_size,
                              device=device)[0]

    with inference_context():
        return np.asarray(slice_wise(one_slice, pet_scaled, axis=CORONAL_AXIS), dtype=np.float32)


def probability_array(net: torch.nn.Module, volume: np.ndarray, prep: L2SPreprocessing,
                      device: str = "cpu") -> np.ndarray:
    """The 3D net's sigmoid over ``volume`` ``(2, K, J, I)`` by Gaussian sliding window: ``(K, J, I)`` float32."""
    with inference_context():
        out = sliding_window(lambda batch: torch.sigmoid(net(batch)), volume, prep.seg_patch, prep.overlap,
                             batch_size=prep.batch_size, device=device)
    return np.asarray(out[0], dtype=np.float32)


def threshold_maps(prob: Optional[np.ndarray], cue: Optional[np.ndarray], mode: str, adaptive: bool,
                   prep: L2SPreprocessing) -> np.ndarray:
    """The label rule of the module docstring (step 6) on arrays of one grid: bool, the shape of the inputs.

    ``mode`` "2d" needs ``cue``; "3d" needs ``prob``; "l2snet" needs ``prob`` and, when ``adaptive``, ``cue``:
    ``prob > (adaptive_threshold where cue > cue_threshold else threshold)``.
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "2d":
        return cue > prep.cue_threshold
    if mode == "l2snet" and adaptive:
        low, high = np.float32(prep.adaptive_threshold), np.float32(prep.threshold)
        return prob > np.where(cue > prep.cue_threshold, low, high)
    return prob > prep.threshold


def _on_grid(array: np.ndarray, work: Image, target: Image, units: str) -> Image:
    """A working-grid float map resampled linearly onto ``target``'s grid (0 outside), meta ``units`` only."""
    back = resample_to_grid(Image(array, work.spacing, work.origin, work.direction), target, "linear", 0.0)
    return Image(back.array.astype(np.float32), target.spacing, target.origin, target.direction, {"units": units})
