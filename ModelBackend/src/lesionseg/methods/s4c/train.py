"""``lesionseg train s4c --data DIR -o MODEL``: train the S4C network on a folder of dual-phase cases.

The paper's recipe (Zhu et al.), kept where two CPU cores allow it:

* voxel-wise softmax cross-entropy on the main output and two deep-supervision outputs with weights
  aux1 : aux2 : main = 1 : 2 : 5 (the paper does not say which auxiliary is which; here the coarser, 1/4
  resolution head gets 1 and the 1/2 resolution head 2), normalised by their sum;
* 64^3 patches, augmented by 90/180/270-degree rotations and flips on all three axes (kept);
* SGD, base learning rate 0.01 with poly decay (power 0.9) over the budget, momentum 0.9 (Nesterov), weight
  decay 5e-4.

Changed for the CPU (a budget of minutes instead of the paper's days):

* batch 2 instead of 16 (``--batch``), a wall-clock budget (``--minutes``) instead of an iteration count,
  and 48^3 training patches (``--train-patch``; inference keeps 64^3 windows, the network is fully
  convolutional);
* patches centred on a voxel of a class drawn with probabilities background 0.25, pancreas 0.25, tumour
  0.3, duct 0.2 (the paper samples the whole volume; 5-20 mm tumours would then rarely be seen);
* **the loss**: with the paper's plain cross-entropy and SGD, 11 CPU minutes (881 steps) learnt the pancreas
  (held-out DSC 0.67) but never the tumour or the duct -- the mean tumour probability inside tumours stayed
  at 0.03 even on training cases, because they are 0.1-0.2 % of a patch. Each output's loss is therefore
  class-weighted cross-entropy (``--class-weights``, default 1 1 4 4) plus a soft Dice loss over the three
  foreground classes, and the optimiser is AdamW (``--lr`` 1e-3, weight decay 5e-4, poly decay).
  ``--paper-loss`` restores plain cross-entropy with SGD (lr 0.01, momentum 0.9) for comparison;
* **per-phase visibility**: the cases carry one label for both phases, but a tumour that a phase shows
  iso-dense is not labelled there for the loss (:func:`.data.hide_invisible_tumours`, |mean HU - pancreas
  around it| < 25 HU -> ignored). With the shared label the network learnt no tumour at all (tumour
  probability 0.01-0.04 inside tumours, training cases included). ``--keep-invisible`` turns this off.

One network serves both phases; every phase of every training case is a sample. ``--folds K --fold I`` holds fold ``I`` out (stratified by verdict) and records
it in the card, for :mod:`.evaluate`'s cross-validation.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import InputError
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...registry import resolve_device
from ...training import Trainer, TrainConfig
from .data import IGNORE, folds, list_cases, load_volumes, sample_patch
from .network import S4CNet
from .rules import LABELS, ScreeningRule
from .segmenter import S4CPreprocessing

log = logging.getLogger(__name__)
DEEP_SUPERVISION_WEIGHTS = (5.0, 2.0, 1.0)
"""Loss weights of the outputs ``[main, aux 1/2 resolution, aux 1/4 resolution]`` (paper 5 : 2 : 1)."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Method options of ``lesionseg train s4c``."""
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget (default 10)")
    parser.add_argument("--batch", type=int, default=2, help="patches per step (default 2; paper 16)")
    parser.add_argument("--lr", type=float, default=None,
                        help="base learning rate (default 1e-3 AdamW; 0.01 SGD with --paper-loss, as the paper)")
    parser.add_argument("--patch", type=int, default=64, help="inference window edge in voxels (paper 64)")
    parser.add_argument("--train-patch", type=int, default=48, help="training patch edge in voxels (default 48)")
    parser.add_argument("--class-weights", type=float, nargs=4, default=[1.0, 1.0, 4.0, 4.0],
                        metavar=("BG", "PANCREAS", "TUMOUR", "DUCT"), help="cross-entropy class weights")
    parser.add_argument("--init", type=Path, default=None, metavar="MODEL_DIR",
                        help="start from this s4c model's weights (same channels; its held-out cases must match)")
    parser.add_argument("--class-probs", type=float, nargs=4, default=[0.25, 0.25, 0.3, 0.2],
                        metavar=("BG", "PANCREAS", "TUMOUR", "DUCT"),
                        help="probability of centring a patch on each class (default 0.25 0.25 0.3 0.2)")
    parser.add_argument("--keep-invisible", action="store_true",
                        help="train on tumours also in the phase where they are iso-dense (see the docstring)")
    parser.add_argument("--paper-loss", action="store_true",
                        help="plain cross-entropy and SGD as in the paper (learns no tumour in a CPU budget)")
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64],
                        help="feature maps per level (default 8 16 32 64)")
    parser.add_argument("--spacing", type=float, default=1.5, help="isotropic working voxel in mm (default 1.5)")
    parser.add_argument("--folds", type=int, default=0, help="cross-validation folds (0: train on every case)")
    parser.add_argument("--fold", type=int, default=0, help="the fold held out when --folds is given")
    parser.add_argument("--steps-per-epoch", type=int, default=50, help="steps between log lines (default 50)")
    parser.add_argument("--fp32", action="store_true", help="store float32 weights (default float16)")


