"""``lesionseg train autopet-l2snet --data DIR -o MODEL``: train L2SNet's two networks on a folder of PET/CT cases.

Stages (``--stage``): ``loc`` the 2D localisation net, ``seg`` the cue-weighted 3D net (needs a localisation
net: trained in the same run or taken from ``--base MODEL``), ``plain`` the 3D net without the cue weight (the
ablation's "3D only" row), ``both`` = loc + seg (default), ``all`` = loc + seg + plain. Networks not trained in
a run are copied from ``--base`` when it has them; the folder then holds ``loc.pt``, ``seg.pt`` and/or
``seg_plain.pt``. ``--finetune`` starts the trained networks from ``--base``'s weights instead of from scratch
(e.g. on real crops copied with ``python -m lesionseg.methods.autopet.data --sts``).

The paper's recipe, kept:

* localisation: coronal PET slices in ``--loc-size`` windows, about 1/5 of them with lesion, random left-right
  flip and rotation (:func:`.data.sample_slice`); loss BCE + lambda * soft Dice, lambda = 1 (``--dice-weight``);
* segmentation: 2-channel (PET, CT) patches, half of them centred near a lesion; loss = weighted BCE +
  weighted soft Dice with the per-voxel weight ``1 + P_loc`` from the trained localisation net
  (:func:`weighted_bce`, :func:`weighted_dice_loss`); SGD with poly decay ``lr0 * (1 - t/T)^0.9``, lr0 = 1e-3,
  weight decay 1e-4 (``--seg-optimizer sgd``, the default). The trainer's SGD has Nesterov momentum 0.9
  (the paper gives no momentum).

Changed for two CPU cores: a wall-clock budget per stage (``--minutes-loc``, ``--minutes-seg``; the poly decay
runs over it) instead of an iteration count; 4 mm voxels, 192 x 128 slice windows and 48^3 training patches
(inference 64^3) instead of the paper's 320 x 384 and 128 x 192 x 160 at ~2 mm; a from-scratch residual
encoder instead of the ImageNet Res2Net-50 (:mod:`.network`); Adam (lr 1e-3, poly) for the localisation net,
whose optimiser the issue does not give.

A fresh 3D net's lesion logit starts at the lesion-voxel fraction of the training patches (``--initial-probability
auto``, about 1e-4 on the synthetic cohort; :func:`lesionseg.nets.unet.set_prior_probability`), not at 0.5.
``--seg-optimizer adamw --seg-lr 3e-4`` is what the shipped model used: SGD at the paper's 1e-3 learnt too little
in a CPU budget, and AdamW at 1e-3 killed every last-block feature with a positive head weight within minutes (the
output then never exceeds ``sigmoid(bias)``; seen as a maximum of exactly 0.398 everywhere, and again with the
bias started at 0.01 or 1e-4). With AdamW at 3e-4 and the 'auto' start, 5 minutes on one thread reached a
validation Dice of 0.26-0.32 on lesion-centred patches.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import InputError
from ...inference import prepare_for_inference
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...nets.unet import build_network, set_prior_probability
from ...registry import resolve_device
from ...training import Trainer, TrainConfig
from .data import held_out, list_cases, load_volumes, sample_patch, sample_slice
from .network import CPU_LOC, PAPER_LOC, SEG_CHANNELS, loc_network, seg_network
from .segmenter import (NETWORK_FILES, PAPER_PREPROCESSING, REQUIRED_PREPROCESSING, L2SPreprocessing,
                        location_cue_array)

log = logging.getLogger(__name__)
STAGES = {"loc": ("loc",), "seg": ("seg",), "plain": ("plain",), "both": ("loc", "seg"), "all": ("loc", "seg", "plain")}
VALIDATION_SAMPLES = 16
DICE_SMOOTH = 1e-5
PRIOR_SAMPLES = 64
"""Training patches drawn to measure the lesion-voxel fraction that a fresh 3D net starts at (module docstring)."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Method options of ``lesionseg train autopet-l2snet``."""
    parser.add_argument("--stage", choices=sorted(STAGES), default="both", help="networks to train (default both)")
    parser.add_argument("--base", type=Path, help="model folder whose networks are kept for stages not trained "
                                                  "(and whose preprocessing is used)")
    parser.add_argument("--finetune", action="store_true",
                        help="start each trained network from --base's weights and architecture (fine-tuning)")
    parser.add_argument("--minutes-loc", type=float, default=5.0, help="localisation budget, minutes (default 5)")
    parser.add_argument("--minutes-seg", type=float, default=10.0, help="budget of each 3D net, minutes (default 10)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of cases held out (default 0.2)")
    parser.add_argument("--folds", type=int, default=0, help="cross-validation folds (instead of --val-fraction)")
    parser.add_argument("--fold", type=int, default=0, help="the fold held out with --folds")
    parser.add_argument("--spacing", type=float, default=4.0, help="isotropic working voxel, mm (default 4)")
    parser.add_argument("--pet-window", type=float, nargs=2, default=[0.0, 15.0], metavar=("LO", "HI"))
    parser.add_argument("--ct-window", type=float, nargs=2, default=[100.0, 250.0], metavar=("LO", "HI"),
                        help="CT clip in HU (default 100 250, as the issue states the paper's)")
    parser.add_argument("--loc-size", type=int, nargs=2, default=[192, 128], metavar=("ROWS", "COLS"),
                        help="coronal slice window (k rows, i columns; paper 320 384)")
    parser.add_argument("--seg-patch", type=int, nargs=3, default=[64, 64, 64], metavar=("D", "H", "W"),
                        help="3D inference window (paper 128 192 160)")
    parser.add_argument("--train-patch", type=int, nargs=3, default=[48, 48, 48], metavar=("D", "H", "W"))
    parser.add_argument("--loc-encoder", type=int, nargs="+", default=CPU_LOC["encoder"])
    parser.add_argument("--loc-decoder", type=int, nargs="+", default=CPU_LOC["decoder"])
    parser.add_argument("--loc-blocks", type=int, default=CPU_LOC["blocks"])
    parser.add_argument("--paper-loc", action="store_true", help="the paper-sized localisation net (27.6 M)")
    parser.add_argument("--seg-channels", type=int, nargs="+", default=SEG_CHANNELS, help="default 16 32 64 128")
    parser.add_argument("--loc-batch", type=int, default=8, help="slices per step (default 8)")
    parser.add_argument("--seg-batch", type=int, default=2, help="patches per step (default 2)")
    parser.add_argument("--lesion-probability", type=float, default=0.5,
                        help="share of 3D training patches centred on a lesion voxel (default 0.5)")
    parser.add_argument("--initial-probability", default="auto",
                        help="lesion probability a fresh 3D net starts at everywhere (the bias of its logit): a "
                             "number, or 'auto' (default) = the lesion-voxel fraction of the training patches")
    parser.add_argument("--loc-lr", type=float, default=1e-3)
    parser.add_argument("--seg-optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--seg-lr", type=float, default=1e-3, help="paper 1e-3 (SGD)")
    parser.add_argument("--dice-weight", type=float, default=1.0, help="lambda of BCE + lambda * Dice (paper 1)")
    parser.add_argument("--dice-smooth", type=float, default=DICE_SMOOTH,
                        help=f"smoothing term of the soft Dice (default {DICE_SMOOTH:g}; see soft_dice_loss)")
    parser.add_argument("--steps-per-epoch", type=int, default=25, help="steps between validations (default 25)")
    parser.add_argument("--fp32", action="store_true", help="store float32 weights (default float16)")


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                   eps: float = DICE_SMOOTH) -> torch.Tensor:
    """``1 - (2 sum(w p g) + eps) / (sum(w p) + sum(w g) + eps)`` over the whole batch; ``w`` = 1 without ``weight``.

    ``eps`` must be small against the lesion volume of a batch: lesions of the 4 mm phantoms cover 3-300 voxels
    of a 48^3 patch, and with ``eps = 1`` predicting nothing scores a loss of only ``1 - 1/(sum(w g) + 1)``
    (0 on a batch without lesion), which the 3D net settled into (measured: training loss 0.53 while its
    output was below 0.01 on every lesion voxel). nnU-Net's 1e-5 is the default (``--dice-smooth``).

    A batch without any lesion voxel gets a Dice loss of 0 (the BCE term alone pulls its background down). With a
    small ``eps`` its Dice loss would be ``1 - eps / (sum(w p) + eps)``, which only reaches 0 when every output is
    exactly 0: the 3D nets answered that by killing every last-block feature with a positive head weight (seen
    twice: validation Dice climbing to 0.29 and then 0 for good, the output capped at ``sigmoid(bias)``).

    ``prob``, ``target`` and ``weight``: tensors of one shape (probabilities, 0/1 targets, per-voxel weights).
    """
    w = torch.ones_like(prob) if weight is None else weight
    truth = (w * target).sum()
    if truth.item() == 0.0:
        return 0.0 * prob.sum()
    return 1.0 - (2.0 * (w * prob * target).sum() + eps) / ((w * prob).sum() + truth + eps)


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``logits`` averaged with per-voxel ``weight``: ``sum(w * bce) / sum(w)``."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (weight * bce).sum() / weight.sum()


