"""``lesionseg train autopet-l2snet --data DATASET -o MODEL``: train L2SNet's networks on a PET/CT dataset.

The dataset is in the one convention (:mod:`lesionseg.data`; channels PET and CT on the PET grid, e.g. from
``lesionseg data import autopet`` or ``lesionseg data synthetic autopet-l2snet``); the split (``--folds/--fold``
or ``--val-fraction``) deals positive and negative cases separately (:func:`.data.is_positive`), never splitting
a patient. Labels go through the label map (``--labels``; any class > 0 is lesion).

Stages (``--stage``): ``loc`` the 2D localisation net, ``seg`` the cue-weighted 3D net (needs a localisation
net: trained in the same run or taken from ``--networks-from`` / ``--init``), ``plain`` the 3D net without the
cue weight (the ablation's "3D only" row), ``both`` = loc + seg (default), ``all`` = loc + seg + plain. The
folder then holds ``loc.pt``, ``seg.pt`` and/or ``seg_plain.pt``.

* ``--networks-from MODEL``: the networks of the stages not trained are copied from MODEL, and MODEL's
  pre-processing is used (the networks depend on it); the trained networks start fresh.
* ``--init MODEL`` (fine-tuning): as ``--networks-from MODEL``, and each trained network starts from MODEL's
  weights and architecture (``--loc-encoder``, ``--seg-channels``, ... are then MODEL's). Give one of the two,
  or both naming the same folder.
* Budgets: ``--minutes M`` is the whole run's budget, split over the networks trained in the ratio of the
  default budgets, 1 (loc) : 2 (each 3D net): ``--stage both`` gives loc M/3 and seg 2M/3, ``--stage all``
  M/5, 2M/5, 2M/5. Or ``--minutes-loc`` (default 5) and ``--minutes-seg`` (each 3D net, default 10), not
  together with ``--minutes``. A budget covers a network's optimiser loop; loading the cases and computing
  the location cues come on top.

The paper's recipe, kept:

* localisation: coronal PET slices in ``--loc-size`` windows, about 1/5 of them with lesion, random left-right
  flip and rotation (:func:`.data.sample_slice`); loss BCE + lambda * soft Dice, lambda = 1 (``--dice-weight``);
* segmentation: 2-channel (PET, CT) patches, half of them centred near a lesion; loss = weighted BCE +
  weighted soft Dice with the per-voxel weight ``1 + P_loc`` from the trained localisation net
  (:func:`lesionseg.losses.weighted_bce_with_logits`, :func:`lesionseg.losses.soft_dice_loss`); SGD with poly
  decay ``lr0 * (1 - t/T)^0.9``, lr0 = 1e-3, weight decay 1e-4 (``--seg-optimizer sgd``, the default). The
  trainer's SGD has Nesterov momentum 0.9 (the paper gives no momentum).

**The soft Dice** is :func:`lesionseg.losses.soft_dice_loss` over the whole batch with ``eps`` =
``--dice-smooth`` (default 1e-5) and ``empty="zero"``; two measured failures set both:

* ``eps`` must be small against the lesion volume of a batch: lesions of the 4 mm phantoms cover 3-300 voxels
  of a 48^3 patch, and with ``eps = 1`` predicting nothing scores a loss of only ``1 - 1/(sum(w g) + 1)`` (0 on a
  batch without lesion), which the 3D net settled into (measured: training loss 0.53 while its output was
  below 0.01 on every lesion voxel). nnU-Net's 1e-5 is the default.
* A batch without any lesion voxel gets a Dice loss of 0 and no gradient (the BCE term alone pulls its
  background down). With a small ``eps`` its Dice loss would be ``1 - eps / (sum(w p) + eps)``, which only
  reaches 0 when every output is exactly 0: the 3D nets answered that by killing every last-block feature with
  a positive head weight (seen twice: validation Dice climbing to 0.29 and then 0 for good, the output capped
  at ``sigmoid(bias)``).

Changed for two CPU cores: a wall-clock budget per network (the poly decay runs over it) instead of an
iteration count; 4 mm voxels, 192 x 128 slice windows and 48^3 training patches (inference 64^3) instead of
the paper's 320 x 384 and 128 x 192 x 160 at ~2 mm; a from-scratch residual encoder instead of the ImageNet
Res2Net-50 (:mod:`.network`); Adam (lr 1e-3, poly) for the localisation net, whose optimiser the issue does
not give.

A fresh 3D net's lesion logit starts at the lesion-voxel fraction of the training patches (``--initial-probability
auto``, about 1e-4 on the synthetic cohort; :func:`lesionseg.nets.unet.set_prior_probability`), not at 0.5.
``--seg-optimizer adamw --seg-lr 3e-4`` is what the shipped model used: SGD at the paper's 1e-3 learnt too little
in a CPU budget, and AdamW at 1e-3 killed every last-block feature with a positive head weight within minutes (the
output then never exceeds ``sigmoid(bias)``; seen as a maximum of exactly 0.398 everywhere, and again with the
bias started at 0.01 or 1e-4). With AdamW at 3e-4 and the 'auto' start, 5 minutes on one thread reached a
validation Dice of 0.26-0.32 on lesion-centred patches.

Checkpoints go to ``MODEL.checkpoints/{loc,seg,plain}.ckpt`` (``--checkpoint-minutes``; ``--resume`` continues
them, a finished stage returns at once) and are removed once the model is saved.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Optional

import numpy as np
import torch

from ...errors import InputError
from ...inference import prepare_for_inference
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...nets.unet import build_network, set_prior_probability
from ...options import Settings, option
from ...registry import resolve_device
from ...train_job import Training, TrainJob
from ...training import TrainConfig
from .data import HOT_SUV, LABELS, is_positive, load_volumes, sample_patch, sample_slice
from .network import CPU_LOC, PAPER_LOC, SEG_CHANNELS, loc_network, seg_network
from .pipeline import (NETWORK_FILES, PAPER_PREPROCESSING, REQUIRED_PREPROCESSING, L2SPreprocessing,
                        location_cue_array, scale)
from .trainers import DICE_SMOOTH, LocTrainer, SegTrainer

log = logging.getLogger(__name__)
METHOD = "autopet-l2snet"
STAGES = {"loc": ("loc",), "seg": ("seg",), "plain": ("plain",), "both": ("loc", "seg"), "all": ("loc", "seg", "plain")}
VALIDATION_SAMPLES = 16
PRIOR_SAMPLES = 64
"""Training patches drawn to measure the lesion-voxel fraction that a fresh 3D net starts at (module docstring)."""
DEFAULT_MINUTES = {"loc": 5.0, "seg": 10.0, "plain": 10.0}
"""Budget of each network without ``--minutes`` (``--minutes-loc``, ``--minutes-seg``)."""
MINUTE_SHARES = {"loc": 1, "seg": 2, "plain": 2}
"""How ``--minutes`` is split over the networks trained (the ratio of :data:`DEFAULT_MINUTES`)."""


@dataclass(frozen=True)
class L2STrainSettings(Settings):
    """The flags of ``lesionseg train autopet-l2snet`` besides the common ones (module docstring)."""

    stage: str = option("both", "networks to train: loc, seg (cue-weighted 3D net), plain (3D net without the "
                                "cue), both = loc + seg, all = loc + seg + plain", choices=tuple(sorted(STAGES)))
    networks_from: Optional[Path] = option(None, "model folder whose networks are kept for the stages not "
                                                 "trained (and whose pre-processing is used)", metavar="MODEL")
    minutes_loc: Optional[float] = option(None, "budget of the localisation net (default 5; not with --minutes)",
                                          unit="min")
    minutes_seg: Optional[float] = option(None, "budget of each 3D net (default 10; not with --minutes)",
                                          unit="min")
    spacing: float = option(4.0, "isotropic working voxel", unit="mm")
    pet_window: tuple[float, float] = option((0.0, 15.0), "PET clip, mapped to 0..1 (default 0 15)", unit="SUV",
                                             metavar=("LO", "HI"))
    ct_window: tuple[float, float] = option((100.0, 250.0), "CT clip, mapped to 0..1 (default 100 250, as the "
                                                            "issue states the paper's)", unit="HU",
                                            metavar=("LO", "HI"))
    loc_size: tuple[int, int] = option((192, 128), "coronal slice window, k rows and i columns (default 192 128; paper "
                                                              "320 384)",
                                       metavar=("ROWS", "COLS"))
    seg_patch: tuple[int, int, int] = option((64, 64, 64), "3D inference window (default 64 64 64; paper 128 192 160)",
                                             metavar=("D", "H", "W"))
    train_patch: tuple[int, int, int] = option((48, 48, 48), "3D training patch (default 48 48 48)",
                                               metavar=("D", "H", "W"))
    loc_encoder: tuple[int, ...] = option(tuple(CPU_LOC["encoder"]), "localisation encoder widths, one per stage "
                                                                "(default 16 16 32 64 128)", metavar="N")
    loc_decoder: tuple[int, ...] = option(tuple(CPU_LOC["decoder"]), "localisation decoder widths "
                                                                "(default 128 64 32 16)", metavar="N")
    loc_blocks: int = option(CPU_LOC["blocks"], "residual blocks per localisation encoder stage")
    paper_loc: bool = option(False, "the paper-sized localisation net (27.6 M parameters)")
    seg_channels: tuple[int, ...] = option(tuple(SEG_CHANNELS), "3D U-Net widths per level (default 16 32 64 128)",
                                           metavar="N")
    loc_batch_size: int = option(8, "coronal slices per localisation step")
    seg_batch_size: int = option(2, "patches per 3D step")
    lesion_probability: float = option(0.5, "share of 3D training patches centred on a lesion voxel")
    hot_negative_probability: float = option(0.0, "share of 3D training patches centred on an FDG-avid voxel "
                                                   f"(SUV >= {HOT_SUV}) outside the lesions: physiological uptake "
                                                   "(brain, heart, kidneys, bladder) the nets must leave out")
    initial_probability: str = option("auto", "lesion probability a fresh 3D net starts at everywhere (the bias "
                                              "of its logit): a number, or 'auto' = the lesion-voxel fraction of "
                                              "the training patches")
    loc_lr: float = option(1e-3, "localisation learning rate (Adam, poly decay)")
    seg_optimizer: str = option("sgd", "optimiser of the 3D nets (paper: SGD)", choices=("sgd", "adamw"))
    seg_lr: float = option(1e-3, "learning rate of the 3D nets (paper 1e-3 with SGD)")
    dice_weight: float = option(1.0, "lambda of BCE + lambda * soft Dice (paper 1)")
    dice_smooth: float = option(DICE_SMOOTH, "eps of the soft Dice (see the train module's docstring)")
    steps_per_epoch: int = option(25, "steps between validations")
    ct_dropout: float = option(0.0, "share of 3D training patches whose CT channel is blanked, so that the 3D nets "
                                    "also work from the PET alone (PET-only mode; 0: PET + CT only)")
    keep: str = option("best", "weights kept of each network: best = best validation Dice on the held-out cases, "
                               "last = the end of the budget, without validation (use last when the held-out "
                               "cases are a test fold)",
                       choices=("best", "last"))
    fp32: bool = option(False, "store float32 weights (default float16)")

    def __post_init__(self) -> None:
        if min(self.loc_batch_size, self.seg_batch_size, self.steps_per_epoch) < 1:
            raise InputError(f"{self.flag('loc_batch_size')}, {self.flag('seg_batch_size')} and "
                             f"{self.flag('steps_per_epoch')} must be >= 1")
        if self.dice_weight < 0 or not self.dice_smooth > 0:
            raise InputError(f"need {self.flag('dice_weight')} >= 0 and {self.flag('dice_smooth')} > 0")
        if not (0.0 <= self.lesion_probability <= 1.0 and 0.0 <= self.hot_negative_probability <= 1.0
                and self.lesion_probability + self.hot_negative_probability <= 1.0):
            raise InputError(f"{self.flag('lesion_probability')} and {self.flag('hot_negative_probability')} must "
                             "be between 0 and 1, together at most 1")
        for name in ("minutes_loc", "minutes_seg"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise InputError(f"{self.flag(name)} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.ct_dropout < 1.0:
            raise InputError(f"{self.flag('ct_dropout')} must be in [0, 1), got {self.ct_dropout}")
        if min(self.train_patch) < 8 or not self.loc_encoder or not self.seg_channels or self.loc_blocks < 1:
            raise InputError(f"{self.flag('train_patch')} needs >= 8 voxels per axis; the network widths and "
                             f"{self.flag('loc_blocks')} must be given")
        if str(self.initial_probability).lower() != "auto":
            initial_probability(self.initial_probability, [], (), 0.0, np.random.default_rng())
        self.preprocessing()

    def preprocessing(self) -> L2SPreprocessing:
        """The working grid, windows and sizes these flags give (a fresh model's card ``preprocessing``)."""
        return L2SPreprocessing(spacing_mm=float(self.spacing), pet_window=tuple(self.pet_window),
                                ct_window=tuple(self.ct_window), loc_size=tuple(self.loc_size),
                                seg_patch=tuple(self.seg_patch), ct_dropout=float(self.ct_dropout))


def stage_minutes(stages: Iterable[str], minutes: Optional[float], settings: L2STrainSettings) -> dict[str, float]:
    """Budget of each network trained: ``minutes`` (``--minutes``) split by :data:`MINUTE_SHARES`, or the
    per-stage flags (default :data:`DEFAULT_MINUTES`). Both kinds at once are an :class:`InputError`."""
    stages = list(stages)
    if minutes is not None and (settings.minutes_loc is not None or settings.minutes_seg is not None):
        raise InputError("give --minutes (the whole run, split loc 1 : each 3D net 2) or --minutes-loc/"
                         "--minutes-seg, not both")
    if minutes is not None:
        total = sum(MINUTE_SHARES[s] for s in stages)
        return {s: minutes * MINUTE_SHARES[s] / total for s in stages}
    given = {"loc": settings.minutes_loc, "seg": settings.minutes_seg, "plain": settings.minutes_seg}
    return {s: given[s] if given[s] is not None else DEFAULT_MINUTES[s] for s in stages}


def _config(job: TrainJob, stage: str, device: str, minutes: float, optimizer: str, lr: float, wd: float,
            validate: bool) -> TrainConfig:
    keep = "best" if validate and job.settings.keep == "best" else "last"
    return TrainConfig(epochs=None, lr=lr, weight_decay=wd, optimizer=optimizer, schedule="poly",
                       seed=job.common.seed, device=device, validate_every=1, keep=keep,
                       max_minutes=minutes, steps_per_epoch=job.settings.steps_per_epoch,
                       checkpoint_path=job.checkpoint(stage), checkpoint_minutes=job.common.checkpoint_minutes,
                       resume=job.common.resume, progress=job.progress)


def _summary(result, config: TrainConfig, **extra) -> dict:
    """What the card records of one stage: steps, minutes, kept epoch and score, first and last epoch's mean loss
    (epochs cut short by the budget before their first step are skipped), config."""
    losses = [h["loss"] for h in result.history if h["steps"]]
    return {"steps": int(sum(h["steps"] for h in result.history)), "minutes": round(result.minutes, 2),
            "kept_epoch": result.epoch, "validation_dice": None if result.score is None else round(result.score, 4),
            "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)] if losses else None,
            "config": config.to_dict(), **extra}


def _source(job: TrainJob) -> tuple[Optional[ModelFolder], bool]:
    """The model whose networks and pre-processing a run takes (``--init`` or ``--networks-from``) and whether
    the trained networks start from its weights (``--init``)."""
    init, keep = job.common.init, job.settings.networks_from
    if init is not None and keep is not None and Path(init).resolve() != Path(keep).resolve():
        raise InputError("give --init MODEL (fine-tune, keeping MODEL's other networks) or --networks-from MODEL "
                         "(keep its other networks, train fresh ones), or both with the same folder")
    chosen = init if init is not None else keep
    return (None if chosen is None else load_model_folder(chosen, METHOD)), init is not None


def train(job: TrainJob) -> ModelFolder:
    """Train the stages of ``--stage`` on the job's training cases and write its model folder (module
    docstring); the checkpoints folder is removed once the model is saved."""
    s: L2STrainSettings = job.settings
    stages = STAGES[s.stage]
    minutes = stage_minutes(stages, job.common.minutes, s)
    base, finetune = _source(job)
    if "seg" in stages and "loc" not in stages and (base is None or NETWORK_FILES["loc"] not in base.card["files"]):
        raise InputError("--stage seg needs a localisation net: use --stage both, or --networks-from/--init MODEL "
                         "holding loc.pt")
    if base is not None:
        prep = base.settings(L2SPreprocessing, "preprocessing", "the pre-processing the model was trained with",
                             REQUIRED_PREPROCESSING)
        log.info("autopet-l2snet: pre-processing of %s (the window and size flags are not used)", base.path)
    else:
        prep = s.preprocessing()
    device = resolve_device(job.common.device)
    train_cases, held = job.train_cases(), job.held_out_cases()
    volumes = load_volumes(train_cases, prep, job.label_map)
    val_volumes = load_volumes(held, prep, job.label_map)
    log.info("autopet-l2snet: %d training cases, %d held out", len(volumes), len(val_volumes))
    specs, states, summaries = {}, {}, {}
    if base is not None:
        for name, spec in base.require("networks", "the networks and their keyword arguments").items():
            specs[name], states[name] = spec, base.load_network(name).state_dict()
        summaries.update({stage: record for stage, record in base.card.get("training", {}).get("stages", {}).items()
                          if NETWORK_FILES.get(stage) in specs})  # only the networks this model keeps
    rng = np.random.default_rng(job.common.seed + 1)
    loc_net = None
    if "loc" in stages:
        arch = PAPER_LOC if s.paper_loc else {"encoder": list(s.loc_encoder), "decoder": list(s.loc_decoder),
                                              "blocks": s.loc_blocks}
        loc_net = _start("loc.pt", finetune, specs, states) or loc_network(**arch)
        validation = [sample_slice(val_volumes, prep.loc_size, rng)
                      for _ in range(VALIDATION_SAMPLES if val_volumes and s.keep == "best" else 0)]
        config = _config(job, "loc", device, minutes["loc"], "adam", s.loc_lr, 0.0, bool(validation))
        result = LocTrainer(loc_net, config, volumes, prep.loc_size, s.loc_batch_size, s.dice_weight, validation,
                            s.dice_smooth).fit()
        loc_net.load_state_dict(result.state)
        states["loc.pt"], specs["loc.pt"] = result.state, _spec("L2SLocNet", loc_net)
        summaries["loc"] = _summary(result, config, loss=f"BCE + {s.dice_weight:g} * soft Dice",
                                    dice_smooth=s.dice_smooth, lesion_slice_fraction=0.2, batch=s.loc_batch_size)
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
        net = _start(NETWORK_FILES[key], finetune, specs, states)
        patch, prior = tuple(s.train_patch), None
        if net is None:  # a fresh net starts at the lesion-voxel fraction, not 0.5 (module docstring)
            net = seg_network(list(s.seg_channels))
            prior = initial_probability(s.initial_probability, volumes, patch, s.lesion_probability,
                                        np.random.default_rng(job.common.seed + 2))
            set_prior_probability(net.head, prior)
        validation = [sample_patch(v, patch, rng, 1.0, use_cue=False) for v in val_volumes
                      for _ in range(max(1, VALIDATION_SAMPLES // len(val_volumes)))] \
            if val_volumes and s.keep == "best" else []
        config = _config(job, key, device, minutes[key], s.seg_optimizer, s.seg_lr, 1e-4, bool(validation))
        hot_level = float(scale(np.array([HOT_SUV]), prep.pet_window)[0])  # the Volume's PET is scaled
        result = SegTrainer(net, config, volumes, patch, s.seg_batch_size, key == "seg", s.dice_weight, validation,
                            s.lesion_probability, s.dice_smooth, s.ct_dropout, s.hot_negative_probability,
                            hot_level).fit()
        states[NETWORK_FILES[key]], specs[NETWORK_FILES[key]] = result.state, _spec("UNet", net)
        summaries[key] = _summary(result, config, train_patch=list(patch), batch=s.seg_batch_size,
                                  lesion_probability=s.lesion_probability, dice_smooth=s.dice_smooth,
                                  hot_negative_probability=s.hot_negative_probability, hot_suv=HOT_SUV,
                                  ct_dropout=s.ct_dropout,
                                  initial_lesion_probability=prior,
                                  loss=("weighted BCE + weighted soft Dice, weight 1 + P_loc" if key == "seg"
                                        else "BCE + soft Dice (no cue weight)"))
    card = {
        "method": METHOD,
        "networks": specs,
        "preprocessing": replace(prep, ct_dropout=model_ct_dropout(specs, summaries, prep.ct_dropout)).to_dict(),
        "labels": dict(LABELS),
        "paper": {"preprocessing": PAPER_PREPROCESSING, "loc_network": PAPER_LOC, "seg_channels": SEG_CHANNELS,
                  "loc_encoder": "Res2Net-50 pretrained on ImageNet; not available offline, so a residual "
                                 "encoder trained from scratch is used (lesionseg.methods.autopet.network)"},
        "training": job.training_record(
            stage=s.stage, device=device, finetune=finetune, base=None if base is None else str(base.path),
            base_data=None if base is None else {k: base.card.get("training", {}).get(k)
                                                 for k in ("data", "synthetic")},
            stages=summaries),
    }
    folder = save_model_folder(job.output, card, states, fp16=not s.fp32, overwrite=job.overwrite)
    shutil.rmtree(job.checkpoints, ignore_errors=True)
    return folder


def model_ct_dropout(networks: Iterable[str], stages: Mapping[str, dict], default: float) -> float:
    """A model's card ``ct_dropout`` (PET-only mode needs it > 0): the lowest of its 3D nets' own, read from each
    net's stage record (0 for a record from before the option), since every 3D net must have seen blank CTs in
    training; ``default`` for a model without 3D nets. The nets a run trains always train with the flag's value;
    a run that keeps a base's net trained without dropout therefore records 0. ``scripts/autopet_combine.py``
    uses it for joined models too."""
    values = [float(stages.get(key, {}).get("ct_dropout") or 0.0) for key in ("seg", "plain")
              if NETWORK_FILES[key] in networks]
    return min(values, default=default)


def _start(name: str, finetune: bool, specs: dict, states: dict) -> Optional[torch.nn.Module]:
    """With ``finetune`` (``--init``), the base's network ``name`` (its architecture and weights) to train further."""
    if not finetune:
        return None
    if name not in specs:
        raise InputError(f"--init MODEL must hold {name} to fine-tune it")
    net = build_network(specs[name]["class"], specs[name].get("kwargs"))
    net.load_state_dict(states[name])
    return net


def initial_probability(value: str, volumes: list, patch: tuple, lesion_probability: float,
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


TRAINING = Training(settings=L2STrainSettings, train=train, stratify=is_positive)
"""The spec's ``training`` entry (``lesionseg train autopet-l2snet``)."""
