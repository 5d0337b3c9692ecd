"""``lesionseg train recist-coseg``: weak supervision from RECIST axes (GrabCut masks only).

Steps: load every lesion slice under ``--data`` (:mod:`.dataset`: RECIST axes from the masks, GrabCut
masks from the axes), hold out whole patients (``--val-fraction``, seeded) for evaluation, then

1. unless ``--init`` gives a trained model, train the single-image FCN (``attention="none"``) for
   ``--fcn-minutes`` on GrabCut masks; it provides the embeddings for clustering and the starting weights;
2. with ``--attention none`` the FCN is the result; otherwise cluster the training lesions
   (:mod:`.pairs`, ``--pairs cluster``) or pair them at random (``--pairs random``) and train the
   co-segmentation network for ``--minutes`` on pairs, both outputs supervised by their GrabCut masks.

The true masks are never used for training (only by :mod:`.evaluate`, on held-out patients). Training
is budgeted in wall-clock minutes with a cosine learning-rate decay over the budget. The paper used Adam,
lr 1e-5, weight decay 5e-4 and batch 20 from ImageNet weights; training from scratch here uses AdamW,
lr 1e-3 (``--lr``), weight decay 5e-4 and batch 16 (``--batch``). Augmentation: random flips and
90-degree rotations, applied to a crop and its mask together.
"""
from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import InputError
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from . import initial_mask
from .dataset import Sample, load_samples, network_input
from .network import RecistCoSeg
from .pairs import cluster_lesions, default_clusters, embeddings, partners, stratified_split

