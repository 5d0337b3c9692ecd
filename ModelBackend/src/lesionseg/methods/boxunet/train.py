"""Training of ``box-unet``: ``lesionseg train box-unet --data DATASET -o MODEL [--minutes M] [options]``.

The data are lesions of every kind in CT in the dataset convention, e.g. ``lesionseg data merge LIDC=lung
STSCT=soft-tissue DL3D=abdomen -o MIX --folds 5`` (docs/box-unet.md gives the commands). Steps:

1. one sample per lesion of the training and held-out cases (TS-FCN's :mod:`~lesionseg.methods.tsfcn.data`:
   the CT cropped around the lesion with room for every jittered box, the lesion's mask);
2. each epoch draws fresh slices: per lesion ``clip(depth // 4, 3, 12)`` slices (a 40-slice sarcoma gives 10, a
   6-slice nodule 3, so the kinds stay in balance), each with a box as a hand would draw it:
   - *3D box* (the other slices): the lesion's bounding box jittered ±``jitter`` in scale and
     shift per axis, a random slice of the box's range (slices past the lesion's ends teach empty outputs);
   - *neighbour box* (``propagation``): the bounding box of the lesion on the next or previous slice, enlarged
     by up to 30 % and jittered ±15 % (what RECIST -> 3D propagation hands the network, slice by slice);
   - *beyond* (``beyond``): the lesion's whole (jittered) box on a slice 1 .. max(2, depth // 2) slices past
     one of its ends, where the answer is "no lesion" (without these the network fills any box it is given,
     and RECIST -> 3D propagation would never stop: measured, see docs/box-unet.md);
3. augmentation: one of 8 mirror/rotations, HU contrast x U(0.9, 1.1) and offset U(-40, 40), Gaussian noise of
   up to 25 HU on half the slices, and on thin-slice cases (< 2 mm) the neighbour channels two slices away
   (a thicker slice's view) on a fifth of the slices;
4. loss: binary cross-entropy + soft Dice; AdamW with a cosine schedule; the held-out mean per-lesion 3D Dice
   (evaluation boxes, seed 0) every ``--validate-every`` epochs; the last weights are kept;
5. the probability threshold and the largest-component step chosen on the *training* lesions (boxes of seed 1),
   scores measured with the weights as stored (float16 unless ``--fp32``);
6. ``recist-3d``'s key-box margin and propagation limit chosen on the training cases
   (:func:`lesionseg.methods.boxunet.train.choose_geometry`: one RECIST measurement per lesion, best mean 3D
   Dice), card written.
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

from ...data import Case
from ...data.labels import apply as apply_labels
from ...errors import InputError, LesionSegWarning
from ...geometry import IndexBox, recist_to_index
from ...io import read_image
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...nets.unet import UNet
from ...options import Settings, option
from ...prompts import Box
from ...registry import resolve_device
from ...train_job import Training, TrainJob
from ...training import TrainConfig, Trainer
from ..recist.dataset import lesion_prompts
from ..tsfcn import data
from ..tsfcn.preprocess import crop_slices, resize
from ..tsfcn.train import choose_postprocessing, mean_dice, probabilities
from .preprocess import BoxUNetPreprocessing, network_input
from .recist3d import Recist3D, reach_slices
from .segmenter import NETWORK, BoxUNet

log = logging.getLogger(__name__)

EVAL_SEED = 0
"""Seed of the held-out boxes (``lesionseg evaluate``'s default); the post-processing uses ``EVAL_SEED + 1``."""


KEY_MARGIN_CANDIDATES = (0.0, 0.05, 0.1, 0.2)
"""Shares of the axes' extent added on each side of the key slice's box that training tries
(:func:`choose_geometry`); 0.1 was the fixed margin before it was learnt."""
REACH_CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0)
"""The propagation limits (long axes per side) that training tries (:func:`choose_geometry`); 2.0 was the fixed
limit before it was learnt."""


