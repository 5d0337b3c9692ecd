"""The registered ``s4c`` method: one CT phase -> 4-class pancreas labels -> post-processing -> findings.

Pipeline of ``set_image(ct)`` (the expensive step; ``predict()`` then returns the cached labels):

1. The CT must look like CT in Hounsfield units (:class:`InputError` otherwise: S4C screens CT only).
2. It is resampled (linear, physical space) to the **working grid**: isotropic ``spacing_mm`` (1.5 mm by
   default; the paper segments at its CTs' native resolution, which on two CPU cores would take many
   minutes per phase), HU clipped to ``window`` and scaled to 0..1.
3. Majority-vote sliding window (:mod:`.voting`): 64^3 windows every ``stride`` voxels (paper: 20).
4. The vote map goes back to the input grid (nearest neighbour), then the paper's connected-component rule
   (:func:`.rules.postprocess`) removes stray pancreas parts.

``findings(phase)`` applies the screening rule and the checks of the verdict (:func:`.rules.phase_findings`,
:mod:`.verdict`) to the result.

The spec (``@register`` below) names the rest of the method by ``"module:attribute"``, so that this module
imports none of them: training (:mod:`.train`), evaluation (:mod:`.evaluate`), the synthetic dual-phase
dataset (:mod:`.data`) and the ``lesionseg screen`` verb (:mod:`.cli_screen`).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

import numpy as np
import torch

from ...errors import InputError, WeightsError
from ...image import Image
from ...intensity import CT_LOW_HU, looks_like_ct
from ...inference import fuse_batchnorm, inference_context, prepare_for_inference
from ...modelfolder import ModelFolder
from ...options import Options, option
from ...prompts import Prompt
from ...registry import register
from ...resample import resample_to_grid, resample_to_spacing
from ...segmenter import Segmenter
from .network import S4CNet  # noqa: F401  (registers the card name "S4CNet" with build_network)
from .rules import LABELS, PhaseFindings, ScreeningRule, phase_findings, postprocess
from .voting import majority_vote

log = logging.getLogger(__name__)
CLASSES = tuple(LABELS[value] for value in sorted(LABELS))
"""The method's label classes in value order, background, pancreas, tumour, duct (a dataset's labels are mapped
onto them with ``--labels``)."""
N_CLASSES = len(CLASSES)
REQUIRED_PREPROCESSING = ("spacing_mm", "window", "patch", "stride")
"""Card ``preprocessing`` entries a model needs; only ``batch_size`` (speed and memory) may be missing."""
REQUIRED_RULE = ("tumour_min_mm3", "duct_min_mm3", "keep_fraction", "keep_distance_mm")
"""Entries of the card's ``rule`` every S4C card has held; the rule fields added later (the pancreas bounds
``pancreas_min_mm3``, ``pancreas_adult_min_mm3``, ``pancreas_adult_max_mm3``: checks of the verdict, not
something training sets) may be missing and take their defaults."""


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


@dataclass(frozen=True)
class S4COptions(Options):
    """Predict-time settings of s4c (``lesionseg predict s4c``, ``lesionseg evaluate s4c``).

    ``stride``: sliding-window step in working voxels, 1..the model's window edge (the range is checked when
    the options are given to a segmenter, which knows the window); None: the model's (the paper's 20). Smaller
    is slower and smoother; it applies from the next :meth:`S4CSegmenter.set_image`.
    """

    stride: Optional[int] = option(None, "sliding-window stride in working voxels (default: the model's, paper 20)",
                                   metavar="N", unit="voxels")

    def __post_init__(self) -> None:
        if self.stride is not None and (isinstance(self.stride, bool) or not isinstance(self.stride, (int, np.integer))):
            raise InputError(f"{self.flag('stride')} must be a whole number of voxels, got {self.stride!r}")


@register("s4c", prompt="none", inputs=("CT",), classes=CLASSES, options=S4COptions,
          training="lesionseg.methods.s4c.train:TRAINING",
          evaluation="lesionseg.methods.s4c.evaluate:S4CEvaluation",
          synthetic="lesionseg.methods.s4c.data:SYNTHETIC",
          verbs=("lesionseg.methods.s4c.cli_screen",), demo_case="pancreas_ct",
          summary="S4C (Zhu et al.): 4-class pancreas/tumour/duct segmentation of one CT phase -> screening verdict")
class S4CSegmenter(Segmenter):
    """S4C segmentation of one CT phase (arterial or venous).

    Args:
        model: model folder whose card names ``S4CNet`` and holds ``preprocessing`` and ``rule``, both required
            with the entries :data:`REQUIRED_PREPROCESSING` and :data:`REQUIRED_RULE`: a missing one is a
            :class:`WeightsError`, not a default. The network is loaded here, so a broken folder fails before
            any image is read.
        device: ``"cpu"`` or ``"cuda"``.
        options: :class:`S4COptions` (default: the model's stride).
        net: an already built network (instead of the model folder; tests).
        preprocessing, rule: used with ``net``.

    Attributes:
        model_prep: the model's :class:`S4CPreprocessing` (its card); ``prep``: the same with the options applied
            (what :meth:`set_image` uses); ``rule``: the :class:`~.rules.ScreeningRule`; ``raw``: after
            ``set_image``, the vote map on the working grid before post-processing (the plain baseline reads it).
    """

    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu",
                 options: Optional[S4COptions] = None, net: Optional[torch.nn.Module] = None,
                 preprocessing: Optional[S4CPreprocessing] = None, rule: Optional[ScreeningRule] = None) -> None:
        if net is None:
            if model is None:
                raise WeightsError("s4c needs a model folder (or a network passed as net=)")
            preprocessing = model.settings(S4CPreprocessing, "preprocessing", "the pre-processing the model was "
                                           "trained with", REQUIRED_PREPROCESSING)
            rule = model.settings(ScreeningRule, "rule", "the post-processing and screening thresholds",
                                  REQUIRED_RULE)
            net = fuse_batchnorm(model.load_network("weights.pt"))  # loaded for inference only
        self.model_prep = preprocessing or S4CPreprocessing()
        super().__init__(model, device, options)
        self.net = prepare_for_inference(net, device)
        self.rule = rule or ScreeningRule()
        self._label: Optional[Image] = None
        self.raw: Optional[Image] = None
        self._apply_options()

    def _effective(self, options: S4COptions) -> S4CPreprocessing:
        """The model's pre-processing with ``options`` applied (:class:`InputError` for a stride that does not
        fit the window, from :class:`S4CPreprocessing`)."""
        if options.stride is None:
            return self.model_prep
        return replace(self.model_prep, stride=int(options.stride))

    def _check_options(self, options: Optional[Options]) -> Options:
        checked = super()._check_options(options)
        self._effective(checked)
        return checked

    def _apply_options(self) -> None:
        self.prep = self._effective(self.options)

    def set_stride(self, stride: int) -> None:
        """Change the sliding-window stride (1..patch voxels, checked by :class:`S4CPreprocessing`); smaller is
        slower and smoother. The same as ``set_options(options.replace(stride=stride))``."""
        self.set_options(self.options.replace(stride=int(stride)))

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
        """The screening rule and the verdict's checks (the anatomy check on the set CT) applied to the current
        result (see :func:`.rules.phase_findings`)."""
        return phase_findings(self.predict(), self.rule, phase, self.image)
