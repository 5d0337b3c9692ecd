"""``lesionseg train recist-coseg``: weak supervision from RECIST axes (GrabCut masks only).

Steps: read the lesion slices of the training cases (:mod:`.dataset`: RECIST axes measured on the labelled
cases' masks, or given as prompts for unlabelled cases such as DeepLesion's; GrabCut masks from the axes), then

1. unless ``--init`` gives a trained model, train the single-image FCN (``attention="none"``) on the GrabCut
   masks; it provides the embeddings for clustering and the starting weights;
2. with ``--attention none`` the FCN is the result; otherwise cluster the training lesions
   (:mod:`.pairs`, ``--pairs cluster``) or pair them at random (``--pairs random``) and train the
   co-segmentation network on pairs, both outputs supervised by their GrabCut masks.

Budgets: ``--minutes`` (default :data:`DEFAULT_MINUTES`) is the budget of the last stage, the network that is
saved; ``--fcn-minutes`` that of the FCN stage before a co-segmentation network (default 0.8 x ``--minutes``).
With ``--attention none`` there is one stage, the FCN, trained for ``--minutes``. Each stage runs on
:class:`lesionseg.training.Trainer` with a cosine learning-rate decay over its budget, checkpoints in
``OUT.checkpoints/fcn.ckpt`` and ``coseg.ckpt`` and ``--resume``.

The true masks are never used for training (only by :mod:`.evaluate`, on held-out cases). The paper used Adam,
lr 1e-5, weight decay 5e-4 and batch 20 from ImageNet weights; training from scratch here uses AdamW, lr 1e-3
(``--lr``), weight decay 5e-4 and batch 16 (``--batch-size``; fewer when there are fewer samples).
Augmentation: random flips and 90-degree rotations, applied to a crop and its mask together.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ... import progress
from ...card import ModelCard
from ...errors import InputError
from ...modelfolder import ModelFolder, load_model_folder, save_model_folder
from ...options import Settings, option
from ...registry import resolve_device
from ...train_job import Training, TrainJob
from ...training import Trainer, TrainConfig, TrainResult, seed_everything
from . import initial_mask
from .dataset import stack, training_samples
from .network import ATTENTIONS, ENCODERS, RecistCoSeg
from .pairs import cluster_lesions, default_clusters, embeddings, partners, stratified_split

log = logging.getLogger(__name__)
METHOD = "recist-coseg"
DEFAULT_MINUTES = 5.0
FCN_SHARE = 0.8
"""Default ``--fcn-minutes`` as a share of ``--minutes`` (4 of the default 5, as before)."""
WEIGHT_DECAY = 5e-4


@dataclass(frozen=True)
class RecistTrainSettings(Settings):
    """``lesionseg train recist-coseg`` options (besides the common ones; see the module docstring)."""

    attention: str = option("csa", "none: a plain FCN; ca: channel attention; csa: channel-spatial attention",
                            choices=ATTENTIONS)
    pairs: str = option("cluster", "co-segmentation partners from the same k-means cluster of the FCN's "
                                   "embeddings, or at random", choices=("cluster", "random"))
    encoder: str = option("vgg", "encoder family (lesionseg.methods.recist.network)", choices=ENCODERS)
    channels: tuple[int, ...] = option((16, 32, 64, 128), "encoder stage widths (default 16 32 64 128)", metavar="C")
    blocks: tuple[int, ...] = option((1, 2, 2, 2), "encoder stage depths (default 1 2 2 2)", metavar="N")
    clusters: int = option(0, "k-means clusters (0: about 10 lesions each)")
    fcn_minutes: Optional[float] = option(None, "budget of the FCN stage before a co-segmentation network without "
                                                "--init (default 0.8 x --minutes)", unit="min")
    batch_size: int = option(16, "crops (pairs) per step")
    lr: float = option(1e-3, "peak learning rate (AdamW, cosine decay over each stage's budget)")
    threads: int = option(2, "torch CPU threads")
    prompt_cases: bool = option(True, "also train on the unlabelled cases with RECIST prompts (prompts.json, e.g. "
                                      "DeepLesion): GrabCut masks from the given axes")

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.blocks) or len(self.channels) < 2:
            raise InputError(f"{self.flag('channels')} and {self.flag('blocks')} need the same number of stages "
                             f"(at least 2), got {len(self.channels)} and {len(self.blocks)}")
        if min(self.channels) < 1 or min(self.blocks) < 1:
            raise InputError(f"{self.flag('channels')} and {self.flag('blocks')} must be whole numbers >= 1")
        for name, low in (("batch_size", 1), ("threads", 1), ("clusters", 0)):
            if getattr(self, name) < low:
                raise InputError(f"{self.flag(name)} must be a whole number >= {low}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"{self.flag('lr')} must be > 0, got {self.lr}")
        if self.fcn_minutes is not None and not self.fcn_minutes > 0:
            raise InputError(f"{self.flag('fcn_minutes')} must be > 0, got {self.fcn_minutes}")


class RecistTrainer(Trainer):
    """One stage: ``(N, 2, S, S)`` inputs and ``(N, S, S)`` 0/1 GrabCut targets, shuffled batches of ``batch``
    (the last, incomplete one dropped); with ``partner_of(rng) -> (N,)`` partner indices (drawn afresh every
    epoch) each crop is paired with its partner and both outputs are supervised (the mean of the two
    cross-entropies), else the single-image cross-entropy."""

    def __init__(self, model: RecistCoSeg, config: TrainConfig, inputs: np.ndarray, targets: np.ndarray,
                 batch: int, partner_of: Optional[Callable[[np.random.Generator], np.ndarray]] = None) -> None:
        super().__init__(model, config)
        self.inputs, self.targets, self.batch, self.partner_of = inputs, targets, batch, partner_of

    def train_batches(self, epoch: int) -> list[tuple[np.ndarray, Optional[np.ndarray]]]:
        order = self.rng.permutation(len(self.inputs))
        mates = self.partner_of(self.rng) if self.partner_of is not None else None
        return [(idx, None if mates is None else mates[idx])
                for idx in (order[s:s + self.batch] for s in range(0, len(order) - self.batch + 1, self.batch))]

    def _tensors(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The crops ``idx`` and their masks, each turned by the same random multiple of 90 degrees and flipped
        left-right with probability 1/2."""
        xs, ys = [], []
        for i in idx:
            turns = int(self.rng.integers(4))
            x, y = np.rot90(self.inputs[i], turns, axes=(1, 2)), np.rot90(self.targets[i], turns)
            if self.rng.random() < 0.5:
                x, y = x[:, :, ::-1], y[:, ::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        device = self.config.device
        return torch.from_numpy(np.stack(xs)).to(device), torch.from_numpy(np.stack(ys).astype(np.int64)).to(device)

    def loss(self, batch: tuple[np.ndarray, Optional[np.ndarray]]) -> torch.Tensor:
        idx, mates = batch
        xa, ya = self._tensors(idx)
        if mates is None:
            out_a, _ = self.model(xa)
            return F.cross_entropy(out_a, ya)
        xb, yb = self._tensors(mates)
        out_a, out_b = self.model(xa, xb)
        return 0.5 * (F.cross_entropy(out_a, ya) + F.cross_entropy(out_b, yb))


def _stage(job: TrainJob, name: str, net: RecistCoSeg, inputs: np.ndarray, targets: np.ndarray, batch: int,
           minutes: float, seed: int, device: str, partner_of=None) -> dict:
    """Train ``net`` in place for ``minutes`` (checkpoint ``<name>.ckpt``); returns the stage's record."""
    config = TrainConfig(epochs=None, max_minutes=minutes, lr=job.settings.lr, weight_decay=WEIGHT_DECAY,
                         optimizer="adamw", schedule="cosine", seed=seed, device=device, keep="last",
                         progress=job.progress, checkpoint_path=job.checkpoint(name),
                         checkpoint_minutes=job.common.checkpoint_minutes, resume=job.common.resume)
    result: TrainResult = RecistTrainer(net, config, inputs, targets, batch, partner_of).fit()
    net.load_state_dict(result.state)
    net.eval()
    last = result.history[-1]["loss"] if result.history else float("nan")
    return {"steps": result.steps, "epochs": len(result.history), "minutes": round(result.minutes, 2),
            "last_epoch_loss": None if not np.isfinite(last) else round(float(last), 4), "resumed": result.resumed}


def _with_attention(base: RecistCoSeg, attention: str) -> RecistCoSeg:
    """``base``'s network with ``attention``, starting from every weight of ``base`` that fits."""
    if base.config["attention"] == attention:
        return base
    net = RecistCoSeg(**{**base.config, "attention": attention})
    own = net.state_dict()
    own.update({k: v for k, v in base.state_dict().items() if k in own and own[k].shape == v.shape})
    net.load_state_dict(own)
    return net


def train(job: TrainJob) -> ModelFolder:
    """Train as described in the module docstring and write the model folder ``job.output``; torch's thread count
    is ``--threads`` while training and is given back afterwards (a Slicer or notebook session keeps its own)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(job.settings.threads)
    try:
        return _train(job)
    finally:
        torch.set_num_threads(threads)


def _train(job: TrainJob) -> ModelFolder:
    s, common = job.settings, job.common
    device = resolve_device(common.device)
    minutes = common.minutes if common.minutes is not None else DEFAULT_MINUTES
    fcn_minutes = s.fcn_minutes if s.fcn_minutes is not None else FCN_SHARE * minutes
    with progress.task("reading lesion slices") as tick:
        samples, record = training_samples(job.dataset, job.train_cases(), job.held_out_cases(), job.label_map,
                                           s.prompt_cases, tick)
    if not samples:
        raise InputError(f"no training sample in {job.dataset.root}: no lesion of the training cases has a slice "
                         f"with a long axis of at least 3 mm, and no unlabelled case with RECIST prompts trains"
                         f"{' (--no-prompt-cases)' if not s.prompt_cases else ''}")
    inputs, targets = stack(samples)
    lesions = [x.lesion for x in samples]
    del samples  # the stacked arrays hold the crops now
    batch = min(s.batch_size, len(inputs))
    if batch < s.batch_size:
        log.warning("only %d training slices: batches of %d instead of %d", len(inputs), batch, s.batch_size)
    seed_everything(common.seed)
    stages: dict = {}
    if common.init is not None:
        init = load_model_folder(common.init, METHOD)
        base = init.load_network("weights.pt")
        record["init"] = str(common.init)
    else:
        base = RecistCoSeg(encoder=s.encoder, channels=s.channels, blocks=s.blocks, attention="none")
        if s.attention != "none":
            stages["fcn"] = _stage(job, "fcn", base, inputs, targets, batch, fcn_minutes, common.seed, device)
    net = _with_attention(base, s.attention)
    if s.attention == "none":
        stages["fcn"] = _stage(job, "fcn", net, inputs, targets, batch, minutes, common.seed, device)
    else:
        clusters = None
        if s.pairs == "cluster":
            k = s.clusters or default_clusters(len(set(lesions)))
            clusters = cluster_lesions(embeddings(base, inputs), lesions, k, common.seed)
            monitor = stratified_split(lesions, clusters, 0.1, np.random.default_rng(common.seed))
            record["clusters"] = {"k": k, "sizes": np.bincount(list(clusters.values())).tolist(),
                                  "stratified_monitor_lesions": sorted(monitor)}
        stages["coseg"] = _stage(job, "coseg", net, inputs, targets, batch, minutes, common.seed + 1, device,
                                 lambda rng: partners(lesions, clusters, rng))
    card = ModelCard(
        method=METHOD,
        networks={"weights.pt": {"class": "RecistCoSeg", "kwargs": net.config}},
        preprocessing={"crop_size": initial_mask.CROP_SIZE, "context": initial_mask.CONTEXT,
                       "min_side_mm": initial_mask.MIN_SIDE_MM,
                       "channels": [f"HU window {list(initial_mask.LUNG_WINDOW_HU)} -> 0..1",
                                    f"HU window {list(initial_mask.SOFT_TISSUE_WINDOW_HU)} -> 0..1"],
                       "plane": "axial RECIST slice (2D)"},
        labels={"background": 0, "lesion": 1},
        training=job.training_record(
            targets="GrabCut masks from RECIST axes (measured on the masks, or given as prompts): weak supervision",
            attention=s.attention, pairs=s.pairs if s.attention != "none" else None,
            optimiser=f"AdamW lr {s.lr} cosine, weight decay {WEIGHT_DECAY}, batch {batch}", device=device,
            stages=stages, **record),
        extra={"postprocessing": {
            "densecrf": "on by default (lesionseg.methods.recist.segmenter.CRF_SETTINGS, widths relative to the long "
                        "axis); --no-crf skips it",
            "components": "parts touching the middle half of the long axis, holes filled"}})
    folder = save_model_folder(job.output, card, {"weights.pt": net.state_dict()}, fp16=True, overwrite=job.overwrite)
    if job.checkpoints.is_dir():
        shutil.rmtree(job.checkpoints)
    return folder


TRAINING = Training(settings=RecistTrainSettings, train=train)
"""The spec's training entry (``training="lesionseg.methods.recist.train:TRAINING"``)."""