@dataclass(frozen=True)
class BoxUNetTrainSettings(Settings):
    """``box-unet``'s own training flags (the common ones: :class:`lesionseg.train_job.CommonTrainSettings`)."""

    epochs: Optional[int] = option(None, "training epochs (with --minutes: at most; default 60 without --minutes)")
    batch_size: int = option(32, "slices per step")
    lr: float = option(2e-3, "peak AdamW learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    warmup_epochs: int = option(2, "linear warm-up epochs")
    width: int = option(16, "feature maps of the first U-Net level (doubled at each of the 4 levels)")
    jitter: float = option(0.25, "scale/shift jitter of the training boxes, a fraction of the lesion's size")
    propagation: float = option(0.3, "share of training slices whose box is the lesion's box on a neighbour slice")
    beyond: float = option(0.15, "share of training slices past the lesion's ends (up to half its depth) with the "
                                 "lesion's whole box: teaches where a lesion stops (RECIST -> 3D)")
    validate_every: int = option(5, "score the held-out lesions every N epochs")
    fp32: bool = option(False, "store float32 weights (default float16)")

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"{self.flag('epochs')} must be >= 1, got {self.epochs}")
        for name in ("batch_size", "validate_every", "width"):
            if getattr(self, name) < 1:
                raise InputError(f"{self.flag(name)} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise InputError(f"need {self.flag('lr')} > 0, {self.flag('weight_decay')} >= 0 and "
                             f"{self.flag('warmup_epochs')} >= 0")
        if not 0.0 <= self.jitter < 1.0 or not 0.0 <= self.propagation <= 1.0 or not 0.0 <= self.beyond <= 1.0:
            raise InputError(f"{self.flag('jitter')} must be in [0, 1), {self.flag('propagation')} and "
                             f"{self.flag('beyond')} in [0, 1]")
        if self.propagation + self.beyond > 1.0:
            raise InputError(f"{self.flag('propagation')} + {self.flag('beyond')} must be at most 1")


