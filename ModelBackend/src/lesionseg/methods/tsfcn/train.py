"""Training of TS-FCN: ``lesionseg train tsfcn --data DATASET -o MODEL [options]``.

Steps: read one sample per lesion of the training and held-out cases (:mod:`.data`), compute the
normalisation and the inverse-frequency class weights on the training crops, train with the paper's weighted
cross-entropy (lesion ``1 - f``, background ``f``, ``f`` = lesion pixel fraction; paper 0.96 / 0.04) and weight
decay 5e-4, pick the probability threshold and whether to keep only the largest connected component on the
*training* lesions, measure the held-out Dice with the evaluation's boxes (seed 0: what ``lesionseg evaluate
tsfcn`` reports; both with the weights as stored, float16 unless ``--fp32``), and write the model folder with
its card. ``--init MODEL`` continues from an earlier model with the same layers: the same ``--config``, or
``slim`` <-> ``fast``, which differ only in padding, or from a wider one whose strongest filters a narrower
``--config`` keeps (``fast`` -> ``lite``, :func:`.network.shrink_state`); the shipped model's card says which
stages it went through. Checkpoints go to ``MODEL.checkpoints/`` (``--resume``) and are
removed once the model is saved. Budget:
``--minutes`` (the cosine schedule then follows the clock) and/or ``--epochs``; with neither,
:data:`DEFAULT_EPOCHS` epochs.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import InputError, LesionSegWarning
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...options import Settings, option
from ...prompts import Box
from ...registry import resolve_device
from ...train_job import Training, TrainJob
from ...training import TrainConfig, Trainer
from . import data
from .network import CONFIGS, TSFCNNet, count_parameters, shrink_state
from .preprocess import PAPER_WINDOW, Preprocessing

log = logging.getLogger(__name__)

THRESHOLDS = tuple(np.round(np.arange(0.3, 0.96, 0.05), 2)) + (0.97, 0.98, 0.99)
"""Candidate lesion-probability thresholds, chosen on the training lesions."""
DEFAULT_EPOCHS = 40
"""Epochs when neither ``--epochs`` nor ``--minutes`` is given."""
EVAL_SEED = 0
"""Seed of the held-out boxes (``lesionseg evaluate``'s default ``--seed``); the post-processing is chosen on
the training lesions with boxes of seed ``EVAL_SEED + 1``."""


@dataclass(frozen=True)
class TSFCNTrainSettings(Settings):
    """TS-FCN's own training flags (the common ones: :class:`lesionseg.train_job.CommonTrainSettings`)."""

    config: str = option("slim", "network: slim (512-channel fc), fast (slim with 'same' padding, 2-2.5x "
                                 "faster), lite (fast with half the channels, ~4x faster again) or paper (4096)",
                         choices=tuple(sorted(CONFIGS)))
    epochs: Optional[int] = option(None, f"training epochs (with --minutes: at most; default {DEFAULT_EPOCHS} "
                                         "without --minutes)")
    batch_size: int = option(8, "slices per step (paper: 1)")
    lr: float = option(3e-4, "peak Adam learning rate")
    weight_decay: float = option(5e-4, "L2 weight decay (paper 5e-4)")
    warmup_epochs: int = option(1, "linear warm-up epochs")
    window: tuple[float, float] = option(PAPER_WINDOW, "HU window mapped to 0..255 (default: the paper's "
                                                       "-2000 4095)", metavar=("LO", "HI"), unit="HU")
    min_side: int = option(100, "smallest liberal-box side in pixels before resizing to 100 (paper: 100; smaller "
                                "values enlarge small lesions)")
    jitter: float = option(0.25, "box scale/shift jitter of the training boxes, a fraction of the lesion's size")
    validate_every: int = option(5, "score the held-out lesions every N epochs")
    tune_threshold: bool = option(True, "choose the probability threshold and the largest-component step on the "
                                        "training lesions (else threshold 0.5 = argmax, all components)")
    fp32: bool = option(False, "store float32 weights (default float16)")

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"{self.flag('epochs')} must be >= 1, got {self.epochs}")
        for name in ("batch_size", "min_side", "validate_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{self.flag(name)} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise InputError(f"need {self.flag('lr')} > 0, {self.flag('weight_decay')} >= 0 and "
                             f"{self.flag('warmup_epochs')} >= 0")
        if not 0.0 <= self.jitter < 1.0:
            raise InputError(f"{self.flag('jitter')} must be in [0, 1), got {self.jitter}")
        if not self.window[1] > self.window[0]:
            raise InputError(f"{self.flag('window')} needs LO < HI, got {self.window}")


