"""A small generic trainer: seed, optimiser and schedule from a config, an epoch loop with hooks.

Methods subclass :class:`Trainer` and fill in three hooks — :meth:`Trainer.train_batches` (what one epoch
iterates over), :meth:`Trainer.loss` (one batch -> scalar loss) and optionally :meth:`Trainer.validate`
(model -> ``{"score": float, ...}``, higher is better). The loop logs every epoch, shows a tqdm bar when
asked, keeps the best (or the last) weights and can stop on a wall-clock budget. Everything a variant
changes is a field of :class:`TrainConfig` or one short override.
"""
from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import nn

from .errors import InputError

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "poly")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


@dataclass
class TrainConfig:
    """Optimisation settings (stored in the model card's ``training`` section).

    Args:
        epochs: number of epochs (upper bound when ``max_minutes`` is set).
        lr: peak learning rate.
        weight_decay: L2 penalty (coupled for adam/sgd, decoupled for adamw).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9, Nesterov).
        schedule: ``"constant"``, ``"cosine"`` (to 0 at the last epoch) or ``"poly"`` (nnU-Net's 0.9 power).
        warmup_epochs: linear warm-up from ``lr / 10``, counted in epochs.
        seed: seed for :func:`seed_everything`.
        device: ``"cpu"`` or ``"cuda"``.
        grad_clip: clip the gradient norm to this value (``None``: no clipping).
        validate_every: run :meth:`Trainer.validate` every this many epochs (and after the last).
        keep: ``"best"`` (best validation score; on a tie the later epoch, which has trained longer) or
            ``"last"`` weights in :attr:`TrainResult.state`.
        max_minutes: wall-clock budget (``None``: none). The schedule then runs on whichever is further
            along, epochs or the budget, so it reaches its end when the time does; training stops at the
            first step after the budget is spent (the epoch in progress is cut short and validated).
        progress: show a tqdm bar over the batches of each epoch.
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "cosine"
    warmup_epochs: int = 0
    seed: int = 0
    device: str = "cpu"
    grad_clip: Optional[float] = None
    validate_every: int = 1
    keep: str = "best"
    max_minutes: Optional[float] = None
    progress: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.keep not in ("best", "last"):
            raise InputError(f"keep must be 'best' or 'last', not {self.keep!r}")
        if self.epochs < 1 or self.lr <= 0 or self.validate_every < 1:
            raise InputError("epochs, lr and validate_every must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: kept weights, their epoch and score, per-epoch history."""

    state: dict
    epoch: int
    score: Optional[float]
    history: list[dict]
    minutes: float


def lr_factor(config: TrainConfig, epoch: float) -> float:
    """Learning-rate multiplier at (fractional) ``epoch`` for the config's warm-up and schedule."""
    if config.warmup_epochs and epoch < config.warmup_epochs:
        return 0.1 + 0.9 * epoch / config.warmup_epochs
    span = max(config.epochs - config.warmup_epochs, 1)
    progress = min(max((epoch - config.warmup_epochs) / span, 0.0), 1.0)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "poly":
        return (1.0 - progress) ** 0.9
    return 1.0


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config`` over the trainable parameters of ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)


class Trainer:
    """Epoch loop around three hooks; subclass and override :meth:`train_batches` and :meth:`loss`.

    Args:
        model: the network (moved to ``config.device``).
        config: optimisation settings.
    """

    def __init__(self, model: nn.Module, config: TrainConfig) -> None:
        self.config = config
        seed_everything(config.seed)
        self.model = model.to(config.device)
        self.optimizer = make_optimizer(self.model, config)
        self.rng = np.random.default_rng(config.seed)

    def train_batches(self, epoch: int) -> Iterable[Any]:
        """The batches of ``epoch`` (any objects :meth:`loss` understands)."""
        raise NotImplementedError

    def loss(self, batch: Any) -> torch.Tensor:
        """Scalar training loss of one batch (the model is in train mode)."""
        raise NotImplementedError

    def validate(self) -> Optional[dict]:
        """``{"score": float, ...}`` on validation data (higher is better), or ``None`` for no validation."""
        return None

    def _set_lr(self, epoch: float) -> float:
        lr = self.config.lr * lr_factor(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _run_validation(self) -> Optional[dict]:
        self.model.eval()
        with torch.no_grad():
            result = self.validate()
        self.model.train()
        if result is not None and "score" not in result:
            raise InputError("validate() must return a dict with a 'score'")
        return result

    def fit(self) -> TrainResult:
        """Train for ``config.epochs`` (or until ``max_minutes``); return the kept weights and history."""
        cfg, start = self.config, time.perf_counter()
        best_state, best_score, best_epoch = None, -math.inf, 0
        history: list[dict] = []
        for epoch in range(cfg.epochs):
            self.model.train()
            batches = list(self.train_batches(epoch))
            losses = []
            bar = None
            if cfg.progress:
                from tqdm import tqdm

                bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
            for step, batch in enumerate(batches):
                position = epoch + step / max(len(batches), 1)
                if cfg.max_minutes is not None:
                    spent = (time.perf_counter() - start) / 60.0
                    if spent >= cfg.max_minutes:
                        break
                    position = max(position, cfg.epochs * spent / cfg.max_minutes) if cfg.max_minutes > 0 else position
                self._set_lr(position)
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.loss(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}, step {step}")
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                losses.append(float(loss.detach()))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(losses):.4f}")
            if bar is not None:
                bar.close()
            minutes = (time.perf_counter() - start) / 60.0
            out_of_time = cfg.max_minutes is not None and minutes >= cfg.max_minutes
            last = epoch == cfg.epochs - 1 or out_of_time
            record: dict = {"epoch": epoch + 1, "steps": len(losses),
                            "loss": float(np.mean(losses)) if losses else math.nan,
                            "minutes": round(minutes, 2)}
            if (epoch + 1) % cfg.validate_every == 0 or last:
                result = self._run_validation()
                if result is not None:
                    record.update(result)
                    if cfg.keep == "best" and result["score"] >= best_score:
                        best_score, best_epoch = float(result["score"]), epoch + 1
                        best_state = copy.deepcopy(self.model.state_dict())
            history.append(record)
            log.info("%s", ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in record.items()))
            if out_of_time:
                log.info("stopping after epoch %d: the %.1f-minute budget is spent", epoch + 1, cfg.max_minutes)
                break
        if best_state is None:
            best_state, best_epoch = copy.deepcopy(self.model.state_dict()), len(history)
            best_score = history[-1].get("score", math.nan)
        score = None if best_score is None or not math.isfinite(best_score) else float(best_score)
        return TrainResult(best_state, best_epoch, score, history, (time.perf_counter() - start) / 60.0)