log = logging.getLogger(__name__)
METHOD = "recist-coseg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Method options of ``lesionseg train recist-coseg``."""
    parser.add_argument("--attention", choices=("none", "ca", "csa"), default="csa",
                        help="none = plain FCN; ca = channel attention; csa = channel-spatial (default)")
    parser.add_argument("--pairs", choices=("cluster", "random"), default="cluster",
                        help="partners from the same k-means cluster (default) or at random")
    parser.add_argument("--encoder", choices=("vgg", "resnet", "drn"), default="vgg",
                        help="encoder family (see lesionseg.methods.recist.network; default vgg)")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128],
                        help="encoder stage widths (default 16 32 64 128)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 2, 2],
                        help="encoder stage depths (default 1 2 2 2)")
    parser.add_argument("--clusters", type=int, default=0, help="k-means clusters (default: ~10 lesions each)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget of the final stage")
    parser.add_argument("--fcn-minutes", type=float, default=4.0, help="budget of the FCN stage without --init")
    parser.add_argument("--init", type=Path, help="recist-coseg model folder to start from (skips the FCN stage)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="fraction of patients held out")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def split_patients(patients: list[str], fraction: float, seed: int) -> set[str]:
    """Seeded random subset of about ``fraction`` of the distinct patients (the held-out patients)."""
    unique = sorted(set(patients))
    if not 0.0 <= fraction < 1.0:
        raise InputError("--val-fraction must be in [0, 1)")
    take = int(round(fraction * len(unique)))
    return set(np.random.default_rng(seed).permutation(unique)[:take].tolist())


def _augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Same random flip / 90-degree rotation of a ``(C, S, S)`` input and its ``(S, S)`` mask."""
    turns = int(rng.integers(4))
    x, y = np.rot90(x, turns, axes=(1, 2)), np.rot90(y, turns)
    if rng.random() < 0.5:
        x, y = x[:, :, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _batch(inputs: np.ndarray, targets: np.ndarray, idx: np.ndarray, rng: np.random.Generator):
    pairs = [_augment(inputs[i], targets[i], rng) for i in idx]
    return (torch.from_numpy(np.stack([p[0] for p in pairs])),
            torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64)))


def fit(net: RecistCoSeg, inputs: np.ndarray, targets: np.ndarray, partner_of, minutes: float, batch: int,
        lr: float, seed: int) -> dict:
    """Train ``net`` for ``minutes`` of wall clock on ``(N, 2, S, S)`` inputs and ``(N, S, S)`` 0/1 targets.

    ``partner_of(rng) -> (N,)`` partner indices drawn afresh every epoch, or None for single images.
    Returns ``{"steps", "epochs", "wall_s", "last_loss"}``.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    budget, t0, steps, epochs, loss_avg = minutes * 60.0, time.perf_counter(), 0, 0, float("nan")
    net.train()
    while time.perf_counter() - t0 < budget:
        order = rng.permutation(len(inputs))
        mates = partner_of(rng) if partner_of is not None else None
        for start in range(0, len(order) - batch + 1, batch):
            elapsed = time.perf_counter() - t0
            if elapsed >= budget:
                break
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
            idx = order[start:start + batch]
            xa, ya = _batch(inputs, targets, idx, rng)
            if mates is None:
                out_a, _ = net(xa)
                loss = F.cross_entropy(out_a, ya)
            else:
                xb, yb = _batch(inputs, targets, mates[idx], rng)
                out_a, out_b = net(xa, xb)
                loss = 0.5 * (F.cross_entropy(out_a, ya) + F.cross_entropy(out_b, yb))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            value = loss.item()
            loss_avg = value if steps == 1 else 0.95 * loss_avg + 0.05 * value
            if steps % 20 == 0:
                log.info("step %d epoch %d loss %.4f (%.0f s)", steps, epochs, loss_avg, time.perf_counter() - t0)
        epochs += 1
    net.eval()
    return {"steps": steps, "epochs": epochs, "wall_s": round(time.perf_counter() - t0, 1),
            "last_loss": round(loss_avg, 4)}


def arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2, S, S)`` float32 network inputs and ``(N, S, S)`` uint8 GrabCut targets."""
    return (np.stack([network_input(s.crop_hu) for s in samples]),
            np.stack([s.grabcut for s in samples]).astype(np.uint8))


def run(args: argparse.Namespace) -> ModelFolder:
    """Train as described in the module docstring and write the model folder ``args.output``."""
    torch.set_num_threads(max(1, int(args.threads)))
    t_start = time.perf_counter()
    samples = load_samples(args.data)
    heldout = split_patients([s.patient for s in samples], args.val_fraction, args.seed)
    train = [s for s in samples if s.patient not in heldout]
    if len(args.channels) != len(args.blocks):
        raise InputError("--channels and --blocks need the same number of stages")
    if len(train) < args.batch:
        raise InputError(f"only {len(train)} training slices found under {args.data}; need at least --batch")
    inputs, targets = arrays(train)
    lesions = [s.name for s in train]
    info: dict = {"heldout_patients": sorted(heldout), "train_slices": len(train),
                  "train_lesions": len(set(lesions)), "train_patients": len({s.patient for s in train})}
    if args.init is not None:
        init = load_model_folder(args.init, METHOD)
        kwargs = init.network_spec("weights.pt")[1]
        base = init.load_network("weights.pt", lambda: RecistCoSeg(**kwargs))
        info["init"] = str(args.init)
    else:
        base = RecistCoSeg(encoder=args.encoder, channels=args.channels, blocks=args.blocks, attention="none")
        info["fcn_stage"] = fit(base, inputs, targets, None, args.fcn_minutes, args.batch, args.lr, args.seed)
    if args.attention == "none":
        net = base
        if args.init is not None:
            info["stage"] = fit(net, inputs, targets, None, args.minutes, args.batch, args.lr, args.seed)
    else:
        net = RecistCoSeg(**{**base.config, "attention": args.attention})
        own = net.state_dict()
        own.update({k: v for k, v in base.state_dict().items() if k in own and own[k].shape == v.shape})
        net.load_state_dict(own)
        rng = np.random.default_rng(args.seed)
        clusters: Optional[dict[str, int]] = None
        if args.pairs == "cluster":
            k = args.clusters or default_clusters(len(set(lesions)))
            clusters = cluster_lesions(embeddings(base, inputs), lesions, k, args.seed)
            monitor = stratified_split(lesions, clusters, 0.1, rng)
            info["clusters"] = {"k": k, "sizes": np.bincount(list(clusters.values())).tolist(),
                                "stratified_monitor_lesions": sorted(monitor)}
        info["stage"] = fit(net, inputs, targets, lambda r: partners(lesions, clusters, r), args.minutes,
                            args.batch, args.lr, args.seed + 1)
    card = {
        "method": METHOD,
        "network": {"class": "RecistCoSeg", "kwargs": net.config},
        "preprocessing": {"crop_size": initial_mask.CROP_SIZE, "context": initial_mask.CONTEXT,
                          "min_side_mm": initial_mask.MIN_SIDE_MM,
                          "channels": ["HU window [-1000, 400] -> 0..1", "HU window [-175, 275] -> 0..1"],
                          "plane": "axial RECIST slice (2D)"},
        "labels": {"0": "background", "1": "lesion"},
        "training": {"data": str(args.data), "command": getattr(args, "command_line", ""), "seed": args.seed,
                     "targets": "GrabCut masks from RECIST axes derived from the masks (weak supervision)",
                     "attention": args.attention, "pairs": args.pairs if args.attention != "none" else None,
                     "optimiser": f"AdamW lr {args.lr} cosine, weight decay 5e-4, batch {args.batch}",
                     "wall_s": round(time.perf_counter() - t_start, 1), **info},
        "metrics": {},
    }
    return save_model_folder(args.output, card, {"weights.pt": net.state_dict()}, fp16=True,
                             overwrite=getattr(args, "overwrite", False))
