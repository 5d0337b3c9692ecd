"""``lesionseg train small-lesion-il --data DIR -o MODEL``: one variant of the paper's ablation (Table 1).

The recipe of arXiv 2207.14700, kept where two CPU cores allow it:

* 3D U-Net, channels (8, 16, 32, 64), 3x3x3 convolutions, GroupNorm between convolution and ReLU, 1x1x1
  head; the variant (``--variant``) sets its channels (:data:`.segmenter.CHANNELS`);
* loss ``L = GDL(channel 0, lesion) + il_weight * BCE(sigmoid(channel 1), Y_IL)`` with the two-class
  generalized Dice loss of Sudre et al. 2017 and the soft target ``Y_IL = L(smoothed HU)``;
* AdamW, lr 3e-4, weight decay 5e-4, batch 1 (``--batch-size``), sub-volumes that each contain at least one
  lesion voxel, augmented by a rotation of 180 degrees about z (``np.rot90(k=2)`` over the rows and columns) with
  probability 0.5;
* the intensity prior is fitted on the **training cases only** (:meth:`.prior.IntensityPrior.fit`) and
  stored beside the weights as ``prior.json`` (``seg+il-shifted`` stores the unshifted prior and
  ``prior_shift_hu: 100`` in the card; its target uses the shifted one).

Changed for the CPU: 64^3 sub-volumes (``--patch``; the paper 224^3), a wall-clock budget (``--minutes``)
with poly decay instead of an iteration count. A fresh network's lesion logit starts with the bias
``log(0.01 / 0.99)`` (Lin et al. 2017's prior-probability initialisation): from the default ``P = 0.5``
everywhere, the generalized Dice loss's gradient on the background is tiny (its denominator is dominated by
``sum P`` over the 0.1 %-lesion sub-volume), and 527 CPU steps (6 min) left ``P`` at 0.6 everywhere.

Data: any dataset in the convention (:mod:`lesionseg.data`) with a CT channel and a lesion label (``--labels``
maps other label names onto ``lesion``); ``lesionseg data synthetic small-lesion-il`` writes the phantom cohort.
The split is the common one (``--folds K --fold F``, or ``--val-fraction``; patients are kept together) and
is recorded in the card for :mod:`.evaluate`. The budget is ``--minutes`` (default :data:`DEFAULT_MINUTES`);
checkpoints go to ``OUT.checkpoints/unet.ckpt`` (``--resume`` continues them) and are removed once the model is
saved. ``--init MODEL`` continues a model of the same variant, network and held-out cases.

Real CT (issue #18): ``--negatives DIR`` (repeatable) adds every channel of every case of a dataset of real CT
without small lesions (:mod:`lesionseg.data.negatives`): lesion target 0 everywhere, the dataset's own labelled
lesions and a 5 mm margin left out of both losses (:data:`~lesionseg.data.negatives.IGNORE`), the likelihood
target computed from its intensities as for the training cases, sub-volumes placed anywhere in the body
(:func:`negative_volume`). A sub-volume comes from them with probability ``--negative-share``
(``--exclude-negatives NAME`` leaves cases or patients out, e.g. the scans tested on). ``--intensity-augment P``
perturbs the CT channel of a sub-volume in contrast, brightness, gamma, sharpness and noise with probability
``P`` (:func:`lesionseg.methods.s4c.augment.intensity_augment`, its HU sizes kept on this method's 600 HU window).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ...card import ModelCard
from ...data.labels import apply as apply_labels
from ...data.negatives import IGNORE, NegativeChannel, describe_negatives, iter_negatives
from ...errors import InputError
from ...image import Image
from ...losses import generalized_dice_loss, weighted_bce_with_logits
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...nets.unet import UNet, set_prior_probability
from ...options import option
from ...registry import resolve_device
from ...repeatable import NegativesSettings
from ...resample import resample_to_grid
from ...train_job import Training, TrainJob
from ...training import Trainer, TrainConfig
from ..s4c.augment import intensity_augment
from .prior import IntensityPrior
from .segmenter import CHANNELS, METHOD, SmallLesionPreprocessing, normalise, to_working_grid

log = logging.getLogger(__name__)
SHIFT_HU = 100.0
"""The prior shift of ``seg+il-shifted`` (the paper's +100 HU)."""
PAPER_CHANNELS = (8, 16, 32, 64)
PRIOR_PROBABILITY = 0.01
"""Initial lesion probability of a fresh network: the bias of its lesion logit (see :func:`train`)."""
DEFAULT_MINUTES = 10.0
"""The wall-clock budget without ``--minutes``."""
WEIGHT_DECAY = 5e-4
BODY_LATTICE = 4
"""A negative volume's sub-volumes are placed around its body voxels on this lattice (working voxels)."""


def prior_json_text(prior: IntensityPrior) -> str:
    """The text :meth:`.prior.IntensityPrior.save` writes (to store it inside a model folder written in one go)."""
    return json.dumps(prior.to_dict()) + "\n"


@dataclass(frozen=True)
class SmallLesionTrainSettings(NegativesSettings):
    """The method's own flags of ``lesionseg train small-lesion-il`` (the common ones are
    :class:`lesionseg.train_job.CommonTrainSettings`; the real-CT negatives ones
    :class:`lesionseg.repeatable.NegativesSettings`)."""

    variant: str = option("seg+il", "ablation variant (seg+il is the proposed method)", choices=tuple(CHANNELS))
    patch: tuple[int, int, int] = option((64, 64, 64), "training sub-volume in working voxels (default 64 64 64; "
                                                       "the paper 224^3)", metavar=("D", "H", "W"))
    infer_patch: tuple[int, int, int] = option((128, 128, 128), "sliding-window size stored for inference (default "
                                                                "128 128 128)", metavar=("D", "H", "W"))
    overlap: float = option(0.25, "sliding-window overlap stored for inference")
    il_weight: float = option(1.0, "lambda of the likelihood loss (BCE on channel 1)")
    lr: float = option(3e-4, "AdamW learning rate (poly decay over the budget)")
    batch_size: int = option(1, "sub-volumes per step")
    spacing: float = option(1.0, "isotropic working voxel", unit="mm")
    channels: tuple[int, ...] = option(PAPER_CHANNELS, "feature maps per U-Net level (default the paper's 8 16 32 "
                                                       "64)", metavar="N")
    steps_per_epoch: int = option(25, "steps between log lines (and checkpoint chances)")
    fp32: bool = option(False, "store float32 weights (default float16)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr > 0 or not self.spacing > 0 or self.il_weight < 0 or self.steps_per_epoch < 1:
            raise InputError(f"{self.flag('lr')}, {self.flag('spacing')} and {self.flag('steps_per_epoch')} must "
                             f"be > 0 and {self.flag('il_weight')} >= 0")
        if self.batch_size < 1:
            raise InputError(f"{self.flag('batch_size')} must be >= 1, got {self.batch_size}")
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise InputError(f"{self.flag('channels')} needs at least two positive feature counts, got "
                             f"{list(self.channels)}")
        if min(self.patch) < 8 or min(self.infer_patch) < 8:
            raise InputError(f"{self.flag('patch')} and {self.flag('infer_patch')} need at least 8 voxels per axis, "
                             f"got {list(self.patch)}, {list(self.infer_patch)}")
        if not 0 <= self.overlap < 1:
            raise InputError(f"{self.flag('overlap')} must be in [0, 1), got {self.overlap}")


@dataclass
class TrainVolume:
    """One training case on the working grid: ``x`` ``(C, K, J, I)`` float32 network input, ``y`` ``(K, J, I)``
    uint8 lesion mask (:data:`~lesionseg.data.negatives.IGNORE` on voxels the loss leaves out), ``il``
    ``(K, J, I)`` float32 likelihood target (None when unused), ``lesion`` ``(N, 3)`` ``(k, j, i)`` indices of the
    voxels a sub-volume is placed around: the lesion voxels, or a negative volume's body voxels
    (:func:`negative_volume`). Every array is at least the patch size (zero-padded)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    il: Optional[np.ndarray]
    lesion: np.ndarray


def load_volume(name: str, ct: Image, label: Image, variant: str, prior: IntensityPrior,
                prep: SmallLesionPreprocessing, patch: tuple[int, int, int]) -> Optional[TrainVolume]:
    """A case on the working grid as :class:`TrainVolume` (None, logged, when no lesion voxel survives the
    resampling). ``prior`` is the one the variant uses (already shifted for ``seg+il-shifted``)."""
    work = to_working_grid(ct, prep.spacing_mm)
    mask = resample_to_grid(label.with_array((label.array > 0).astype(np.float32)), work, "linear", 0.0)
    y = (mask.array >= 0.5).astype(np.uint8)
    if not y.any():
        log.warning("%s: no lesion voxel on the %.2f mm working grid; case skipped", name, prep.spacing_mm)
        return None
    return _padded_volume(name, work, y, variant, prior, prep, patch, np.argwhere(y))


def _padded_volume(name: str, work: Image, y: np.ndarray, variant: str, prior: IntensityPrior,
                   prep: SmallLesionPreprocessing, patch: tuple[int, int, int], centres: np.ndarray) -> TrainVolume:
    """The :class:`TrainVolume` of the working-grid CT ``work`` (HU) and its target ``y`` (``work``'s shape):
    the network input and likelihood target of ``variant``, everything zero-padded up to ``patch``."""
    channels = [normalise(work.array, prep.window_hu)]
    likelihood = prior.likelihood(prior.smooth(work).array) if variant != "seg" else None
    if variant == "seg+il-in":
        channels.append(likelihood)
    pad = [(0, max(p - s, 0)) for p, s in zip(patch, y.shape)]
    x = np.pad(np.stack(channels), [(0, 0), *pad])
    il = np.pad(likelihood, pad) if CHANNELS[variant][1] == 2 else None
    return TrainVolume(name, x, np.pad(y, pad), il, centres)


def negative_volume(item: NegativeChannel, variant: str, prior: IntensityPrior, prep: SmallLesionPreprocessing,
                    patch: tuple[int, int, int]) -> Optional[TrainVolume]:
    """A channel of a negatives dataset (already on the working grid, :func:`lesionseg.data.negatives.
    iter_negatives`) as a :class:`TrainVolume`: ``y`` 0, or :data:`~lesionseg.data.negatives.IGNORE` on its
    ignore mask; ``il`` as for a training case (a property of the intensities); sub-volumes placed around the
    body voxels (above ``prep.body_hu``) on a :data:`BODY_LATTICE` lattice. None (logged) without body voxels."""
    body = item.image.array > prep.body_hu
    centres = np.argwhere(body[::BODY_LATTICE, ::BODY_LATTICE, ::BODY_LATTICE]) * BODY_LATTICE
    if not len(centres):
        log.warning("%s: no voxel above %g HU (body); negative skipped", item.name, prep.body_hu)
        return None
    y = np.where(item.ignore, IGNORE, 0).astype(np.uint8)
    return _padded_volume(item.name, item.image, y, variant, prior, prep, patch, centres)


def sample_patch(volume: TrainVolume, patch: tuple[int, int, int], rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A ``patch`` sub-volume holding a random voxel of ``volume.lesion`` (uniformly placed in it), rotated by
    180 degrees about z (rows and columns reversed) with probability 0.5: ``(x, y, il)`` contiguous."""
    centre = volume.lesion[rng.integers(len(volume.lesion))]
    start = [int(np.clip(c - rng.integers(0, p), 0, s - p)) for c, p, s in zip(centre, patch, volume.y.shape)]
    box = tuple(slice(a, a + p) for a, p in zip(start, patch))
    x, y = volume.x[(slice(None), *box)], volume.y[box]
    il = volume.il[box] if volume.il is not None else None
    if rng.random() < 0.5:
        x, y = np.rot90(x, 2, axes=(-2, -1)), np.rot90(y, 2, axes=(-2, -1))
        il = np.rot90(il, 2, axes=(-2, -1)) if il is not None else None
    return np.ascontiguousarray(x), np.ascontiguousarray(y), None if il is None else np.ascontiguousarray(il)


class SmallLesionTrainer(Trainer):
    """Fresh sub-volumes each step; generalized Dice + ``il_weight`` x BCE on channel 1.

    ``train_batches`` is endless (``TrainConfig.steps_per_epoch`` cuts each epoch); a batch stacks
    ``batch_size`` sub-volumes of cases drawn with replacement: from ``negatives`` with probability
    ``negative_share`` (when there are any), else from ``volumes``; then, with probability ``augment``, the CT
    channel (0) is perturbed in intensity (:func:`lesionseg.methods.s4c.augment.intensity_augment` with
    ``hu_per_unit``, the window's width; the likelihood target stays that of the true intensities). Without
    negatives and augmentation the random draws are those of earlier versions (same seed, same sub-volumes).
    Voxels of :data:`~lesionseg.data.negatives.IGNORE` count in neither loss (:meth:`loss`)."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, volumes: list[TrainVolume],
                 patch: tuple[int, int, int], batch_size: int = 1, il_weight: float = 1.0,
                 negatives: Sequence[TrainVolume] = (), negative_share: float = 0.0, augment: float = 0.0,
                 hu_per_unit: float = 600.0) -> None:
        super().__init__(model, config)
        self.volumes, self.patch = volumes, tuple(patch)
        self.batch_size, self.il_weight = int(batch_size), float(il_weight)
        self.negatives, self.negative_share = list(negatives), float(negative_share)
        self.augment, self.hu_per_unit = float(augment), float(hu_per_unit)

    def _sample(self) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """One ``(x, y, il)`` sub-volume (see the class docstring)."""
        pool = self.negatives if self.negatives and self.rng.random() < self.negative_share else self.volumes
        x, y, il = sample_patch(pool[self.rng.integers(len(pool))], self.patch, self.rng)
        if self.augment > 0 and self.rng.random() < self.augment:
            x = x.copy()
            x[0] = intensity_augment(x[0], self.rng, self.hu_per_unit)
        return x, y, il

    def train_batches(self, epoch: int) -> Iterable[Any]:
        while True:
            samples = [self._sample() for _ in range(self.batch_size)]
            x, y, il = (None if s[0] is None else np.stack(s) for s in zip(*samples))
            yield (torch.from_numpy(x), torch.from_numpy(y[:, None]),
                   None if il is None else torch.from_numpy(il[:, None]))

    def loss(self, batch: Any) -> torch.Tensor:
        """The loss of ``(x, y, il)``; voxels where ``y`` is :data:`~lesionseg.data.negatives.IGNORE` are left
        out of the generalized Dice (:func:`lesionseg.losses.generalized_dice_loss` with a mask) and of the BCE
        (mean over the voxels that count; 0 when none does)."""
        x, y, il = (None if t is None else t.to(self.config.device) for t in batch)
        logits = self.model(x)
        valid = y != IGNORE
        if bool(valid.all()):
            loss = generalized_dice_loss(logits[:, :1], y)
            if logits.shape[1] > 1:
                loss = loss + self.il_weight * F.binary_cross_entropy_with_logits(logits[:, 1:], il)
            return loss
        weight = valid.to(logits.dtype)
        loss = generalized_dice_loss(logits[:, :1], torch.where(valid, y, torch.zeros_like(y)), mask=weight)
        if logits.shape[1] > 1 and bool(valid.any()):
            loss = loss + self.il_weight * weighted_bce_with_logits(logits[:, 1:], il, weight)
        return loss


def _initial_weights(net: torch.nn.Module, path: Path, variant: str, held_out: Iterable[str]) -> dict:
    """Load ``path``'s weights into ``net`` after checking they fit this run; returns the card's record."""
    base = load_model_folder(path, METHOD)
    base.require("training", "the training record with the held-out cases")
    if base.card.get("variant") != variant or base.network_spec("weights.pt")[1] != net.config:
        raise InputError(f"{path} is a {base.card.get('variant')} model with another network; --init needs the "
                         f"same variant ({variant}) and --channels")
    if sorted(base.model_card.held_out_cases) != sorted(held_out):
        raise InputError(f"{path} held out other cases than this run; continuing it would leak them")
    base.load_network("weights.pt", lambda: net)
    return {"folder": str(path), "command": base.card["training"].get("command"),
            "steps": base.card["training"].get("steps"), "minutes": base.card["training"].get("minutes")}


def _read_case(case, label_map) -> tuple[Image, Image]:
    """``(CT, lesion mask)`` of a dataset case, its label mapped onto (background, lesion)."""
    ct, label = case.read_images()[0], case.read_label()
    return ct, label.with_array((apply_labels(label.array, label_map) > 0).astype(np.uint8))


def _negatives(job: TrainJob, prior: IntensityPrior, prep: SmallLesionPreprocessing,
               patch: tuple[int, int, int]) -> tuple[list[TrainVolume], Optional[dict]]:
    """The ``--negatives`` volumes (:func:`negative_volume`) and the card's record of them (None without)."""
    s = job.settings
    roots, exclude = list(s.negatives or ()), list(s.exclude_negatives or ())
    if not roots:
        return [], None
    items = iter_negatives(roots, lambda ct: to_working_grid(ct, prep.spacing_mm), exclude,
                           training=Path(job.dataset.root))
    volumes = [v for v in (negative_volume(item, s.variant, prior, prep, patch) for item in items) if v is not None]
    if not volumes:
        raise InputError(f"--negatives: no case of {', '.join(str(r) for r in roots)} has a body voxel")
    return volumes, describe_negatives(roots, [v.name for v in volumes], exclude, s.negative_share)


def train(job: TrainJob) -> ModelFolder:
    """Train ``job.settings.variant`` on the job's training cases and write the model folder ``job.output``
    (atomically; the checkpoints are removed once it is saved)."""
    s, common = job.settings, job.common
    cases = job.train_cases()
    if not cases:
        raise InputError("no training case is left after holding out the validation cases")
    minutes = float(common.minutes if common.minutes is not None else DEFAULT_MINUTES)
    prep = SmallLesionPreprocessing(spacing_mm=float(s.spacing), patch=tuple(s.infer_patch), overlap=float(s.overlap))
    in_channels, out_channels = CHANNELS[s.variant]
    net = UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, channels=list(s.channels),
               norm="group")
    initialised_from = _initial_weights(net, common.init, s.variant, job.split.held_out) if common.init else None
    if common.init is None:  # start at P = 0.01, not 0.5: see the module docstring
        set_prior_probability(net.head, PRIOR_PROBABILITY)
    read = [_read_case(c, job.label_map) for c in cases]
    prior = IntensityPrior.fit([r[0] for r in read], [r[1] for r in read], seed=common.seed,
                               names=[c.name for c in cases])
    target_prior = prior.shifted(SHIFT_HU) if s.variant == "seg+il-shifted" else prior
    patch = tuple(int(p) for p in s.patch)
    loaded = [load_volume(c.name, ct, lab, s.variant, target_prior, prep, patch) for c, (ct, lab) in zip(cases, read)]
    volumes = [v for v in loaded if v is not None]
    del read, loaded
    if not volumes:
        raise InputError("no training case has a lesion voxel on the working grid")
    negatives, negatives_record = _negatives(job, target_prior, prep, patch)
    log.info("%s %s: %d training volumes (%d held out), %d negative volumes; prior %s", METHOD, s.variant,
             len(volumes), len(job.split.held_out), len(negatives), prior.describe())
    config = TrainConfig(epochs=None, lr=float(s.lr), weight_decay=WEIGHT_DECAY, optimizer="adamw", schedule="poly",
                         seed=common.seed, device=resolve_device(common.device), keep="last", max_minutes=minutes,
                         steps_per_epoch=s.steps_per_epoch, progress=job.progress,
                         checkpoint_path=job.checkpoint("unet"), checkpoint_minutes=common.checkpoint_minutes,
                         resume=common.resume)
    window = prep.window_hu[1] - prep.window_hu[0]
    result = SmallLesionTrainer(net, config, volumes, patch, s.batch_size, s.il_weight, negatives=negatives,
                                negative_share=s.negative_share, augment=s.intensity_augment,
                                hu_per_unit=window).fit()
    losses = [h["loss"] for h in result.history if h["steps"]]  # epoch means; an epoch cut at 0 steps has none
    text = prior_json_text(prior)
    extra = {"variant": s.variant,
             "prior": {"file": "prior.json", **prior.describe(),
                       "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}}
    if s.variant == "seg+il-shifted":
        extra["prior_shift_hu"] = SHIFT_HU
    training = job.training_record(
        trained_cases=[v.name for v in volumes], patch=list(patch), batch_size=s.batch_size,
        augmentation="rotation by 180 deg about z, p = 0.5" + (
            f"; intensity (contrast, brightness, gamma, blur, noise), p = {s.intensity_augment:g}"
            if s.intensity_augment > 0 else ""),
        negatives=negatives_record, intensity_augment=float(s.intensity_augment),
        loss="generalized Dice (2 classes)" + (f" + {s.il_weight:g} x BCE(likelihood)" if out_channels == 2 else ""),
        steps=result.steps, minutes=round(result.minutes, 2), resumed=result.resumed, config=config.to_dict(),
        loss_first_last=[round(losses[0], 4), round(losses[-1], 4)] if losses else None,
        initialised_from=initialised_from,
        initial_lesion_probability=PRIOR_PROBABILITY if common.init is None else None)
    card = ModelCard(method=METHOD, networks={"weights.pt": {"class": "UNet", "kwargs": net.config, "parameters": int(
        sum(p.numel() for p in net.parameters()))}}, preprocessing=prep.to_dict(),
        labels={"background": 0, "lesion": 1}, training=training, extra=extra)
    save_model_folder(job.output, card, {"weights.pt": result.state}, fp16=not s.fp32, overwrite=job.overwrite,
                      extra_files={"prior.json": text})
    if job.checkpoints.is_dir():
        shutil.rmtree(job.checkpoints)
    log.info("%s %s: %d steps in %.1f min, loss %s", METHOD, s.variant, result.steps, result.minutes,
             training["loss_first_last"])
    return load_model_folder(job.output, METHOD)


TRAINING = Training(settings=SmallLesionTrainSettings, train=train)
"""The spec's training entry (``training="lesionseg.methods.smalllesion.train:TRAINING"``)."""