class TSFCNTrainer(Trainer):
    """:class:`~lesionseg.training.Trainer` hooks for TS-FCN: fresh jittered, augmented slices each
    epoch; weighted cross-entropy; validation = mean per-lesion 3D Dice on the evaluation's boxes."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, train: Sequence[data.Sample],
                 held_out: Sequence[data.Sample], boxes: Sequence[Box], prep: Preprocessing,
                 class_weights: torch.Tensor, batch_size: int, jitter: float) -> None:
        super().__init__(model, config)
        self.train_items, self.held_out, self.boxes = train, held_out, boxes
        self.prep, self.batch_size, self.jitter = prep, batch_size, jitter
        self.class_weights = class_weights.to(config.device)

    def train_batches(self, epoch: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        x, y = data.epoch_samples(self.train_items, self.prep, self.rng, self.jitter)
        return data.batches(x, y, self.batch_size, self.rng)

    def loss(self, batch: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
        x, y = (torch.from_numpy(np.ascontiguousarray(a)).to(self.config.device) for a in batch)
        return F.cross_entropy(self.model(x), y, weight=self.class_weights)

    def validate(self) -> Optional[dict]:
        if not self.held_out:
            return None
        probs = probabilities(self.model, self.prep, self.held_out, self.boxes, self.config.device)
        return {"score": mean_dice(self.held_out, probs, 0.5)}


def probabilities(net: torch.nn.Module, prep: Preprocessing, items: Sequence[data.Sample], boxes: Sequence[Box],
                  device: str = "cpu", segmenter: Optional[type] = None) -> list[np.ndarray]:
    """``(K, J, I)`` float32 lesion probabilities of each sample for its box, through the segmenter (warnings
    about boxes partly outside the image are silenced: clipping is the documented behaviour). ``segmenter``:
    the box method's class, built as ``segmenter(net=net, preprocessing=prep, device=device)`` (default
    :class:`~.segmenter.TSFCN`; ``box-unet`` passes its own)."""
    from .segmenter import TSFCN

    seg = (segmenter or TSFCN)(net=net, preprocessing=prep, device=device)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LesionSegWarning)
        for item, box in zip(items, boxes):
            seg.set_image(item.image)
            out.append(seg.predict_probability(box).array)
    return out


def mean_dice(items: Sequence[data.Sample], probs: Sequence[np.ndarray], threshold: float,
              largest_component: bool = False) -> float:
    """Mean over lesions of the 3D Dice of the label :func:`.segmenter.binarize` makes from each probability."""
    from .segmenter import binarize

    return float(np.mean([data.lesion_dice(binarize(p, threshold, largest_component), [s.mask])[0]
                          for s, p in zip(items, probs)]))


def choose_postprocessing(net: torch.nn.Module, prep: Preprocessing, items: Sequence[data.Sample], seed: int,
                          device: str, segmenter: Optional[type] = None) -> tuple[Preprocessing, dict]:
    """``prep`` with the threshold of :data:`THRESHOLDS` and the largest-component choice that give the best
    mean Dice on ``items`` (the evaluation's boxes of ``seed``), and the Dice of every candidate (``segmenter``:
    as for :func:`probabilities`)."""
    probs = probabilities(net, prep, items, data.sample_boxes(items, seed), device, segmenter)
    scores = {(float(t), lcc): mean_dice(items, probs, float(t), lcc) for t in THRESHOLDS for lcc in (False, True)}
    threshold, lcc = max(scores, key=scores.get)
    chosen = dataclasses.replace(prep, threshold=threshold, largest_component=lcc)
    return chosen, {f"{t:g}{' lcc' if c else ''}": round(v, 4) for (t, c), v in scores.items()}


def train(job: TrainJob) -> ModelFolder:
    """Run the whole training described in the module docstring; returns the written model folder."""
    t0 = time.perf_counter()
    s: TSFCNTrainSettings = job.settings
    device = resolve_device(job.common.device)
    train_cases, held_cases = job.train_cases(), job.held_out_cases()
    train_items = data.read_samples(train_cases, job.label_map, s.jitter, s.min_side)
    held_out = data.read_samples(held_cases, job.label_map, s.jitter, s.min_side)
    if not train_items:
        raise InputError(f"the training cases of {job.dataset.root} hold no lesion (label map {job.label_map})")
    log.info("%d training lesions (%d cases), %d held-out lesions (%d cases)", len(train_items), len(train_cases),
             len(held_out), len(held_cases))
    base = Preprocessing(window=s.window, min_side=s.min_side)
    mean, std, fraction = data.intensity_statistics(train_items, base)
    prep = dataclasses.replace(base, mean=(mean,) * 3, std=(std,) * 3)
    weights = torch.tensor([fraction, 1.0 - fraction], dtype=torch.float32)
    log.info("normalisation mean %.3f std %.3f; lesion fraction %.4f -> class weights %s", mean, std, fraction,
             weights.tolist())
    net = TSFCNNet.from_config(s.config)
    earlier = None
    if job.common.init is not None:
        init = load_model_folder(job.common.init, "tsfcn")
        _, kwargs = init.network_spec("weights.pt")
        shapes = lambda n: {k: v.shape for k, v in n.state_dict().items()}  # noqa: E731
        if shapes(TSFCNNet(**kwargs)) == shapes(net):
            init.load_network("weights.pt", lambda: net)  # same layers: checked against the file
        else:  # a wider model: keep its strongest filters
            net.load_state_dict(shrink_state(init.load_network("weights.pt", lambda: TSFCNNet(**kwargs))
                                             .state_dict(), net))
            log.info("kept the filters with the largest L1 norms of the wider model")
        earlier = init.card.get("training", {})
        log.info("initialised from %s", job.common.init)
    epochs = s.epochs if s.epochs is not None or job.common.minutes is not None else DEFAULT_EPOCHS
    config = TrainConfig(epochs=epochs, lr=s.lr, weight_decay=s.weight_decay, optimizer="adam", schedule="cosine",
                         warmup_epochs=s.warmup_epochs, seed=job.common.seed, device=device,
                         validate_every=s.validate_every, keep="last", max_minutes=job.common.minutes,
                         progress=job.progress, checkpoint_path=job.checkpoint("tsfcn"),
                         checkpoint_minutes=job.common.checkpoint_minutes, resume=job.common.resume)
    boxes = data.sample_boxes(held_out, EVAL_SEED)
    trainer = TSFCNTrainer(net, config, train_items, held_out, boxes, prep, weights, s.batch_size, s.jitter)
    result = trainer.fit()
    state = result.state if s.fp32 else {k: v.half().float() if v.is_floating_point() else v
                                         for k, v in result.state.items()}
    net.load_state_dict(state)  # the weights as stored: the post-processing and the scores are theirs
    scores: dict = {}
    if s.tune_threshold:
        prep, scores = choose_postprocessing(net, prep, train_items, EVAL_SEED + 1, device)
    metrics: dict = {"postprocessing_train_dice": scores, "eval_seed": EVAL_SEED,
                     "held_out_lesions": len(held_out)}
    if held_out:
        probs = probabilities(net, prep, held_out, boxes, device)
        metrics.update({
            "validation_mean_dice_3d": round(mean_dice(held_out, probs, prep.threshold, prep.largest_component), 4),
            "validation_mean_dice_3d_argmax": round(mean_dice(held_out, probs, 0.5), 4),
            "validation_protocol": "mean per-lesion 3D Dice on the held-out cases, one box per lesion from its "
                                   f"mask jittered ±{data.EVAL_JITTER:.0%} in scale and shift per axis (lesionseg "
                                   f"evaluate tsfcn --seed {EVAL_SEED})"})
        log.info("threshold %.2f, largest component %s; held-out Dice %.4f (argmax %.4f)", prep.threshold,
                 prep.largest_component, metrics["validation_mean_dice_3d"],
                 metrics["validation_mean_dice_3d_argmax"])
    card = {
        "method": "tsfcn",
        "networks": {"weights.pt": {"class": "TSFCNNet", "config": s.config, "kwargs": dict(CONFIGS[s.config]),
                                    "parameters": count_parameters(net)}},
        "preprocessing": prep.to_dict(),
        "labels": {"background": 0, "lesion": 1},
        "training": job.training_record(
            lesions={"train": len(train_items), "held_out": len(held_out)},
            class_weights=[round(float(w), 4) for w in weights], config=config.to_dict(),
            epochs_run=len(result.history), steps=result.steps, resumed=result.resumed,
            minutes=round((time.perf_counter() - t0) / 60.0, 1), history=result.history, initialised_from=earlier),
        "metrics": metrics,
    }
    folder = save_model_folder(job.output, card, {"weights.pt": state}, fp16=not s.fp32,
                               overwrite=job.overwrite)
    shutil.rmtree(job.checkpoints, ignore_errors=True)
    return folder


TRAINING = Training(settings=TSFCNTrainSettings, train=train)
"""The ``training`` entry of the ``tsfcn`` spec."""
