"""Training of TS-FCN: ``lesionseg train tsfcn --data DIR -o MODEL_DIR [options]``.

Also runnable as ``python -m lesionseg.methods.tsfcn.train`` with the same options. Steps: read the
image/mask pairs, split by patient, compute the normalisation and the inverse-frequency class weights on
the training crops, train with the paper's weighted cross-entropy (tumour ``1 - f``, background ``f``, ``f``
= tumour pixel fraction; paper 0.96 / 0.04) and weight decay 5e-4, pick the probability threshold and
whether to keep only the largest connected component on the *training* patients, measure the validation
Dice with seeded ±15 % jittered boxes, and write the model folder with its card. ``--init MODEL_DIR``
continues from an earlier model (the shipped one was trained in two such stages, see its card).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...registry import resolve_device
from ...training import Trainer, TrainConfig
from . import data
from .evaluate import mean_dice, tsfcn_predictions
from .network import CONFIGS, TSFCNNet, count_parameters
from .preprocess import PAPER_WINDOW, Preprocessing

log = logging.getLogger(__name__)

THRESHOLDS = tuple(np.round(np.arange(0.3, 0.96, 0.05), 2)) + (0.97, 0.98, 0.99)
"""Candidate tumour-probability thresholds, chosen on the training patients."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """TS-FCN options (``--data``, ``-o``, ``--seed``, ``--device``, ``--overwrite`` come from the CLI)."""
    parser.add_argument("--config", choices=sorted(CONFIGS), default="slim",
                        help="network size: slim (512-channel fc, default) or paper (4096)")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per step (default 8; paper: 1)")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak Adam learning rate (default 3e-4)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay (paper 5e-4)")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="linear warm-up epochs (default 1)")
    parser.add_argument("--window", type=float, nargs=2, default=PAPER_WINDOW, metavar=("LO", "HI"),
                        help="HU window mapped to 0..255 (default: the paper's -2000 4095)")
    parser.add_argument("--min-side", type=int, default=100,
                        help="smallest liberal-box side in pixels before resizing to 100 (paper: 100; smaller "
                             "values enlarge small tumours)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="fraction of patients held out for validation (default 0.2)")
    parser.add_argument("--train-jitter", type=float, default=0.25,
                        help="box scale/shift jitter of training boxes, fraction (default 0.25)")
    parser.add_argument("--eval-jitter", type=float, default=0.15,
                        help="box scale/shift jitter of the validation boxes (default 0.15)")
    parser.add_argument("--eval-seed", type=int, default=2016, help="seed of the validation boxes")
    parser.add_argument("--validate-every", type=int, default=5, help="validate every N epochs")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget; training stops after the epoch that exceeds it")
    parser.add_argument("--init", type=Path, default=None, metavar="MODEL_DIR",
                        help="start from the weights of this tsfcn model folder (same config) instead of scratch")
    parser.add_argument("--no-tune-threshold", action="store_true",
                        help="keep threshold 0.5 (argmax) and all components instead of choosing the "
                             "post-processing on the training patients")
    parser.add_argument("--fp32", action="store_true", help="store float32 weights (default float16)")
    parser.add_argument("--progress-bar", action="store_true", help="tqdm bar over each epoch's batches")


class TSFCNTrainer(Trainer):
    """:class:`~lesionseg.training.Trainer` hooks for TS-FCN: fresh jittered, augmented slices each
    epoch; weighted cross-entropy; validation = mean per-nodule 3D Dice on fixed jittered boxes."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, train_cases: Sequence[data.Case],
                 val_cases: Sequence[data.Case], val_boxes: Sequence[Any], prep: Preprocessing,
                 class_weights: torch.Tensor, batch_size: int, jitter: float) -> None:
        super().__init__(model, config)
        self.train_cases, self.val_cases, self.val_boxes = train_cases, val_cases, val_boxes
        self.prep, self.batch_size, self.jitter = prep, batch_size, jitter
        self.class_weights = class_weights.to(config.device)

    def train_batches(self, epoch: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        x, y = data.epoch_samples(self.train_cases, self.prep, self.rng, self.jitter)
        return data.batches(x, y, self.batch_size, self.rng)

    def loss(self, batch: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
        x, y = (torch.from_numpy(np.ascontiguousarray(a)).to(self.config.device) for a in batch)
        return F.cross_entropy(self.model(x), y, weight=self.class_weights)

    def validate(self) -> Optional[dict]:
        if not self.val_cases:
            return None
        probs = tsfcn_predictions(self.model, self.prep, self.val_cases, self.val_boxes, self.config.device)
        return {"score": mean_dice(self.val_cases, probs, 0.5)}


def choose_postprocessing(model: torch.nn.Module, prep: Preprocessing, cases: Sequence[data.Case], seed: int,
                          jitter: float, device: str) -> tuple[Preprocessing, dict]:
    """``prep`` with the threshold of :data:`THRESHOLDS` and the largest-component choice that give the best
    mean Dice on ``cases`` (jittered boxes from ``seed``), and the Dice of every candidate."""
    boxes = data.jitter_boxes(cases, seed, jitter, jitter)
    probs = tsfcn_predictions(model, prep, cases, boxes, device)
    scores = {(float(t), lcc): mean_dice(cases, probs, float(t), lcc) for t in THRESHOLDS for lcc in (False, True)}
    threshold, lcc = max(scores, key=scores.get)
    chosen = dataclasses.replace(prep, threshold=threshold, largest_component=lcc)
    return chosen, {f"{t:g}{' lcc' if c else ''}": round(v, 4) for (t, c), v in scores.items()}


def train(args: argparse.Namespace) -> ModelFolder:
    """Run the whole training described in the module docstring; returns the written model folder."""
    t0 = time.perf_counter()
    device = resolve_device(getattr(args, "device", "auto"))
    cases = data.load_cases(args.data)
    train_cases, val_cases = data.split_by_patient(cases, args.val_fraction, args.seed)
    log.info("split by patient (seed %d): %d train nodules / %d patients, %d validation nodules / %d patients",
             args.seed, len(train_cases), len({c.patient for c in train_cases}), len(val_cases),
             len({c.patient for c in val_cases}))
    base = Preprocessing(window=tuple(args.window), min_side=args.min_side)
    mean, std, fraction = data.intensity_statistics(train_cases, base)
    prep = dataclasses.replace(base, mean=(mean,) * 3, std=(std,) * 3)
    weights = torch.tensor([fraction, 1.0 - fraction], dtype=torch.float32)
    log.info("normalisation mean %.3f std %.3f; tumour fraction %.4f -> class weights %s", mean, std, fraction,
             weights.tolist())
    net = TSFCNNet.from_config(args.config)
    earlier = None
    if getattr(args, "init", None) is not None:
        init = load_model_folder(args.init, "tsfcn")
        init.load_network("weights.pt", lambda: net)  # the --config network, checked against the file
        earlier = init.card.get("training", {})
        log.info("initialised from %s", args.init)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, optimizer="adam",
                         schedule="cosine", warmup_epochs=args.warmup_epochs, seed=args.seed, device=device,
                         validate_every=args.validate_every, keep="last", max_minutes=args.max_minutes,
                         progress=args.progress_bar)
    val_boxes = data.jitter_boxes(val_cases, args.eval_seed, args.eval_jitter, args.eval_jitter)
    trainer = TSFCNTrainer(net, config, train_cases, val_cases, val_boxes, prep, weights, args.batch_size,
                           args.train_jitter)
    result = trainer.fit()
    net.load_state_dict(result.state)
    scores: dict = {}
    if not args.no_tune_threshold:
        prep, scores = choose_postprocessing(net, prep, train_cases, args.eval_seed + 1, args.eval_jitter, device)
    probs = tsfcn_predictions(net, prep, val_cases, val_boxes, device)
    metrics = {
        "validation_mean_dice_3d": round(mean_dice(val_cases, probs, prep.threshold, prep.largest_component), 4),
        "validation_mean_dice_3d_argmax": round(mean_dice(val_cases, probs, 0.5), 4),
        "eval_seed": args.eval_seed,
        "postprocessing_train_dice": scores,
        "validation_protocol": f"mean per-nodule 3D Dice, boxes from the masks jittered ±{args.eval_jitter:.0%} "
                               f"in scale and shift per axis (seed {args.eval_seed})",
    }
    log.info("threshold %.2f, largest component %s; validation Dice %.4f (argmax %.4f)", prep.threshold,
             prep.largest_component, metrics["validation_mean_dice_3d"], metrics["validation_mean_dice_3d_argmax"])
    card = {
        "method": "tsfcn",
        "network": {"class": "TSFCNNet", "config": args.config, "kwargs": dict(CONFIGS[args.config]),
                    "parameters": count_parameters(net)},
        "preprocessing": prep.to_dict(),
        "labels": {"0": "background", "1": "lesion"},
        "training": {
            "data": str(args.data), "command": getattr(args, "command_line", " ".join(sys.argv)),
            "seed": args.seed, "split": {"train_nodules": len(train_cases), "validation_nodules": len(val_cases),
                                         "train_patients": len({c.patient for c in train_cases}),
                                         "validation_patients": sorted({c.patient for c in val_cases})},
            "class_weights": [round(float(w), 4) for w in weights], "batch_size": args.batch_size,
            "train_jitter": args.train_jitter, "config": config.to_dict(), "epochs_run": len(result.history),
            "minutes": round((time.perf_counter() - t0) / 60.0, 1), "history": result.history,
            "initialised_from": earlier,
        },
        "metrics": metrics,
    }
    return save_model_folder(args.output, card, {"weights.pt": result.state}, fp16=not args.fp32,
                             overwrite=getattr(args, "overwrite", False))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m lesionseg.methods.tsfcn.train --data DIR -o MODEL_DIR [options]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="image/mask pairs folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="model folder to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = "python -m lesionseg.methods.tsfcn.train " + " ".join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    folder = train(args)
    log.info("model written to %s", folder.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