class LocTrainer(Trainer):
    """2D localisation: fresh slices every step (:func:`.data.sample_slice`); validation = Dice of
    ``P_loc > 0.5`` over fixed held-out slices."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, volumes: list, size: tuple[int, int],
                 batch: int, steps: int, dice_weight: float, validation: list, smooth: float = DICE_SMOOTH) -> None:
        super().__init__(model, config)
        self.volumes, self.size, self.batch, self.steps, self.dice_weight = volumes, size, batch, steps, dice_weight
        self.validation, self.smooth = validation, smooth

    def train_batches(self, epoch: int) -> Iterable[Any]:
        for _ in range(self.steps):
            pairs = [sample_slice(self.volumes, self.size, self.rng) for _ in range(self.batch)]
            yield torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = (t.to(self.config.device) for t in batch)
        logits = self.model(x)[:, 0]
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
    (or 1 when ``use_cue`` is False); validation = Dice of ``P > 0.5`` over fixed held-out patches, each
    centred on a lesion voxel when its case has lesions."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, volumes: list, patch: tuple[int, int, int],
                 batch: int, steps: int, use_cue: bool, dice_weight: float, validation: list,
                 lesion_probability: float = 0.5, smooth: float = DICE_SMOOTH) -> None:
        super().__init__(model, config)
        self.volumes, self.patch, self.batch, self.steps = volumes, patch, batch, steps
        self.lesion_probability, self.smooth = lesion_probability, smooth
        self.use_cue, self.dice_weight, self.validation = use_cue, dice_weight, validation

    def train_batches(self, epoch: int) -> Iterable[Any]:
        for _ in range(self.steps):
            picks = self.rng.integers(0, len(self.volumes), self.batch)
            samples = [sample_patch(self.volumes[i], self.patch, self.rng, self.lesion_probability, self.use_cue)
                       for i in picks]
            yield tuple(torch.from_numpy(np.stack([s[n] for s in samples])) for n in range(3))

    def loss(self, batch: Any) -> torch.Tensor:
        x, y, w = (t.to(self.config.device) for t in batch)
        logits = self.model(x)[:, 0]
        return weighted_bce(logits, y, w) + self.dice_weight * soft_dice_loss(torch.sigmoid(logits), y, w, self.smooth)

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


def _config(args: argparse.Namespace, device: str, minutes: float, optimizer: str, lr: float, wd: float,
            validate: bool) -> TrainConfig:
    if minutes <= 0:
        raise InputError("--minutes-loc and --minutes-seg must be > 0")
    return TrainConfig(epochs=100000, lr=lr, weight_decay=wd, optimizer=optimizer, schedule="poly", seed=args.seed,
                       device=device, validate_every=1, keep="best" if validate else "last", max_minutes=minutes)


def _summary(result, config: TrainConfig, **extra) -> dict:
    """What the card records of one stage: steps, minutes, kept epoch and score, first and last epoch's mean loss
    (epochs cut short by the budget before their first step are skipped), config."""
    losses = [h["loss"] for h in result.history if h["steps"]]
    return {"steps": int(sum(h["steps"] for h in result.history)), "minutes": round(result.minutes, 2),
            "kept_epoch": result.epoch, "validation_dice": None if result.score is None else round(result.score, 4),
            "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)] if losses else None,
            "config": config.to_dict(), **extra}


def train(args: argparse.Namespace) -> ModelFolder:
    """Train the stages of ``args.stage`` on ``args.data`` and write ``args.output`` (module docstring)."""
    stages = STAGES[args.stage]
    base = load_model_folder(args.base, "autopet-l2snet") if args.base else None
    if args.finetune and base is None:
        raise InputError("--finetune needs --base MODEL holding the networks to start from")
    if "seg" in stages and "loc" not in stages and (base is None or NETWORK_FILES["loc"] not in base.card["files"]):
        raise InputError("--stage seg needs a localisation net: use --stage both, or --base MODEL holding loc.pt")
    if min(args.loc_batch, args.seg_batch, args.steps_per_epoch) < 1 or args.dice_weight < 0:
        raise InputError("--loc-batch, --seg-batch and --steps-per-epoch must be >= 1 and --dice-weight >= 0")
    if args.dice_smooth <= 0:
        raise InputError("--dice-smooth must be > 0")
    if not 0.0 <= args.lesion_probability <= 1.0:
        raise InputError("--lesion-probability must be between 0 and 1")
    if str(args.initial_probability).lower() != "auto":
        _initial_probability(args.initial_probability, [], (), 0.0, np.random.default_rng())  # checks the number
    if base is not None:
        prep = base.settings(L2SPreprocessing, "preprocessing", "the pre-processing the model was trained with",
                             REQUIRED_PREPROCESSING)
    else:
        prep = L2SPreprocessing(spacing_mm=float(args.spacing), pet_window=tuple(args.pet_window),
                                ct_window=tuple(args.ct_window), loc_size=tuple(args.loc_size),
                                seg_patch=tuple(args.seg_patch))
    device = resolve_device(getattr(args, "device", "auto"))
    cases = list_cases(args.data)
    held = held_out(cases, args.seed, args.val_fraction, args.folds, args.fold)
    train_cases = [c for c in cases if c.name not in held]
    if not train_cases:
        raise InputError("no training cases left after holding out the validation cases")
    volumes, val_volumes = load_volumes(train_cases, prep), load_volumes([c for c in cases if c.name in held], prep)
    log.info("autopet-l2snet: %d training cases, %d held out", len(volumes), len(val_volumes))
    specs, states, summaries = {}, {}, {}
    if base is not None:
        for name, spec in base.require("networks", "the networks and their keyword arguments").items():
            specs[name], states[name] = spec, base.load_network(name).state_dict()
        summaries.update(base.card.get("training", {}).get("stages", {}))
    rng = np.random.default_rng(args.seed + 1)
    loc_net = None
    if "loc" in stages:
        arch = PAPER_LOC if args.paper_loc else {"encoder": args.loc_encoder, "decoder": args.loc_decoder,
                                                 "blocks": args.loc_blocks}
        loc_net = _start(base, "loc.pt", args.finetune, specs, states) or loc_network(**arch)
        count = VALIDATION_SAMPLES if val_volumes else 0
        validation = [sample_slice(val_volumes, prep.loc_size, rng) for _ in range(count)]
        config = _config(args, device, args.minutes_loc, "adam", args.loc_lr, 0.0, bool(validation))
        result = LocTrainer(loc_net, config, volumes, prep.loc_size, args.loc_batch, args.steps_per_epoch,
                            args.dice_weight, validation, args.dice_smooth).fit()
        loc_net.load_state_dict(result.state)
        states["loc.pt"] = result.state
        specs["loc.pt"] = _spec("L2SLocNet", loc_net)
        summaries["loc"] = _summary(result, config, loss=f"BCE + {args.dice_weight:g} * soft Dice",
                                    dice_smooth=args.dice_smooth,
                                    lesion_slice_fraction=0.2, batch=args.loc_batch)
    elif "seg" in stages:
        loc_net = build_network(specs["loc.pt"]["class"], specs["loc.pt"].get("kwargs"))
        loc_net.load_state_dict(states["loc.pt"])
    if "seg" in stages:
        prepare_for_inference(loc_net, device)
        log.info("autopet-l2snet: location cues of %d training cases", len(volumes))
        for volume in volumes:
            volume.cue = location_cue_array(loc_net, volume.pet, prep, device)
    for key in ("seg", "plain"):
        if key not in stages:
            continue
        net = _start(base, NETWORK_FILES[key], args.finetune, specs, states)
        patch, prior = tuple(args.train_patch), None
        if net is None:  # a fresh net starts at the lesion-voxel fraction, not 0.5 (module docstring)
            net = seg_network(args.seg_channels)
            prior = _initial_probability(args.initial_probability, volumes, patch, args.lesion_probability,
                                         np.random.default_rng(args.seed + 2))
            set_prior_probability(net.head, prior)
        validation = [sample_patch(v, patch, rng, 1.0, use_cue=False) for v in val_volumes
                      for _ in range(max(1, VALIDATION_SAMPLES // len(val_volumes)))] if val_volumes else []
        config = _config(args, device, args.minutes_seg, args.seg_optimizer, args.seg_lr, 1e-4, bool(validation))
        result = SegTrainer(net, config, volumes, patch, args.seg_batch, args.steps_per_epoch, key == "seg",
                            args.dice_weight, validation, args.lesion_probability, args.dice_smooth).fit()
        states[NETWORK_FILES[key]], specs[NETWORK_FILES[key]] = result.state, _spec("UNet", net)
        summaries[key] = _summary(result, config, train_patch=list(patch), batch=args.seg_batch,
                                  lesion_probability=args.lesion_probability, dice_smooth=args.dice_smooth,
                                  initial_lesion_probability=prior,
                                  loss=("weighted BCE + weighted soft Dice, weight 1 + P_loc" if key == "seg"
                                        else "BCE + soft Dice (no cue weight)"))
    card = {
        "method": "autopet-l2snet",
        "networks": specs,
        "preprocessing": prep.to_dict(),
        "labels": {"0": "background", "1": "lesion"},
        "paper": {"preprocessing": PAPER_PREPROCESSING, "loc_network": PAPER_LOC, "seg_channels": SEG_CHANNELS,
                  "loc_encoder": "Res2Net-50 pretrained on ImageNet; not available offline, so a residual "
                                 "encoder trained from scratch is used (lesionseg.methods.autopet.network)"},
        "training": {"data": str(args.data), "synthetic": _synthetic(Path(args.data)),
                     "command": getattr(args, "command_line", ""), "seed": args.seed, "stage": args.stage,
                     "base": str(args.base) if args.base else None, "finetune": bool(args.finetune), "device": device,
                     "base_data": None if base is None else {key: base.card["training"].get(key)
                                                             for key in ("data", "synthetic")},
                     "folds": args.folds, "fold": args.fold if args.folds else None, "val_fraction": args.val_fraction,
                     "train_cases": [c.name for c in train_cases], "held_out_cases": held, "stages": summaries},
    }
    return save_model_folder(args.output, card, states, fp16=not args.fp32, overwrite=getattr(args, "overwrite", False))


def _start(base: Optional[ModelFolder], name: str, finetune: bool, specs: dict,
           states: dict) -> Optional[torch.nn.Module]:
    """With ``finetune``, the network ``name`` of ``base`` (its architecture and weights) to train further."""
    if not finetune:
        return None
    if base is None or name not in specs:
        raise InputError(f"--finetune needs --base MODEL holding {name}")
    net = build_network(specs[name]["class"], specs[name].get("kwargs"))
    net.load_state_dict(states[name])
    return net


def _initial_probability(value: str, volumes: list, patch: tuple, lesion_probability: float,
                         rng: np.random.Generator) -> float:
    """``value`` as a probability in (0, 1), or for ``'auto'`` the mean label of PRIOR_SAMPLES training patches
    drawn as in training (clipped to [1e-5, 0.5])."""
    if str(value).lower() != "auto":
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"--initial-probability must be a number or 'auto', got {value!r}") from None
        if not 0.0 < number < 1.0:
            raise InputError(f"--initial-probability must be in (0, 1), got {number}")
        return number
    fractions = [float(sample_patch(volumes[int(rng.integers(len(volumes)))], patch, rng, lesion_probability,
                                    use_cue=False)[1].mean()) for _ in range(PRIOR_SAMPLES)]
    return float(np.clip(np.mean(fractions), 1e-5, 0.5))


def _spec(name: str, net: torch.nn.Module) -> dict:
    return {"class": name, "kwargs": net.config, "parameters": int(sum(p.numel() for p in net.parameters()))}


def _synthetic(folder: Path) -> bool:
    """True when ``folder/cohort.json`` says the data is synthetic (the generator's folders)."""
    path = folder / "cohort.json"
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text()).get("synthetic", False))
    except (OSError, json.JSONDecodeError):
        return False