class S4CTrainer(Trainer):
    """Patches sampled afresh each step; loss of :data:`DEEP_SUPERVISION_WEIGHTS`."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, volumes: list, patch: int, batch: int,
                 steps: int, class_weights: Optional[list[float]] = None, dice: bool = True,
                 class_probs: Sequence[float] = (0.25, 0.25, 0.3, 0.2)) -> None:
        super().__init__(model, config)
        self.class_probs = tuple(class_probs)
        self.volumes, self.patch, self.batch, self.steps = volumes, patch, batch, steps
        self.weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32,
                                                                        device=config.device)
        self.dice = dice

    def train_batches(self, epoch: int) -> Iterable[Any]:
        for _ in range(self.steps):
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
        loss = F.cross_entropy(logits, target, weight=self.weights, ignore_index=IGNORE)
        if self.dice:
            loss = loss + soft_dice_loss(logits, target)
        return loss


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice of the foreground classes **present in the batch's target**, sums taken over the
    whole batch; voxels labelled :data:`~.data.IGNORE` count for nothing; 0 when no foreground is present.

    Classes absent from the target are left out on purpose: their Dice ``eps / (sum p + eps)`` punishes any
    probability mass anywhere, which (measured) kept the tumour probability at 0.005 inside training tumours
    after 3,700 steps while a few dozen steps on a handful of batches could raise it to 0.4.
    """
    keep = (target != IGNORE).unsqueeze(1)
    probs = torch.softmax(logits, dim=1)[:, 1:] * keep
    onehot = F.one_hot(torch.where(keep[:, 0], target, 0), logits.shape[1]).permute(0, 4, 1, 2, 3)[:, 1:]
    onehot = onehot.to(probs.dtype)
    dims = (0, 2, 3, 4)
    present = onehot.sum(dims) > 0
    if not present.any():
        return logits.sum() * 0.0
    inter = (probs * onehot).sum(dims)
    dice = (2 * inter + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)
    return 1.0 - dice[present].mean()


def train(args: argparse.Namespace) -> ModelFolder:
    """Train on ``args.data`` and write ``args.output`` (see the module docstring)."""
    if args.batch < 1 or min(args.patch, args.train_patch) < 16 or args.minutes <= 0:
        raise InputError("--batch must be >= 1, --patch and --train-patch >= 16 and --minutes > 0")
    cases = list_cases(args.data)
    held_out: list[str] = []
    if args.folds:
        parts = folds(cases, args.folds, args.seed)
        if not 0 <= args.fold < args.folds:
            raise InputError(f"--fold must be 0..{args.folds - 1}")
        held_out = parts[args.fold]
    train_cases = [c for c in cases if c.name not in held_out]
    # the paper's 20-voxel stride, or the window edge when a (test-sized) window is smaller than that
    prep = S4CPreprocessing(spacing_mm=float(args.spacing), patch=int(args.patch),
                            stride=min(S4CPreprocessing.stride, int(args.patch)))
    volumes = load_volumes(train_cases, prep, hide_invisible=not args.keep_invisible)
    log.info("s4c: %d training volumes from %d cases (%d held out)", len(volumes), len(train_cases), len(held_out))
    net = S4CNet(in_channels=1, out_channels=len(LABELS), channels=args.channels)
    initialised_from = None
    if args.init is not None:
        base = load_model_folder(args.init, "s4c")
        base.require("training", "the training record with the held-out cases")
        if sorted(base.card["training"].get("held_out_cases") or []) != sorted(held_out):
            raise InputError(f"{args.init} held out other cases than this run; continuing it would leak them")
        kwargs = base.network_spec("weights.pt")[1]
        net = base.load_network("weights.pt", lambda: S4CNet(**kwargs))
        initialised_from = {"folder": str(args.init), "command": base.card["training"].get("command"),
                            "steps": base.card["training"].get("steps"), "minutes": base.card["training"].get("minutes")}
    steps = int(args.steps_per_epoch)
    lr = args.lr if args.lr is not None else (0.01 if args.paper_loss else 1e-3)
    config = TrainConfig(epochs=100000, lr=lr, weight_decay=5e-4, optimizer="sgd" if args.paper_loss else "adamw",
                         schedule="poly",
                         seed=args.seed, device=resolve_device(getattr(args, "device", "auto")), validate_every=100000, keep="last",
                         max_minutes=args.minutes)
    result = S4CTrainer(net, config, volumes, args.train_patch, args.batch, steps,
                        None if args.paper_loss else list(args.class_weights), dice=not args.paper_loss,
                        class_probs=args.class_probs).fit()
    synthetic = (Path(args.data) / "cohort.json").exists()
    card = {
        "method": "s4c",
        "network": {"class": "S4CNet", "kwargs": net.config,
                    "parameters": int(sum(p.numel() for p in net.parameters()))},
        "preprocessing": prep.to_dict(),
        "rule": ScreeningRule().to_dict(),
        "labels": {str(k): v for k, v in LABELS.items()},
        "training": {
            "data": str(args.data), "synthetic": synthetic, "command": getattr(args, "command_line", ""),
            "seed": args.seed, "folds": args.folds, "fold": args.fold if args.folds else None,
            "train_cases": [c.name for c in train_cases], "held_out_cases": held_out,
            "batch": args.batch, "train_patch": args.train_patch, "class_probs": list(args.class_probs),
            "loss": "cross-entropy (paper)" if args.paper_loss else
                    f"class-weighted cross-entropy {list(args.class_weights)} + soft Dice",
            "invisible_tumours": "kept" if args.keep_invisible else "ignored by the loss (|contrast| < 25 HU)", "steps": int(sum(h["steps"] for h in result.history)),
            "minutes": round(result.minutes, 1), "config": config.to_dict(), "initialised_from": initialised_from,
            "loss_first_last": [round(result.history[0]["loss"], 4), round(result.history[-1]["loss"], 4)],
        },
    }
    return save_model_folder(args.output, card, {"weights.pt": result.state}, fp16=not args.fp32,
                             overwrite=getattr(args, "overwrite", False))
