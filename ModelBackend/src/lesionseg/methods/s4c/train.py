"""``lesionseg train s4c --data DATASET -o MODEL``: train the S4C network on a dataset of CT phases.

The paper's recipe (Zhu et al.), kept where two CPU cores allow it:

* voxel-wise softmax cross-entropy on the main output and two deep-supervision outputs with weights
  aux1 : aux2 : main = 1 : 2 : 5 (the paper does not say which auxiliary is which; here the coarser, 1/4
  resolution head gets 1 and the 1/2 resolution head 2), normalised by their sum;
* 64^3 patches, augmented by 90/180/270-degree rotations and flips on all three axes (kept);
* SGD, base learning rate 0.01 with poly decay (power 0.9) over the budget, momentum 0.9 (Nesterov), weight
  decay 5e-4.

Changed for the CPU (a budget of minutes instead of the paper's days):

* batch 2 instead of 16 (``--batch-size``), a wall-clock budget (``--minutes``, default 10) instead of an
  iteration count, and 48^3 training patches (``--train-patch``; inference keeps 64^3 windows, the network is fully
  convolutional);
* patches centred on a voxel of a class drawn with probabilities background 0.25, pancreas 0.25, tumour
  0.3, duct 0.2 (the paper samples the whole volume; 5-20 mm tumours would then rarely be seen);
* **the loss**: with the paper's plain cross-entropy and SGD, 11 CPU minutes (881 steps) learnt the pancreas
  (held-out DSC 0.67) but never the tumour or the duct -- the mean tumour probability inside tumours stayed
  at 0.03 even on training cases, because they are 0.1-0.2 % of a patch. Each output's loss is therefore
  class-weighted cross-entropy (``--class-weights``, default 1 1 4 4) plus a soft Dice loss over the
  foreground classes present in the batch (:func:`lesionseg.losses.multiclass_soft_dice_loss` with ``eps=1``
  and the ignored voxels left out), and the optimiser is AdamW (``--lr`` 1e-3, weight decay 5e-4, poly decay).
  ``--paper-loss`` restores plain cross-entropy with SGD (lr 0.01, momentum 0.9) for comparison;
* **per-phase visibility**: the cases carry one label for both phases, but a tumour that a phase shows
  iso-dense is not labelled there for the loss (:func:`.data.hide_invisible_tumours`, |mean HU - pancreas
  around it| < 25 HU -> ignored). With the shared label the network learnt no tumour at all (tumour
  probability 0.01-0.04 inside tumours, training cases included). ``--keep-invisible`` turns this off.

One network serves every phase: each channel of each training case (venous and arterial in the synthetic
dataset, the one CT of MSD Task07) is a sample (:mod:`.data`). The common flags (:mod:`lesionseg.train_job`)
split the data: ``--folds K --fold I`` holds fold ``I`` out, stratified by verdict (tumour or duct in the
label, :func:`.data.positive`), and the card records it for ``lesionseg evaluate s4c``'s cross-validation;
``--init MODEL`` continues an s4c model: one trained on the same dataset only when it held out the same cases
(the recipe of ``scripts/s4c_fold.sh`` chains three runs this way), one of another dataset always (fine-tuning
the shipped model on a new cohort; the card says so); ``--resume`` continues an interrupted run from its
checkpoint.

Real CT (issue #18): ``--negatives DIR`` (repeatable) adds every channel of every case of a dataset of CT without
pancreas tumours as a sample whose target is background, its own labelled lesions ignored (:mod:`.negatives`);
each patch comes from them with probability ``--negative-share``. ``--intensity-augment P`` perturbs a patch's
contrast, brightness, gamma, sharpness and noise with probability ``P`` (:mod:`.augment`).
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ...card import ModelCard
from ...errors import InputError
from ...losses import multiclass_soft_dice_loss
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...options import option
from ...registry import resolve_device
from ...repeatable import NegativesSettings
from ...train_job import TrainJob, Training
from ...training import Trainer, TrainConfig
from .augment import intensity_augment
from .data import IGNORE, Volume, load_volumes, positive, sample_patch
from .negatives import describe_negatives, load_negative_volumes
from .network import S4CNet
from .rules import LABELS, ScreeningRule
from .segmenter import S4CPreprocessing

log = logging.getLogger(__name__)
DEEP_SUPERVISION_WEIGHTS = (5.0, 2.0, 1.0)
"""Loss weights of the outputs ``[main, aux 1/2 resolution, aux 1/4 resolution]`` (paper 5 : 2 : 1)."""
DEFAULT_MINUTES = 10.0
"""Training budget when ``--minutes`` is not given."""
CLASS_METAVAR = ("BG", "PANCREAS", "TUMOUR", "DUCT")


@dataclass(frozen=True)
class S4CTrainSettings(NegativesSettings):
    """The method's own flags of ``lesionseg train s4c`` (the common ones are in
    :class:`lesionseg.train_job.CommonTrainSettings`); ``--negatives`` and ``--exclude-negatives`` may be
    repeated, the values adding up (:class:`lesionseg.repeatable.NegativesSettings`)."""

    batch_size: int = option(2, "patches per step (paper 16)")
    lr: Optional[float] = option(None, "base learning rate (default 1e-3 with AdamW; 0.01 with SGD and "
                                       "--paper-loss, as the paper)")
    patch: int = option(64, "inference window edge (paper 64)", unit="voxels")
    train_patch: int = option(48, "training patch edge", unit="voxels")
    class_weights: tuple[float, float, float, float] = option((1.0, 1.0, 4.0, 4.0), "cross-entropy class weights "
                                                              "(default 1 1 4 4)", metavar=CLASS_METAVAR)
    class_probs: tuple[float, float, float, float] = option((0.25, 0.25, 0.3, 0.2), "probability of centring a "
                                                            "patch on each class (default 0.25 0.25 0.3 0.2)",
                                                            metavar=CLASS_METAVAR)
    keep_invisible: bool = option(False, "train on tumours also in the phase where they are iso-dense "
                                         "(docs/s4c.md)")
    paper_loss: bool = option(False, "plain cross-entropy and SGD as in the paper (learns no tumour in a CPU "
                                     "budget)")
    channels: tuple[int, int, int, int] = option((8, 16, 32, 64), "feature maps of the four network levels "
                                                 "(default 8 16 32 64)", metavar=("C1", "C2", "C3", "C4"))
    spacing: float = option(1.5, "isotropic working voxel", unit="mm")
    steps_per_epoch: int = option(50, "steps between log lines")
    fp32: bool = option(False, "store float32 weights (default float16)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise InputError(f"{self.flag('batch_size')} must be >= 1, got {self.batch_size}")
        if min(self.patch, self.train_patch) < 16:
            raise InputError(f"{self.flag('patch')} and {self.flag('train_patch')} must be >= 16 voxels")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"{self.flag('lr')} must be > 0, got {self.lr}")
        if min(self.class_weights) < 0 or min(self.class_probs) < 0 or not sum(self.class_probs) > 0:
            raise InputError(f"{self.flag('class_weights')} and {self.flag('class_probs')} must be >= 0 "
                             f"({self.flag('class_probs')} not all 0)")
        if min(self.channels) < 1:
            raise InputError(f"{self.flag('channels')} must be positive, got {list(self.channels)}")
        if not self.spacing > 0 or self.steps_per_epoch < 1:
            raise InputError(f"{self.flag('spacing')} must be > 0 and {self.flag('steps_per_epoch')} >= 1")


class S4CTrainer(Trainer):
    """Patches sampled afresh each step; loss of :data:`DEEP_SUPERVISION_WEIGHTS`.

    Each patch comes from ``negatives`` with probability ``negative_share`` (when there are any), else from
    ``volumes``; then, with probability ``augment``, its intensities are perturbed
    (:func:`.augment.intensity_augment`).
    Without negatives and augmentation the random draws are those of earlier versions (same seed, same patches).
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, volumes: list, patch: int, batch: int,
                 steps: int, class_weights: Optional[Sequence[float]] = None, dice: bool = True,
                 class_probs: Sequence[float] = (0.25, 0.25, 0.3, 0.2), negatives: Sequence[Volume] = (),
                 negative_share: float = 0.0, augment: float = 0.0) -> None:
        super().__init__(model, config)
        self.class_probs = tuple(class_probs)
        self.volumes, self.patch, self.batch, self.steps = volumes, patch, batch, steps
        self.weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32,
                                                                        device=config.device)
        self.dice = dice
        self.negatives, self.negative_share, self.augment = list(negatives), float(negative_share), float(augment)

    def _pair(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(image (1, p, p, p) float32, label (p, p, p) int64)`` training pair (see the class docstring)."""
        pool = self.negatives if self.negatives and self.rng.random() < self.negative_share else self.volumes
        img, lab = sample_patch(pool[int(self.rng.integers(0, len(pool)))], self.patch, self.rng, self.class_probs)
        if self.augment > 0 and self.rng.random() < self.augment:
            img = intensity_augment(img, self.rng)
        return img, lab

    def train_batches(self, epoch: int) -> Iterable[Any]:
        for _ in range(self.steps):
            if self.negatives or self.augment > 0:
                pairs = [self._pair() for _ in range(self.batch)]
            else:
                picks = self.rng.integers(0, len(self.volumes), self.batch)
                pairs = [sample_patch(self.volumes[i], self.patch, self.rng, self.class_probs) for i in picks]
            yield (torch.from_numpy(np.stack([p[0] for p in pairs])),
                   torch.from_numpy(np.stack([p[1] for p in pairs])))

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = (t.to(self.config.device) for t in batch)
        outputs = self.model(x)
        total = sum(w * self._one(o, y) for w, o in zip(DEEP_SUPERVISION_WEIGHTS, outputs))
        return total / sum(DEEP_SUPERVISION_WEIGHTS)

    def _one(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Class-weighted cross-entropy plus (unless the paper's loss) the soft Dice of the foreground classes
        present in the batch's target, ignored voxels counting for nothing (``lesionseg.losses``: classes absent
        from the target are left out on purpose; their Dice ``eps / (sum p + eps)`` punishes any probability
        mass anywhere, which, measured, kept the tumour probability at 0.005 inside training tumours after 3,700
        steps while a few dozen steps on a handful of batches could raise it to 0.4). A batch whose every voxel
        is ignored (patches inside a large lesion of ``--negatives``) counts 0 rather than cross-entropy's NaN,
        which would stop the training."""
        if not bool((target != IGNORE).any()):
            return logits.sum() * 0.0
        loss = F.cross_entropy(logits, target, weight=self.weights, ignore_index=IGNORE)
        if self.dice:
            loss = loss + multiclass_soft_dice_loss(logits, target, eps=1.0, ignore_index=IGNORE)
        return loss


def _same_dataset(record: dict, job: TrainJob) -> bool:
    """Whether a base model's training ``record`` names this job's dataset: the same folder (``"data"``) or the
    same dataset name (``"dataset"``). A record naming neither counts as the same dataset (the strict check)."""
    data, name = record.get("data"), record.get("dataset")
    if data is None and name is None:
        return True
    same_folder = data is not None and Path(str(data)).resolve() == Path(job.dataset.root).resolve()
    return same_folder or (name is not None and str(name) == job.dataset.name)


def _initial_network(job: TrainJob, settings: S4CTrainSettings) -> tuple[S4CNet, Optional[dict]]:
    """A fresh network, or with ``--init`` the weights of an s4c model, and the record of where it came from.

    A base trained on this job's dataset (:func:`_same_dataset`) must have held out the same cases: continuing
    one that held out others would leak them into this run's held-out evaluation. A base of another dataset
    may be continued (fine-tuning on a new cohort); the record says so (``"same_dataset": false``).
    """
    init = job.common.init
    if init is None:
        return S4CNet(in_channels=1, out_channels=len(LABELS), channels=list(settings.channels)), None
    base = load_model_folder(init, "s4c")
    record = base.require("training", "the training record with the held-out cases")
    same = _same_dataset(record, job)
    if same and sorted(record.get("held_out_cases") or []) != sorted(job.split.held_out):
        raise InputError(f"{init} was trained on this dataset ({job.dataset.name}) holding out other cases than "
                         f"this run; continuing it would leak them")
    if not same:
        log.info("s4c: fine-tuning %s, trained on another dataset (%s)", init, record.get("dataset"))
    kwargs = base.network_spec("weights.pt")[1]
    net = base.load_network("weights.pt", lambda: S4CNet(**kwargs))
    return net, {"folder": str(init), "command": record.get("command"), "steps": record.get("steps"),
                 "minutes": record.get("minutes"), "data": record.get("data"), "dataset": record.get("dataset"),
                 "same_dataset": same,
                 "note": ("continued on the dataset it was trained on, with the same held-out cases" if same else
                          "fine-tuned from a model of another dataset")}


def _negatives(job: TrainJob, settings: S4CTrainSettings,
               prep: S4CPreprocessing) -> tuple[list[Volume], Optional[dict]]:
    """The ``--negatives`` volumes (:func:`.negatives.load_negative_volumes`) and the card's record of them
    (None without negatives). A negatives folder that is the training dataset itself is an :class:`InputError`
    (its tumours would be called background)."""
    roots = list(settings.negatives or ())
    if not roots:
        return [], None
    exclude = list(settings.exclude_negatives or ())
    volumes = load_negative_volumes(roots, prep, exclude, training=job.dataset.root)
    return volumes, describe_negatives(roots, volumes, exclude, settings.negative_share)


def train(job: TrainJob) -> ModelFolder:
    """Train on ``job``'s training cases and write its model folder (see the module docstring)."""
    settings: S4CTrainSettings = job.settings
    minutes = job.common.minutes if job.common.minutes is not None else DEFAULT_MINUTES
    train_cases = job.train_cases()
    # the paper's 20-voxel stride, or the window edge when a (test-sized) window is smaller than that
    prep = S4CPreprocessing(spacing_mm=float(settings.spacing), patch=int(settings.patch),
                            stride=min(S4CPreprocessing.stride, int(settings.patch)))
    net, initialised_from = _initial_network(job, settings)
    negatives, negatives_record = _negatives(job, settings, prep)
    volumes = load_volumes(train_cases, job.label_map, prep, hide_invisible=not settings.keep_invisible)
    log.info("s4c: %d training volumes from %d cases (%d held out), %d negative volumes", len(volumes),
             len(train_cases), len(job.split.held_out), len(negatives))
    lr = settings.lr if settings.lr is not None else (0.01 if settings.paper_loss else 1e-3)
    config = TrainConfig(epochs=None, max_minutes=minutes, lr=lr, weight_decay=5e-4,
                         optimizer="sgd" if settings.paper_loss else "adamw", schedule="poly", seed=job.common.seed,
                         device=resolve_device(job.common.device), keep="last", progress=job.progress,
                         checkpoint_path=job.checkpoint("seg"), checkpoint_minutes=job.common.checkpoint_minutes,
                         resume=job.common.resume)
    result = S4CTrainer(net, config, volumes, settings.train_patch, settings.batch_size, settings.steps_per_epoch,
                        None if settings.paper_loss else settings.class_weights, dice=not settings.paper_loss,
                        class_probs=settings.class_probs, negatives=negatives,
                        negative_share=settings.negative_share, augment=settings.intensity_augment).fit()
    card = ModelCard(
        method="s4c",
        networks={"weights.pt": {"class": "S4CNet", "kwargs": net.config,
                                 "parameters": int(sum(p.numel() for p in net.parameters()))}},
        preprocessing=prep.to_dict(),
        labels={name: value for value, name in LABELS.items()},
        training=job.training_record(
            loss="cross-entropy (paper)" if settings.paper_loss else
                 f"class-weighted cross-entropy {list(settings.class_weights)} + soft Dice",
            invisible_tumours="kept" if settings.keep_invisible else "ignored by the loss (|contrast| < 25 HU)",
            steps=int(result.steps), minutes=round(result.minutes, 1), config=config.to_dict(),
            initialised_from=initialised_from, negatives=negatives_record,
            intensity_augment=float(settings.intensity_augment),
            loss_first_last=[round(result.history[0]["loss"], 4), round(result.history[-1]["loss"], 4)]),
        extra={"rule": ScreeningRule().to_dict()},
    )
    folder = save_model_folder(job.output, card, {"weights.pt": result.state}, fp16=not settings.fp32,
                               overwrite=job.overwrite)
    shutil.rmtree(job.checkpoints, ignore_errors=True)
    return folder


TRAINING = Training(settings=S4CTrainSettings, train=train, stratify=positive)
"""The spec's training entry (``lesionseg train s4c``)."""
