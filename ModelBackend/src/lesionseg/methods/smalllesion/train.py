"""``lesionseg train small-lesion-il --data DIR -o MODEL``: one variant of the paper's ablation (Table 1).

The recipe of arXiv 2207.14700, kept where two CPU cores allow it:

* 3D U-Net, channels (8, 16, 32, 64), 3x3x3 convolutions, GroupNorm between convolution and ReLU, 1x1x1
  head; the variant (``--variant``) sets its channels (:data:`.segmenter.CHANNELS`);
* loss ``L = GDL(channel 0, lesion) + il_weight * BCE(sigmoid(channel 1), Y_IL)`` with the two-class
  generalized Dice loss of Sudre et al. 2017 and the soft target ``Y_IL = L(smoothed HU)``;
* AdamW, lr 3e-4, weight decay 5e-4, batch 1, sub-volumes that each contain at least one lesion voxel,
  augmented by a rotation of 180 degrees about z (``np.rot90(k=2)`` over the rows and columns) with
  probability 0.5;
* the intensity prior is fitted on the **training cases only** (:meth:`.prior.IntensityPrior.fit`) and
  stored beside the weights as ``prior.json`` (``seg+il-shifted`` stores the unshifted prior and
  ``prior_shift_hu: 100`` in the card; its target uses the shifted one).

Changed for the CPU: 64^3 sub-volumes (``--patch``; the paper 224^3), a wall-clock budget (``--minutes``)
with poly decay instead of an iteration count. A fresh network's lesion logit starts with the bias
``log(0.01 / 0.99)`` (Lin et al. 2017's prior-probability initialisation): from the default ``P = 0.5``
everywhere, the generalized Dice loss's gradient on the background is tiny (its denominator is dominated by
``sum P`` over the 0.1 %-lesion sub-volume), and 527 CPU steps (6 min) left ``P`` at 0.6 everywhere.

``--folds K --fold F`` holds fold ``F`` out and records its cases in the card for :mod:`.evaluate`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import InputError
from ...image import Image
from ...io import read_image
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...nets.unet import UNet, set_prior_probability
from ...registry import resolve_device
from ...resample import resample_to_grid
from ...training import Trainer, TrainConfig
from .data import folds, list_cases
from .prior import IntensityPrior
from .segmenter import CHANNELS, METHOD, SmallLesionPreprocessing, normalise, to_working_grid

log = logging.getLogger(__name__)
SHIFT_HU = 100.0
"""The prior shift of ``seg+il-shifted`` (the paper's +100 HU)."""
PAPER_CHANNELS = (8, 16, 32, 64)
PRIOR_PROBABILITY = 0.01
"""Initial lesion probability of a fresh network: the bias of its lesion logit (see :func:`train`)."""


def prior_json_text(prior) -> str:
    """The text ``prior.save`` writes (to store it inside a model folder written in one go)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        prior.save(Path(tmp) / "prior.json")
        return (Path(tmp) / "prior.json").read_text(encoding="utf-8")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Method options of ``lesionseg train small-lesion-il``."""
    parser.add_argument("--variant", choices=tuple(CHANNELS), default="seg+il",
                        help="ablation variant (default seg+il, the proposed method)")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget (default 10)")
    parser.add_argument("--patch", type=int, nargs=3, default=[64, 64, 64], metavar=("D", "H", "W"),
                        help="training sub-volume in working voxels (default 64 64 64; paper 224^3)")
    parser.add_argument("--infer-patch", type=int, nargs=3, default=[128, 128, 128], metavar=("D", "H", "W"),
                        help="sliding-window size stored for inference (default 128 128 128)")
    parser.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap for inference")
    parser.add_argument("--il-weight", type=float, default=1.0, help="lambda of the likelihood loss (default 1)")
    parser.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (default 3e-4)")
    parser.add_argument("--spacing", type=float, default=1.0, help="isotropic working voxel in mm (default 1.0)")
    parser.add_argument("--channels", type=int, nargs="+", default=list(PAPER_CHANNELS),
                        help="feature maps per level (default the paper's 8 16 32 64)")
    parser.add_argument("--folds", type=int, default=0, help="cross-validation folds (0: train on every case)")
    parser.add_argument("--fold", type=int, default=0, help="the fold held out when --folds is given")
    parser.add_argument("--init", type=Path, default=None, metavar="MODEL_DIR",
                        help="start from this model's weights (same variant, network and held-out cases)")
    parser.add_argument("--steps-per-epoch", type=int, default=25, help="steps between log lines (default 25)")
    parser.add_argument("--fp32", action="store_true", help="store float32 weights (default float16)")


def generalized_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Two-class (lesion, background) generalized Dice loss of Sudre et al. 2017, mean over the batch.

    ``1 - (2 sum_l w_l sum_n r_ln p_ln + s) / (sum_l w_l sum_n (r_ln + p_ln) + s)`` with ``p = sigmoid(logits)``
    and ``1 - p``, ``r`` the target and its complement, ``w_l = 1 / (sum_n r_ln)^2`` (a class absent from the
    target gets the largest other weight, as MONAI's ``GeneralizedDiceLoss`` does). Written here because
    MONAI is not a dependency. ``logits`` and ``target``: ``(B, 1, *spatial)``.
    """
    p, r = torch.sigmoid(logits), target.to(logits.dtype)
    probs, ref = torch.cat([1 - p, p], dim=1), torch.cat([1 - r, r], dim=1)
    dims = tuple(range(2, logits.ndim))
    weight = 1.0 / ref.sum(dims) ** 2
    absent = torch.isinf(weight)
    weight = torch.where(absent, torch.zeros_like(weight), weight)
    weight = weight + absent * weight.max(dim=1, keepdim=True).values
    numerator = 2.0 * (weight * (probs * ref).sum(dims)).sum(1) + smooth
    denominator = (weight * (probs + ref).sum(dims)).sum(1) + smooth
    return (1.0 - numerator / denominator).mean()


@dataclass
class TrainVolume:
    """One training case on the working grid: ``x`` ``(C, K, J, I)`` float32 network input, ``y`` ``(K, J, I)``
    uint8 lesion mask, ``il`` ``(K, J, I)`` float32 likelihood target (None when unused), ``lesion`` ``(N, 3)``
    ``(k, j, i)`` indices of the lesion voxels. Every array is at least the patch size (zero-padded)."""

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
    channels = [normalise(work.array, prep.window_hu)]
    likelihood = prior.likelihood(prior.smooth(work).array) if variant != "seg" else None
    if variant == "seg+il-in":
        channels.append(likelihood)
    pad = [(0, max(p - s, 0)) for p, s in zip(patch, y.shape)]
    x = np.pad(np.stack(channels), [(0, 0), *pad])
    y = np.pad(y, pad)
    il = np.pad(likelihood, pad) if CHANNELS[variant][1] == 2 else None
    return TrainVolume(name, x, y, il, np.argwhere(y))


def sample_patch(volume: TrainVolume, patch: tuple[int, int, int], rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A ``patch`` sub-volume holding a random lesion voxel of ``volume`` (uniformly placed in it), rotated by
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
    """Fresh lesion-centred sub-volumes each step; generalized Dice + ``il_weight`` x BCE on channel 1."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, volumes: list[TrainVolume],
                 patch: tuple[int, int, int], steps: int, il_weight: float = 1.0) -> None:
        super().__init__(model, config)
        self.volumes, self.patch, self.steps, self.il_weight = volumes, tuple(patch), int(steps), float(il_weight)

    def train_batches(self, epoch: int) -> Iterable[Any]:
        for _ in range(self.steps):
            x, y, il = sample_patch(self.volumes[self.rng.integers(len(self.volumes))], self.patch, self.rng)
            yield (torch.from_numpy(x[None]), torch.from_numpy(y[None, None]),
                   None if il is None else torch.from_numpy(il[None, None]))

    def loss(self, batch: Any) -> torch.Tensor:
        x, y, il = (None if t is None else t.to(self.config.device) for t in batch)
        logits = self.model(x)
        loss = generalized_dice_loss(logits[:, :1], y)
        if logits.shape[1] > 1:
            loss = loss + self.il_weight * F.binary_cross_entropy_with_logits(logits[:, 1:], il)
        return loss


def _check_args(args: argparse.Namespace, n_cases: int) -> None:
    if args.minutes <= 0 or args.lr <= 0 or args.il_weight < 0 or args.spacing <= 0 or args.steps_per_epoch < 1:
        raise InputError("--minutes, --lr, --spacing and --steps-per-epoch must be > 0 and --il-weight >= 0")
    if len(args.channels) < 2 or min(args.channels) < 1:
        raise InputError(f"--channels needs at least two positive feature counts, got {args.channels}")
    if min(args.patch) < 8 or min(args.infer_patch) < 8:
        raise InputError(f"--patch and --infer-patch need at least 8 voxels per axis, got {args.patch}, "
                         f"{args.infer_patch}")
    if args.folds and not (2 <= args.folds <= n_cases and 0 <= args.fold < args.folds):
        raise InputError(f"need 2 <= --folds <= {n_cases} cases and 0 <= --fold < --folds, got {args.folds}, "
                         f"{args.fold}")


def _cohort(data: Path) -> dict:
    """Provenance from ``data/cohort.json`` (``synthetic``, ``generator``, ...); ``synthetic`` False without it."""
    path = Path(data) / "cohort.json"
    if not path.is_file():
        return {"synthetic": False}
    cohort = json.loads(path.read_text(encoding="utf-8"))
    keep = {k: cohort[k] for k in ("synthetic", "generator", "seed", "note", "description") if k in cohort}
    return {"synthetic": bool(cohort.get("synthetic", False)), **keep}


def _initial_weights(net: torch.nn.Module, path: Path, variant: str, held_out: list[str]) -> dict:
    """Load ``path``'s weights into ``net`` after checking they fit this run; returns the card's record."""
    base = load_model_folder(path, METHOD)
    base.require("training", "the training record with the held-out cases")
    if base.card.get("variant") != variant or base.network_spec("weights.pt")[1] != net.config:
        raise InputError(f"{path} is a {base.card.get('variant')} model with another network; --init needs the "
                         f"same variant ({variant}) and --channels")
    if sorted(base.card["training"].get("held_out_cases") or []) != sorted(held_out):
        raise InputError(f"{path} held out other cases than this run; continuing it would leak them")
    base.load_network("weights.pt", lambda: net)
    return {"folder": str(path), "command": base.card["training"].get("command"),
            "steps": base.card["training"].get("steps"), "minutes": base.card["training"].get("minutes")}


def train(args: argparse.Namespace) -> ModelFolder:
    """Train ``args.variant`` on ``args.data`` and write the model folder ``args.output`` (atomically)."""
    cases = list_cases(args.data)
    _check_args(args, len(cases))
    held_out = folds(cases, args.folds, args.seed)[args.fold] if args.folds else []
    train_cases = [c for c in cases if c.name not in held_out]
    if not train_cases:
        raise InputError("no training case is left after holding out the fold")
    prep = SmallLesionPreprocessing(spacing_mm=float(args.spacing), patch=tuple(args.infer_patch),
                                    overlap=float(args.overlap))
    in_channels, out_channels = CHANNELS[args.variant]
    net = UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, channels=args.channels,
               norm="group")
    initialised_from = _initial_weights(net, args.init, args.variant, held_out) if args.init else None
    if args.init is None:  # start at P = 0.01, not 0.5: see the module docstring
        set_prior_probability(net.head, PRIOR_PROBABILITY)
    cts = [read_image(c.ct) for c in train_cases]
    labels = [read_image(c.label) for c in train_cases]
    prior = IntensityPrior.fit(cts, labels, seed=args.seed, names=[c.name for c in train_cases])
    target_prior = prior.shifted(SHIFT_HU) if args.variant == "seg+il-shifted" else prior
    patch = tuple(int(p) for p in args.patch)
    loaded = [load_volume(c.name, ct, lab, args.variant, target_prior, prep, patch)
              for c, ct, lab in zip(train_cases, cts, labels)]
    volumes = [v for v in loaded if v is not None]
    del cts, labels, loaded
    if not volumes:
        raise InputError("no training case has a lesion voxel on the working grid")
    log.info("%s %s: %d training volumes (%d held out); prior %s", METHOD, args.variant, len(volumes),
             len(held_out), prior.describe())
    config = TrainConfig(epochs=100000, lr=float(args.lr), weight_decay=5e-4, optimizer="adamw", schedule="poly",
                         seed=args.seed, device=resolve_device(getattr(args, "device", "auto")),
                         validate_every=100000, keep="last", max_minutes=float(args.minutes))
    result = SmallLesionTrainer(net, config, volumes, patch, args.steps_per_epoch, args.il_weight).fit()
    steps = int(sum(h["steps"] for h in result.history))
    losses = [h["loss"] for h in result.history if h["steps"]]  # epoch means; an epoch cut at 0 steps has none
    card = {
        "method": METHOD, "variant": args.variant,
        "network": {"class": "UNet", "kwargs": net.config, "parameters": int(sum(p.numel() for p in net.parameters()))},
        "preprocessing": prep.to_dict(),
        "labels": {"0": "background", "1": "lesion"},
        "prior": {"file": "prior.json", **prior.describe()},
        "training": {
            "data": str(args.data), **_cohort(args.data), "command": getattr(args, "command_line", ""),
            "seed": args.seed, "folds": args.folds, "fold": args.fold if args.folds else None,
            "train_cases": [v.name for v in volumes], "held_out_cases": list(held_out),
            "patch": list(patch), "batch": 1, "augmentation": "rotation by 180 deg about z, p = 0.5",
            "loss": "generalized Dice (2 classes)" + (f" + {args.il_weight:g} x BCE(likelihood)"
                                                     if out_channels == 2 else ""),
            "steps": steps, "minutes": round(result.minutes, 2), "config": config.to_dict(),
            "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
            "initialised_from": initialised_from,
            "initial_lesion_probability": PRIOR_PROBABILITY if args.init is None else None,
        },
    }
    if args.variant == "seg+il-shifted":
        card["prior_shift_hu"] = SHIFT_HU
    text = prior_json_text(prior)
    card["prior"]["sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    save_model_folder(args.output, card, {"weights.pt": result.state}, fp16=not args.fp32,
                      overwrite=bool(getattr(args, "overwrite", False)), extra_files={"prior.json": text})
    log.info("%s %s: %d steps in %.1f min, loss %s", METHOD, args.variant, steps, result.minutes,
             card["training"]["loss_first_last"])
    return load_model_folder(args.output, METHOD)
