"""The optimiser loops of ``lesionseg train autopet-l2snet`` (:mod:`.train` builds the networks, the data and the
model folder): :class:`LocTrainer` for the 2D localisation net and :class:`SegTrainer` for the 3D nets, each
drawing fresh samples every step (:mod:`.data`) and validating on fixed held-out samples."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ...losses import soft_dice_loss, weighted_bce_with_logits
from ...training import Trainer, TrainConfig
from .data import sample_patch, sample_slice
from .pipeline import NO_CT

DICE_SMOOTH = 1e-5
"""Default eps of the soft Dice (see :mod:`.train`'s docstring)."""


class LocTrainer(Trainer):
    """2D localisation: fresh slices every step (:func:`.data.sample_slice`); validation = Dice of
    ``P_loc > 0.5`` over fixed held-out slices."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, volumes: list, size: tuple[int, int],
                 batch: int, dice_weight: float, validation: list, smooth: float = DICE_SMOOTH) -> None:
        super().__init__(model, config)
        self.volumes, self.size, self.batch, self.dice_weight = volumes, size, batch, dice_weight
        self.validation, self.smooth = validation, smooth

    def train_batches(self, epoch: int) -> Iterable[Any]:
        for _ in range(self.config.steps_per_epoch):
            pairs = [sample_slice(self.volumes, self.size, self.rng) for _ in range(self.batch)]
            yield torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = (t.to(self.config.device) for t in batch)
        logits = self.model(x)[:, 0].float()
        dice = soft_dice_loss(torch.sigmoid(logits), y, eps=self.smooth)
        return F.binary_cross_entropy_with_logits(logits, y) + self.dice_weight * dice

    def validate(self) -> Optional[dict]:
        if not self.validation:
            return None
        x = torch.from_numpy(np.stack([v[0] for v in self.validation])).to(self.config.device)
        y = np.stack([v[1] for v in self.validation]) > 0.5
        pred = (torch.sigmoid(self.model(x)[:, 0]) > 0.5).cpu().numpy()
        return {"score": _dice(pred, y)}


class SegTrainer(Trainer):
    """3D segmentation: fresh patches every step (:func:`.data.sample_patch`), loss weighted by ``1 + P_loc``
    (or 1 when ``use_cue`` is False); with ``ct_dropout`` that share of patches has its CT channel set to
    :data:`~.segmenter.NO_CT` (what the segmenter feeds without a CT); ``hot_probability`` of the patches are
    centred on hot negatives (scaled PET >= ``hot_level`` outside the lesions); validation = Dice of ``P > 0.5``
    over fixed held-out patches, each centred on a lesion voxel when its case has lesions."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, volumes: list, patch: tuple[int, int, int],
                 batch: int, use_cue: bool, dice_weight: float, validation: list,
                 lesion_probability: float = 0.5, smooth: float = DICE_SMOOTH, ct_dropout: float = 0.0,
                 hot_probability: float = 0.0, hot_level: float = 1.0) -> None:
        super().__init__(model, config)
        self.volumes, self.patch, self.batch, self.ct_dropout = volumes, patch, batch, ct_dropout
        self.lesion_probability, self.smooth = lesion_probability, smooth
        self.hot_probability, self.hot_level = hot_probability, hot_level
        self.use_cue, self.dice_weight, self.validation = use_cue, dice_weight, validation

    def train_batches(self, epoch: int) -> Iterable[Any]:
        for _ in range(self.config.steps_per_epoch):
            picks = self.rng.integers(0, len(self.volumes), self.batch)
            samples = [sample_patch(self.volumes[i], self.patch, self.rng, self.lesion_probability, self.use_cue,
                                    self.hot_probability, self.hot_level) for i in picks]
            for sample in samples:  # CT-channel dropout: the PET-only input of the segmenter (NO_CT)
                if self.ct_dropout and self.rng.random() < self.ct_dropout:
                    sample[0][1] = NO_CT
            yield tuple(torch.from_numpy(np.stack([s[n] for s in samples])) for n in range(3))

    def loss(self, batch: Any) -> torch.Tensor:
        x, y, w = (t.to(self.config.device) for t in batch)
        logits = self.model(x)[:, 0].float()
        dice = soft_dice_loss(torch.sigmoid(logits), y, w, eps=self.smooth)
        return weighted_bce_with_logits(logits, y, w) + self.dice_weight * dice

    def validate(self) -> Optional[dict]:
        if not self.validation:
            return None
        pred, truth = [], []
        for image, label, _ in self.validation:
            logits = self.model(torch.from_numpy(image[None]).to(self.config.device))[0, 0]
            pred.append((logits > 0).cpu().numpy())
            truth.append(label > 0.5)
        return {"score": _dice(np.stack(pred), np.stack(truth))}


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool arrays summed over everything (1.0 when both are empty)."""
    total = int(pred.sum() + truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total
