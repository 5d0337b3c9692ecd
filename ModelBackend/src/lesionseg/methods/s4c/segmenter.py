"""The registered ``s4c`` method: one CT phase -> 4-class pancreas labels -> post-processing -> findings.

Pipeline of ``set_image(ct)`` (the expensive step; ``predict()`` then returns the cached labels):

1. The CT must look like CT in Hounsfield units (:class:`InputError` otherwise: S4C screens CT only).
2. It is resampled (linear, physical space) to the **working grid**: isotropic ``spacing_mm`` (1.5 mm by
   default; the paper segments at its CTs' native resolution, which on two CPU cores would take many
   minutes per phase), HU clipped to ``window`` and scaled to 0..1.
3. Majority-vote sliding window (:mod:`.voting`): 64^3 windows every ``stride`` voxels (paper: 20).
4. The vote map goes back to the input grid (nearest neighbour), then the paper's connected-component rule
   (:func:`.rules.postprocess`) removes stray pancreas parts.

``findings(phase)`` applies the screening rule (:func:`.rules.phase_findings`) to the result.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np
import torch

from ...errors import InputError, WeightsError
from ...image import Image
from ...intensity import CT_LOW_HU, looks_like_ct
from ...inference import fuse_batchnorm, inference_context, prepare_for_inference
from ...modelfolder import ModelFolder
from ...prompts import Prompt
from ...registry import register
from ...resample import resample_to_grid, resample_to_spacing
from ...segmenter import Segmenter
from .network import S4CNet  # noqa: F401  (registers the card name "S4CNet" with build_network)
from .rules import PhaseFindings, ScreeningRule, phase_findings, postprocess
from .voting import majority_vote

log = logging.getLogger(__name__)
N_CLASSES = 4
REQUIRED_PREPROCESSING = ("spacing_mm", "window", "patch", "stride")
"""Card ``preprocessing`` entries a model needs; only ``batch_size`` (speed and memory) may be missing."""
REQUIRED_RULE = ("tumour_min_mm3", "duct_min_mm3", "keep_fraction", "keep_distance_mm")
"""Entries of the card's ``rule`` every S4C card has held; a rule field added later (``pancreas_min_mm3``, a
safeguard of the verdict, not something training sets) may be missing and takes its default."""


@dataclass(frozen=True)
class S4CPreprocessing:
    """Working grid and intensity scaling (stored in the model card's ``preprocessing``).

    ``spacing_mm``: isotropic working voxel (mm); ``window``: HU range mapped to 0..1; ``patch``: window
    edge (voxels); ``stride``: sliding-window step (voxels); ``batch_size``: windows per forward pass.
    """

    spacing_mm: float = 1.5
    window: tuple[float, float] = (-160.0, 240.0)
    patch: int = 64
    stride: int = 20
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not 1 <= int(self.stride) <= int(self.patch):
            raise InputError(f"stride must be between 1 and {self.patch} voxels (the window edge), got "
                             f"{self.stride}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["window"] = list(self.window)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "S4CPreprocessing":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "window" in kwargs:
            kwargs["window"] = tuple(float(v) for v in kwargs["window"])
        return cls(**kwargs)


def normalise(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU clipped to ``window`` and mapped linearly to 0..1 (float32)."""
    lo, hi = window
    return ((np.clip(hu.astype(np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def to_working_grid(ct: Image, prep: S4CPreprocessing) -> Image:
    """``ct`` (HU) resampled linearly to the isotropic working grid (outside the image: -1000 HU)."""
    return resample_to_spacing(ct.with_array(ct.array.astype(np.float32)), prep.spacing_mm, "linear", -1000.0)


@register("s4c", prompt="none", inputs=("CT",), verbs=("lesionseg.methods.s4c.cli_screen",),
          summary="S4C (Zhu et al.): 4-class pancreas/tumour/duct segmentation of one CT phase -> screening verdict")
class S4CSegmenter(Segmenter):
    """S4C segmentation of one CT phase (arterial or venous).

    Args:
        model: model folder whose card names ``S4CNet`` and holds ``preprocessing`` and ``rule``, both required
            with the entries :data:`REQUIRED_PREPROCESSING` and :data:`REQUIRED_RULE`: a missing one is a
            :class:`WeightsError`, not a default. The network is loaded here, so a broken folder fails before
            any image is read.
        device: ``"cpu"`` or ``"cuda"``.
        net: an already built network (instead of the model folder; tests).
        preprocessing, rule: used with ``net``.
    """

    demo_case = "pancreas_ct"

    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu",
                 net: Optional[torch.nn.Module] = None, preprocessing: Optional[S4CPreprocessing] = None,
                 rule: Optional[ScreeningRule] = None) -> None:
        super().__init__(model, device)
        if net is None:
            if model is None:
                raise WeightsError("s4c needs a model folder (or a network passed as net=)")
            preprocessing = model.settings(S4CPreprocessing, "preprocessing", "the pre-processing the model was "
                                           "trained with", REQUIRED_PREPROCESSING)
            rule = model.settings(ScreeningRule, "rule", "the post-processing and screening thresholds",
                                  REQUIRED_RULE)
            net = fuse_batchnorm(model.load_network("weights.pt"))  # loaded for inference only
        self.net = prepare_for_inference(net, device)
        self.prep = preprocessing or S4CPreprocessing()
        self.rule = rule or ScreeningRule()
        self._label: Optional[Image] = None
        self.raw: Optional[Image] = None

    @classmethod
    def add_predict_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """``lesionseg predict s4c`` options."""
        parser.add_argument("--stride", type=int, default=None,
                            help="sliding-window stride in working voxels (default: the model's, paper 20)")

    def apply_predict_args(self, args: argparse.Namespace) -> None:
        """Apply the options of :meth:`add_predict_arguments`."""
        if getattr(args, "stride", None) is not None:
            self.set_stride(args.stride)

    def set_stride(self, stride: int) -> None:
        """Change the sliding-window stride (1..patch voxels, checked by :class:`S4CPreprocessing`); smaller is
        slower and smoother."""
        self.prep = S4CPreprocessing(**{**self.prep.to_dict(), "stride": int(stride),
                                        "window": tuple(self.prep.window)})

    def _predict_windows(self, batch: np.ndarray) -> np.ndarray:
        with inference_context():
            logits = self.net(torch.from_numpy(batch).to(self.device))
        return logits.argmax(dim=1).cpu().numpy()

    def _prepare(self, image: Image, *others: Image) -> None:
        if not looks_like_ct(image.array):
            raise InputError(
                f"s4c expects a CT in Hounsfield units, but the intensities ({float(image.array.min()):g} .. "
                f"{float(image.array.max()):g}) do not look like CT (under 1 % of voxels below "
                f"{CT_LOW_HU:g} HU: no fat, lung or air)")
        work = to_working_grid(image, self.prep)
        volume = normalise(work.array, self.prep.window)[None]
        labels = majority_vote(self._predict_windows, volume, N_CLASSES, self.prep.patch, self.prep.stride,
                               self.prep.batch_size, pad_value=0.0, skip_below=1e-3, label="s4c windows")
        self.raw = work.with_array(labels)
        back = resample_to_grid(self.raw, image, "nearest", 0)
        self._label = postprocess(back, self.rule)
        log.info("s4c: working grid %s, %d tumour / %d duct voxels on the input grid", work.shape,
                 int((self._label.array == 2).sum()), int((self._label.array == 3).sum()))

    def predict(self, prompt: Prompt = None) -> Image:
        """uint8 labels (0 background, 1 pancreas, 2 tumour, 3 duct) on the set image's grid."""
        if prompt is not None:
            raise InputError("s4c is automatic and takes no prompt")
        if self._label is None:
            raise InputError("s4c: call set_image() before predict()")
        return self._label

    def findings(self, phase: str = "venous") -> PhaseFindings:
        """The screening rule applied to the current result (see :func:`.rules.phase_findings`)."""
        return phase_findings(self.predict(), self.rule, phase)

    def demo_extras(self, pred: Image, truth: Image) -> dict:
        """What ``lesionseg demo`` adds for S4C: the verdict, tumour Dice and the truth's verdict."""
        from ...metrics import dice

        found = phase_findings(pred, self.rule, "venous")
        truth_positive = bool(np.isin(truth.array, (2, 3)).any())
        tumour = dice(pred.with_array((pred.array == 2).astype(np.uint8)),
                      truth.with_array((truth.array == 2).astype(np.uint8)))
        return {"verdict": "positive" if found.positive else "negative", "tumour_dice": round(float(tumour), 4),
                "notes": f"Dice = whole pancreas; tumour Dice {tumour:.3f}; verdict "
                         f"{'POSITIVE' if found.positive else 'negative'} (truth "
                         f"{'positive' if truth_positive else 'negative'})"}

    @classmethod
    def add_train_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Options of ``lesionseg train s4c`` (see :mod:`.train`)."""
        from .train import add_train_arguments

        add_train_arguments(parser)

    @classmethod
    def train(cls, args: argparse.Namespace) -> ModelFolder:
        """Train on the synthetic cohort (see :mod:`.train`)."""
        from .train import train

        return train(args)