def slices_per_lesion(mask: np.ndarray) -> int:
    """Training slices drawn per lesion and epoch: ``clip(depth // 4, 3, 12)``."""
    lo, hi = data.tight(mask)
    return int(np.clip((hi[2] - lo[2] + 1) // 4, 3, 12))


def _box_3d(sample: data.Sample, rng: np.random.Generator, jitter: float) -> tuple[IndexBox, int]:
    box = data.jittered_index_box(sample.image, sample.mask, rng, jitter)
    return box, int(rng.integers(box.lo[2], box.hi[2] + 1))


def _box_beyond(sample: data.Sample, rng: np.random.Generator, jitter: float) -> Optional[tuple[IndexBox, int]]:
    """The lesion's in-plane box (jittered) on a slice 1 .. max(2, depth // 2) slices past one of its ends (None
    when that slice is outside the crop)."""
    lo, hi = data.tight(sample.mask)
    depth = int(hi[2] - lo[2] + 1)
    gap = int(rng.integers(1, max(2, depth // 2) + 1))
    k = int(lo[2] - gap if rng.random() < 0.5 else hi[2] + gap)
    if not 0 <= k < sample.mask.shape[0]:
        return None
    box, _ = _box_3d(sample, rng, jitter)
    return IndexBox(np.array([box.lo[0], box.lo[1], k]), np.array([box.hi[0], box.hi[1], k])), k


def _box_neighbour(sample: data.Sample, rng: np.random.Generator) -> Optional[tuple[IndexBox, int]]:
    mask = sample.mask
    ks = np.flatnonzero(mask.any(axis=(1, 2)))
    k = int(rng.integers(ks[0] - 1, ks[-1] + 2))
    other = k + int(rng.choice((-1, 1)))
    if not (0 <= k < mask.shape[0] and 0 <= other < mask.shape[0]) or not mask[other].any():
        return None
    j, i = np.nonzero(mask[other])
    lo, hi = np.array([i.min(), j.min()], float), np.array([i.max(), j.max()], float)
    side = (hi - lo + 1) * (1 + rng.uniform(0, 0.3)) * rng.uniform(0.85, 1.15, 2)
    centre = (lo + hi) / 2 + rng.uniform(-0.15, 0.15, 2) * side
    a, b = np.append(centre - side / 2, k), np.append(centre + side / 2, k)
    return data.index_range(sample.image, a, b), k


def training_slices(items: Sequence[data.Sample], prep: BoxUNetPreprocessing, rng: np.random.Generator,
                    jitter: float, propagation: float, beyond: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of augmented training slices (module docstring, steps 2-3): ``x`` ``(N, 5, s, s)`` float32 and
    ``y`` ``(N, s, s)`` float32 0/1."""
    xs, ys = [], []
    for sample in items:
        array = sample.image.array
        thin = float(sample.image.spacing[2]) < 2.0
        for _ in range(slices_per_lesion(sample.mask)):
            u = rng.random()
            drawn = (_box_neighbour(sample, rng) if u < propagation else
                     _box_beyond(sample, rng, jitter) if u < propagation + beyond else None)
            box, k = drawn or _box_3d(sample, rng, jitter)
            box = IndexBox(np.array([box.lo[0], box.lo[1], k]), np.array([box.hi[0], box.hi[1], k]))
            hu = (float(rng.uniform(0.9, 1.1)), float(rng.uniform(-40, 40)))
            step = 2 if thin and rng.random() < 0.2 else 1
            x, sq = network_input(array, box, prep, hu, step)
            if rng.random() < 0.5:
                sd = float(rng.uniform(0, 25))
                noise = torch.randn(x.shape[-2:]) * sd
                for c, window in enumerate((prep.wide,) * 3 + (prep.soft,)):
                    x[0, c] += noise * (2.0 / (window[1] - window[0]))
            y = resize(torch.from_numpy(crop_slices(sample.mask.astype(np.float32), sq, 0.0)), prep.size)
            t = int(rng.integers(8))
            xs.append(data.dihedral(x[0].numpy(), t))
            ys.append(data.dihedral((y[0] >= 0.5).float().numpy(), t))
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


class BoxUNetTrainer(Trainer):
    """Trainer hooks: fresh slices each epoch, BCE + soft Dice, held-out mean per-lesion 3D Dice."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, train: Sequence[data.Sample],
                 held_out: Sequence[data.Sample], boxes: Sequence[Box], prep: BoxUNetPreprocessing,
                 settings: BoxUNetTrainSettings) -> None:
        super().__init__(model, config)
        self.train_items, self.held_out, self.boxes, self.prep, self.s = train, held_out, boxes, prep, settings

    def train_batches(self, epoch: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        x, y = training_slices(self.train_items, self.prep, self.rng, self.s.jitter, self.s.propagation,
                               self.s.beyond)
        return data.batches(x, y, self.s.batch_size, self.rng)

    def loss(self, batch: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
        x, y = (torch.from_numpy(np.ascontiguousarray(a)).to(self.config.device) for a in batch)
        logits = self.model(x.contiguous(memory_format=torch.channels_last))[:, 0]
        bce = F.binary_cross_entropy_with_logits(logits, y)
        p = torch.sigmoid(logits)
        inter, total = (p * y).sum(dim=(1, 2)), (p + y).sum(dim=(1, 2))
        dice = 1.0 - (2.0 * inter + 1.0) / (total + 1.0)
        return bce + dice.mean()

    def validate(self) -> Optional[dict]:
        if not self.held_out:
            return None
        probs = probabilities(self.model, self.prep, self.held_out, self.boxes, self.config.device, BoxUNet)
        return {"score": mean_dice(self.held_out, probs, 0.5, True)}


def _groups(job: TrainJob, items: Sequence[data.Sample]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in items:
        key = job.dataset.group(s.case) or job.dataset.name
        out[key] = out.get(key, 0) + 1
    return out


def train(job: TrainJob) -> ModelFolder:
    """Run the whole training of the module docstring; returns the written model folder."""
    t0 = time.perf_counter()
    s: BoxUNetTrainSettings = job.settings
    device = resolve_device(job.common.device)
    prep = BoxUNetPreprocessing()
    train_items = data.read_samples(job.train_cases(), job.label_map, s.jitter, prep.min_side)
    held_out = data.read_samples(job.held_out_cases(), job.label_map, s.jitter, prep.min_side)
    if not train_items:
        raise InputError(f"the training cases of {job.dataset.root} hold no lesion (label map {job.label_map})")
    log.info("%d training lesions %s, %d held-out lesions %s", len(train_items), _groups(job, train_items),
             len(held_out), _groups(job, held_out))
    kwargs = dict(NETWORK, channels=[s.width * 2 ** n for n in range(4)])
    net = UNet(**kwargs)
    earlier = None
    if job.common.init is not None:
        init = load_model_folder(job.common.init, "box-unet")
        init.load_network("weights.pt", lambda: net)
        earlier = init.card.get("training", {})
    epochs = s.epochs if s.epochs is not None or job.common.minutes is not None else 60
    config = TrainConfig(epochs=epochs, lr=s.lr, weight_decay=s.weight_decay, optimizer="adamw", schedule="cosine",
                         warmup_epochs=s.warmup_epochs, seed=job.common.seed, device=device,
                         validate_every=s.validate_every, keep="last", max_minutes=job.common.minutes,
                         progress=job.progress, checkpoint_path=job.checkpoint("box-unet"),
                         checkpoint_minutes=job.common.checkpoint_minutes, resume=job.common.resume)
    boxes = data.sample_boxes(held_out, EVAL_SEED)
    trainer = BoxUNetTrainer(net.to(memory_format=torch.channels_last), config, train_items, held_out, boxes, prep, s)
    result = trainer.fit()
    state = result.state if s.fp32 else {k: v.half().float() if v.is_floating_point() else v
                                         for k, v in result.state.items()}
    net.load_state_dict(state)
    prep, scores = choose_postprocessing(net, prep, train_items, EVAL_SEED + 1, device, BoxUNet)
    margin, reach, geometry = choose_geometry(Recist3D(net=net, preprocessing=prep, device=device),
                                              job.train_cases(), job.label_map)
    prep = dataclasses.replace(prep, recist_reach=reach, recist_key_margin=margin)
    log.info("recist-3d: key-box margin %g, propagation limit %g long axes (training 3D Dice %s)", margin, reach,
             geometry.get(f"{margin:g}/{reach:g}", "-: no lesion to measure"))
    metrics: dict = {"postprocessing_train_dice": scores, "recist3d_geometry_train_dice_3d": geometry,
                     "eval_seed": EVAL_SEED, "held_out_lesions": len(held_out)}
    if held_out:
        probs = probabilities(net, prep, held_out, boxes, device, BoxUNet)
        metrics.update({
            "validation_mean_dice_3d": round(mean_dice(held_out, probs, prep.threshold, prep.largest_component), 4),
            "validation_protocol": "mean per-lesion 3D Dice on the held-out cases, one box per lesion from its "
                                   f"mask jittered ±{data.EVAL_JITTER:.0%} in scale and shift per axis (lesionseg "
                                   f"evaluate box-unet --seed {EVAL_SEED})"})
        log.info("threshold %.2f, largest component %s; held-out Dice %.4f", prep.threshold,
                 prep.largest_component, metrics["validation_mean_dice_3d"])
    card = {
        "method": "box-unet",
        "networks": {"weights.pt": {"class": "UNet", "kwargs": kwargs,
                                    "parameters": int(sum(p.numel() for p in net.parameters()))}},
        "preprocessing": prep.to_dict(),
        "labels": {"background": 0, "lesion": 1},
        "training": job.training_record(
            lesions={"train": _groups(job, train_items), "held_out": _groups(job, held_out)},
            sources=job.dataset.meta.get("sources"), config=config.to_dict(), epochs_run=len(result.history),
            steps=result.steps, resumed=result.resumed, minutes=round((time.perf_counter() - t0) / 60.0, 1),
            history=result.history, initialised_from=earlier),
        "metrics": metrics,
    }
    folder = save_model_folder(job.output, card, {"weights.pt": state}, fp16=not s.fp32, overwrite=job.overwrite)
    shutil.rmtree(job.checkpoints, ignore_errors=True)
    return folder


def choose_geometry(seg: Recist3D, cases: Sequence[Case], label_map,
                    margins: Sequence[float] = KEY_MARGIN_CANDIDATES, reaches: Sequence[float] = REACH_CANDIDATES
                    ) -> tuple[float, float, dict[str, float]]:
    """The key-box margin of ``margins`` and the propagation limit of ``reaches`` (long axes per side) that give
    ``seg`` the best mean 3D Dice on ``cases`` (one RECIST measurement per lesion, drawn on its mask as the
    evaluation does), and the Dice of every pair (``"margin/reach"``). Each lesion is propagated once per margin
    to the largest limit; a smaller limit gives exactly that mask cut at its slice range, so every limit is
    scored from the one run. Ties go to the larger margin and limit. Without a lesion long enough to measure
    (:data:`lesionseg.methods.recist.dataset.MIN_LONG_MM`) the defaults come back with no scores.

    Why learnt: the network does not see reliably where a soft-tissue lesion ends in muscle and keeps filling
    its box past the end, so a cap on the depth, relative to the long axis, is what stops it; and the tighter
    the key box, the less muscle the propagation starts from (docs/box-unet.md).
    """
    reaches = sorted(float(c) for c in reaches)
    per_case: dict[tuple[float, float], list[float]] = {(m, c): [] for m in margins for c in reaches}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LesionSegWarning)
        for case in cases:
            label = case.read_label()
            truth = label.with_array(apply_labels(label.array, label_map))
            masks = data.lesion_masks(truth)
            prompts = lesion_prompts(truth)
            if not masks or not prompts:
                continue
            image = read_image(case.images[data.ct_channel(case.channel_names)])
            seg.set_image(image.with_array(np.asarray(image.array, np.float32)))
            for m in margins:
                runs = [(seg.propagate(p, reaches[-1], m), recist_to_index(image, p).k, p) for p in prompts]
                for c in reaches:
                    pred = np.zeros(truth.shape, bool)
                    for mask, k, p in runs:
                        n = reach_slices(image, p, c)
                        pred[max(k - n, 0):k + n + 1] |= mask[max(k - n, 0):k + n + 1] > 0
                    per_case[m, c].append(float(np.mean(data.lesion_dice(pred, masks, truth.spacing))))
    if not any(per_case.values()):  # nothing measurable: the defaults of a model folder that learnt none
        return BoxUNetPreprocessing.recist_key_margin, BoxUNetPreprocessing.recist_reach, {}
    scores = {key: float(np.mean(v)) for key, v in per_case.items()}
    margin, reach = max(scores, key=lambda key: (round(scores[key], 4), key))
    return margin, reach, {f"{m:g}/{c:g}": round(v, 4) for (m, c), v in scores.items()}


TRAINING = Training(settings=BoxUNetTrainSettings, train=train)
"""The ``training`` entry of the ``box-unet`` spec."""

__all__ = ["TRAINING", "BoxUNetTrainSettings", "training_slices"]
