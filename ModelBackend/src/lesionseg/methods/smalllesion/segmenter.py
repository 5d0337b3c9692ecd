"""The registered ``small-lesion-il`` method (arXiv 2207.14700): CT -> small-lesion label. ``set_image(ct)``:

1. CT in HU or :class:`InputError`. The work is cropped to the ROI (:meth:`set_roi`, LPS mm; label 0 outside)
   and to the body's bounding box (HU above ``body_hu``), so air costs nothing.
2. **Working grid**: isotropic ``spacing_mm`` voxels (linear, SimpleITK), HU clipped to ``window_hu`` and
   scaled to 0..1. ``seg+il-in`` adds the likelihood ``L(smoothed HU)`` as a second input channel.
3. Gaussian-blended sliding window of the 3D U-Net, sigmoid on every channel: channel 0 the lesion
   probability ``P``, channel 1 (2-output variants) the predicted likelihood.
4. Post-processing (the paper's ``Seg+PP``): ``P_final = P x L(smoothed HU)`` with the user's prior
   (:meth:`set_prior`, any variant) or, for ``seg+pp``, the model's prior. The prior's anisotropic diffusion
   runs on the working grid only when a prior is used.
5. ``P_final`` goes back to the CT grid (linear) and is thresholded there (uint8 0/1). Changing the prior or
   the variant afterwards re-runs only what depends on it (the network only for ``seg+il-in``).

Predict-time settings are :class:`.options.SmallLesionOptions` (``--prior-mean/--prior-sd``, ``--prior-table``,
``--roi``, ``--variant seg+pp``); :meth:`SmallLesionSegmenter.set_prior`, ``set_roi`` and ``set_variant`` remain
the Python API. ``--table`` is written by :func:`write_table`. Training (:mod:`.train`), evaluation
(:mod:`.evaluate`) and the synthetic dataset (:mod:`.data`) are named in the spec by reference; this module
imports none of them.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ... import progress
from ...errors import InputError, LesionSegWarning, WeightsError
from ...geometry import box_to_index
from ...image import Image
from ...inference import inference_context, prepare_for_inference, sliding_window
from ...intensity import CT_LOW_HU, looks_like_ct
from ...lesions import csv_columns, lesion_table, write_lesion_table
from ...modelfolder import CardSettings, ModelFolder, sha256_of
from ...prompts import Box, Prompt
from ...registry import OutputSpec, register
from ...resample import resample_to_grid, resample_to_spacing
from ...segmenter import Segmenter
from .options import SmallLesionOptions
from .prior import IntensityPrior, check_prior_against_image

log = logging.getLogger(__name__)
METHOD = "small-lesion-il"
CHANNELS = {"seg": (1, 1), "seg+il-in": (2, 1), "seg+il": (1, 2), "seg+il-shifted": (1, 2)}
"""Trained variants -> (network input channels, output channels)."""
REQUIRED_PREPROCESSING = ("spacing_mm", "window_hu", "patch", "overlap", "threshold", "body_hu")
"""Card ``preprocessing`` entries a model needs; only ``batch_size`` (speed and memory) may be missing."""
CONNECTIVITY = 26
"""Neighbours that join lesion voxels into one lesion of the table."""
TABLE_COLUMNS = csv_columns(("id", "voxels", "volume_ml", "mean", "centroid_lps", "bbox_ijk"), "HU")
"""The CSV header of ``--table`` (:mod:`lesionseg.lesions`; ``mean_hu`` of the CT given to ``set_image``)."""


@dataclass(frozen=True)
class SmallLesionPreprocessing(CardSettings):
    """The model card's ``preprocessing``: ``spacing_mm`` isotropic working voxel (mm); ``window_hu`` HU range
    mapped to 0..1; ``patch`` inference window ``(D, H, W)`` = ``(k, j, i)`` working voxels; ``overlap`` of the
    sliding windows; ``batch_size`` windows per forward pass; ``threshold`` on ``P_final`` on the CT grid;
    ``body_hu``: voxels above it are body (the work is cropped to their bounding box)."""

    spacing_mm: float = 1.0
    window_hu: tuple[float, float] = (-200.0, 400.0)
    patch: tuple[int, int, int] = (128, 128, 128)
    overlap: float = 0.25
    batch_size: int = 1
    threshold: float = 0.5
    body_hu: float = -500.0

    def __post_init__(self) -> None:
        if not self.spacing_mm > 0 or not self.window_hu[1] > self.window_hu[0]:
            raise InputError(f"need spacing_mm > 0 and window_hu (low, high) with high > low, got "
                             f"{self.spacing_mm}, {self.window_hu}")
        if len(self.patch) != 3 or min(self.patch) < 8 or self.batch_size < 1:
            raise InputError(f"patch must be three sizes >= 8 voxels and batch_size >= 1, got {self.patch}")
        if not 0 <= self.overlap < 1 or not 0 < self.threshold < 1:
            raise InputError("need 0 <= overlap < 1 and 0 < threshold < 1")



def write_table(segmenter: "SmallLesionSegmenter", label: Image, path: Path, overwrite: bool = False) -> Path:
    """``--table``: the lesions of ``label`` (26-connected; mean HU of the segmenter's CT) as ``.json`` or ``.csv``
    (:func:`lesionseg.lesions.write_lesion_table`)."""
    rows = lesion_table(label, segmenter.image, connectivity=CONNECTIVITY)
    return write_lesion_table(rows, path, method=METHOD, overwrite=overwrite)


def normalise(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU clipped to ``window`` and mapped linearly to 0..1: float32, same shape."""
    lo, hi = float(window[0]), float(window[1])
    return ((np.clip(hu.astype(np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def to_working_grid(ct: Image, spacing_mm: float) -> Image:
    """``ct`` (HU) resampled linearly to isotropic ``spacing_mm`` voxels (same origin and direction; float32;
    -1000 HU outside)."""
    return resample_to_spacing(ct.with_array(ct.array.astype(np.float32)), spacing_mm, "linear", -1000.0)


def body_box(image: Image, body_hu: float, margin: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Inclusive ``(lo, hi)`` ``(i, j, k)`` voxel range of the voxels above ``body_hu``, grown by ``margin``
    voxels per axis (i, j, k) and clipped to the image; None when no voxel is above ``body_hu``."""
    body = image.array > body_hu
    hits = [np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis))) for axis in (2, 1, 0)]
    if hits[0].size == 0:
        return None
    lo, hi = np.array([h[0] for h in hits]), np.array([h[-1] for h in hits])
    return np.maximum(lo - margin, 0), np.minimum(hi + margin, image.size_ijk - 1)


_UNSET = object()


@register(METHOD, prompt="none", inputs=("CT",), classes=("background", "lesion"), options=SmallLesionOptions,
          training="lesionseg.methods.smalllesion.train:TRAINING",
          evaluation="lesionseg.methods.smalllesion.evaluate:SmallLesionEvaluation",
          synthetic="lesionseg.methods.smalllesion.data:GENERATOR",
          outputs=(OutputSpec("table", (".json", ".csv"), "write the found lesions here",
                              writer="lesionseg.methods.smalllesion.segmenter:write_table"),),
          verbs=("lesionseg.methods.smalllesion.cli_prior",), demo_case="smallbowel_ct",
          summary="Small lesions with intensity-distribution supervision (arXiv 2207.14700): 3D U-Net with a "
                  "lesion and an intensity-likelihood output; optional HU prior; lesion table")
class SmallLesionSegmenter(Segmenter):
    """Small-lesion segmentation of one CT (see the module docstring).

    Args:
        model: model folder (card: ``network``, ``preprocessing``, ``variant``, ``prior`` = ``prior.json``).
            ``network``, ``variant`` and ``preprocessing`` (:data:`REQUIRED_PREPROCESSING`) are required: a
            missing one is a :class:`WeightsError`, never a default. ``prior`` is optional (a ``seg`` model
            has none). The network is loaded here, so a broken folder fails before any image is read.
        device: ``"cpu"`` or ``"cuda"``.
        options: :class:`SmallLesionOptions` (default: none set); checked here against the model (``seg+pp``
            needs a ``seg`` model with a prior; a prior table is read).
        net, preprocessing, variant, prior: instead of a model folder (tests, benchmarks).
    """


    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu",
                 options: Optional[SmallLesionOptions] = None, *, net: Optional[torch.nn.Module] = None,
                 preprocessing: Optional[SmallLesionPreprocessing] = None, variant: Optional[str] = None,
                 prior: Optional[IntensityPrior] = None) -> None:
        super().__init__(model, device, options)
        if net is None:
            if model is None:
                raise WeightsError(f"{METHOD} needs a model folder (or a network passed as net=)")
            preprocessing = model.settings(SmallLesionPreprocessing, "preprocessing", "the pre-processing the "
                                           "model was trained with", REQUIRED_PREPROCESSING)
            variant = model.require("variant", f"the trained variant: {', '.join(CHANNELS)}", str)
            prior = self._model_prior(model)
            net = model.load_network("weights.pt")
        self.trained_variant = variant or "seg+il"
        if self.trained_variant not in CHANNELS:
            raise WeightsError(f"unknown trained variant {self.trained_variant!r}; one of {', '.join(CHANNELS)}")
        config, expected = getattr(net, "config", {}), CHANNELS[self.trained_variant]
        got = (config.get("in_channels"), config.get("out_channels"))
        if got not in (expected, (None, None)):
            raise WeightsError(f"a {self.trained_variant} network has (in, out) channels {expected}, this one {got}")
        if self.trained_variant == "seg+il-in" and prior is None:
            raise WeightsError("a seg+il-in model needs its prior (prior.json)")
        self.net = prepare_for_inference(net, device)
        self.prep = preprocessing or SmallLesionPreprocessing()
        self.model_prior, self.variant = prior, self.trained_variant
        self.user_prior: Optional[IntensityPrior] = None
        self.roi: Optional[Box] = None
        self._prior_key: object = _UNSET
        self._clear()
        self._apply_options()

    @staticmethod
    def _model_prior(model: ModelFolder) -> Optional[IntensityPrior]:
        """The model folder's prior, after checking its sha256 against the card (None when it has none)."""
        entry = model.card.get("prior")
        if not entry:
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise model.lacks(["prior.file"], "the model's intensity prior")
        path = model.path / entry["file"]
        if not path.is_file() or sha256_of(path) != entry.get("sha256"):
            raise WeightsError(f"{path} is missing or fails its sha256 check against {model.card_path}")
        try:
            return IntensityPrior.load(path)
        except (InputError, TypeError, LookupError) as exc:
            raise WeightsError(f"the model's prior is unusable: {exc}") from None

    def _clear(self) -> None:
        """Forget everything computed for the current image."""
        self._work: Optional[Image] = None          # working-grid HU (float32)
        self._region: Optional[Image] = None        # CT-grid reference of the worked region (ROI and body)
        self._box: tuple[slice, ...] = ()           # where the region lies in the CT array ([k, j, i] slices)
        self._outputs: Optional[np.ndarray] = None  # (C_out, K, J, I) sigmoid outputs on the working grid
        self._smoothed: dict[str, np.ndarray] = {}
        self._final: Optional[tuple[np.ndarray, Optional[np.ndarray]]] = None
        self._label: Optional[Image] = None

    # --- options ---------------------------------------------------------------------------------------

    def _apply_options(self) -> None:
        """Make the variant, prior and ROI those of :attr:`options` (re-running only what they change). A prior
        given to :meth:`set_prior` stays until options name another prior (or ``set_prior(None)``)."""
        opts = self.options
        variant = self._check_variant(opts.variant or self.trained_variant)
        key = opts.prior_key()
        prior = self.user_prior if key == self._prior_key else opts.intensity_prior()
        previous = (self.variant, self.user_prior, self._prior_key)
        self._commit(variant, prior, key)
        roi = opts.roi_box()
        if not _same_box(roi, self.roi):
            try:
                self._set_roi(roi)
            except InputError:
                self._commit(*previous)
                raise

    def _check_variant(self, variant: str) -> str:
        allowed = {self.trained_variant} | ({"seg", "seg+pp"} if self.trained_variant == "seg" else set())
        if variant not in allowed:
            raise InputError(f"this {self.trained_variant} model runs as {' or '.join(sorted(allowed))}, not "
                             f"{variant!r} (seg+pp is post-processing of a seg model)")
        if variant == "seg+pp" and self.model_prior is None:
            raise WeightsError("seg+pp needs the model's prior (prior.json)")
        return variant

    def _commit(self, variant: str, prior: Optional[IntensityPrior], key: object) -> None:
        """Set the variant and the user prior, forgetting what depends on them."""
        if variant != self.variant:
            self.variant = variant
            self._final = self._label = None
        self._prior_key = key
        if prior is not self.user_prior:
            self.user_prior = prior
            if prior is not None and self._image is not None:
                check_prior_against_image(prior, self._image)
            if self.trained_variant == "seg+il-in" and self._work is not None:
                self._outputs = None
            self._final = self._label = None

    def _set_roi(self, roi: Optional[Box]) -> None:
        """Set the ROI and re-run an image already set; on an InputError nothing changes."""
        previous, self.roi = self.roi, roi
        try:
            if self._image is not None:
                self._prepare(self._image)
        except InputError:  # e.g. an ROI outside the image: raised before anything was cleared
            self.roi = previous
            raise

    def set_variant(self, variant: str) -> None:
        """Run as ``variant``: the trained one, or ``"seg+pp"`` for a ``seg`` model (and back)."""
        self._check_variant(variant)
        self.set_options(self.options.replace(variant=None if variant == self.trained_variant else variant))

    def set_prior(self, prior: Optional[IntensityPrior]) -> None:
        """A user prior applied as post-processing (``P x L``) for any variant, and as the input channel of
        ``seg+il-in``; None goes back to the model's behaviour. Takes effect on an image already set. It
        replaces the prior named by the options (their prior fields are cleared)."""
        if prior is not None and not isinstance(prior, IntensityPrior):
            raise InputError(f"the prior must be an IntensityPrior, not {type(prior).__name__}")
        self.options = self.options.replace(prior_mean=None, prior_sd=None, prior_table=None)
        self._commit(self.variant, prior, self.options.prior_key())

    def set_roi(self, roi: Optional[Box]) -> None:
        """Restrict the work to ``roi`` (LPS mm; None: the whole image); re-runs an image already set."""
        if roi is not None and not isinstance(roi, Box):
            raise InputError(f"the ROI must be a Box (LPS mm), not {type(roi).__name__}")
        corners = None if roi is None else tuple(float(v) for v in (*roi.corner_a, *roi.corner_b))
        self.set_options(self.options.replace(roi=corners))
        self.roi = roi

    def _priors(self) -> tuple[Optional[IntensityPrior], Optional[IntensityPrior]]:
        """``(input prior, post-processing prior)`` of the current variant and user prior."""
        input_prior = (self.user_prior or self.model_prior) if self.trained_variant == "seg+il-in" else None
        post = self.user_prior or (self.model_prior if self.variant == "seg+pp" else None)
        return input_prior, post

    def _prepare(self, image: Image, *others: Image) -> None:
        if not looks_like_ct(image.array):
            raise InputError(f"{METHOD} expects a CT in HU, but the intensities ({float(image.array.min()):g} .. "
                             f"{float(image.array.max()):g}) do not look like CT (< 1 % of voxels below {CT_LOW_HU:g})")
        box = box_to_index(image, self.roi) if self.roi is not None else None
        self._clear()
        lo, hi = (box.lo, box.hi) if box is not None else (np.zeros(3, int), image.size_ijk - 1)
        region = image.crop(lo, hi) if box is not None else image
        for prior in {id(p): p for p in self._priors() if p is not None}.values():
            check_prior_against_image(prior, region)
        margin = np.ceil(self.prep.spacing_mm / region.spacing).astype(int)
        body = body_box(region, self.prep.body_hu, margin)
        if body is None:
            warnings.warn(f"{METHOD}: no voxel above {self.prep.body_hu:g} HU in the "
                          f"{'ROI' if self.roi is not None else 'image'}; nothing to segment", LesionSegWarning)
            return
        self._region = region.crop(*body)
        self._box = tuple(slice(o, o + s) for o, s in zip((lo + body[0])[::-1], self._region.shape))
        self._work = to_working_grid(self._region, self.prep.spacing_mm)
        log.info("%s: working grid %s at %.2f mm (region %s of %s)", METHOD, self._work.shape, self.prep.spacing_mm,
                 self._region.shape, image.shape)
        self.predict()

    def _smoothed_hu(self, prior: IntensityPrior) -> np.ndarray:
        """Working-grid HU after ``prior``'s anisotropic diffusion (cached per smoothing setting)."""
        key = json.dumps(prior.smoothing, sort_keys=True)
        if key not in self._smoothed:
            self._smoothed[key] = prior.smooth(self._work).array
        return self._smoothed[key]

    def _network_outputs(self) -> np.ndarray:
        """``(C_out, K, J, I)`` sigmoid outputs of the network on the working grid (computed once). Windows
        shrink to the grid (rounded up to a multiple of 8) where it is smaller than ``patch``."""
        if self._outputs is None:
            input_prior = self._priors()[0]
            volume = normalise(self._work.array, self.prep.window_hu)[None]
            patch = tuple(min(p, -(-s // 8) * 8) for p, s in zip(self.prep.patch, volume.shape[1:]))
            if input_prior is not None:
                volume = np.concatenate([volume, input_prior.likelihood(self._smoothed_hu(input_prior))[None]])
            with progress.task(f"{METHOD} windows") as tick, inference_context():
                self._outputs = sliding_window(lambda batch: torch.sigmoid(self.net(batch)), volume, patch,
                                               self.prep.overlap, batch_size=self.prep.batch_size, progress=tick,
                                               device=self.device)
        return self._outputs

    def _final_maps(self) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Working-grid ``(P_final, likelihood)``: the likelihood of the prior in use, else the network's
        predicted one (2-output variants), else None."""
        if self._final is None:
            outputs = self._network_outputs()
            input_prior, post = self._priors()
            prob, likelihood = outputs[0], (outputs[1] if outputs.shape[0] > 1 else None)
            if input_prior is not None:
                likelihood = input_prior.likelihood(self._smoothed_hu(input_prior))
            if post is not None:
                likelihood = post.likelihood(self._smoothed_hu(post))
                prob = prob * likelihood
            self._final = (prob, likelihood)
        return self._final

    def _on_region(self, work_array: np.ndarray) -> np.ndarray:
        """A working-grid map resampled linearly onto the worked region of the CT grid (float32)."""
        return resample_to_grid(self._work.with_array(work_array), self._region, "linear", 0.0).array

    def predict(self, prompt: Prompt = None) -> Image:
        """uint8 label (0 background, 1 lesion) on the CT grid: ``P_final > threshold`` there."""
        if prompt is not None:
            raise InputError(f"{METHOD} is automatic and takes no prompt (use set_roi to restrict it)")
        image = self.image
        if self._label is None and self._work is None:  # nothing above body_hu: nothing was segmented
            self._label = image.with_array(np.zeros(image.shape, np.uint8))
        elif self._label is None:
            label = np.zeros(image.shape, np.uint8)
            label[self._box] = self._on_region(self._final_maps()[0]) > self.prep.threshold
            self._label = image.with_array(label)
        return self._label

    def _map(self, index: int, what: str) -> Image:
        image = self.image
        out = np.zeros(image.shape, np.float32)
        if self._work is not None:
            values = self._final_maps()[index]
            if values is None:
                raise InputError(f"this {self.variant} model without a prior has no intensity likelihood map")
            out[self._box] = self._on_region(values)
        return Image(out, image.spacing, image.origin, image.direction, {"units": what})

    def probability(self) -> Image:
        """``P_final`` (0..1, float32) on the CT grid (0 outside the worked region)."""
        return self._map(0, "lesion probability")

    def likelihood(self) -> Image:
        """The intensity likelihood (0..1, float32) on the CT grid: the prior's ``L(smoothed HU)`` when one is
        used, else the network's prediction (:class:`InputError` for ``seg`` without a prior)."""
        return self._map(1, "intensity likelihood")

    def lesions(self) -> list[dict]:
        """One row per 26-connected lesion of :meth:`predict`, largest first: the shared lesion table
        (:func:`lesionseg.lesions.lesion_table`: ``id``, ``voxels``, ``volume_ml``, ``mean`` HU of the CT given to
        ``set_image``, ``centroid_lps`` mm, ``bbox_ijk`` on the CT grid)."""
        return lesion_table(self.predict(), self.image, connectivity=CONNECTIVITY)


def _same_box(a: Optional[Box], b: Optional[Box]) -> bool:
    """Whether two ROIs (or None) have the same corners."""
    if a is None or b is None:
        return a is b
    return bool(np.array_equal(a.corner_a, b.corner_a) and np.array_equal(a.corner_b, b.corner_b))
