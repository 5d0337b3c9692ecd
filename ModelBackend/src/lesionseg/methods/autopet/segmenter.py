"""The registered ``autopet-l2snet`` method: whole-body FDG-PET (SUV) + CT, or the PET alone -> lesion label on
the PET grid.

After L2SNet (Cai et al., "A Localization-to-Segmentation Framework for Automatic Tumor Segmentation in
Whole-Body PET/CT Images", autoPET-II 2023). ``set_image(pet_suv, ct)`` does all the work:

1. :func:`lesionseg.pet.check_pet_ct`: constant volumes, a 2D PET, swapped inputs, a PET not in SUV and volumes
   that do not overlap are :class:`InputError` (the last names ``--allow-pet-only``, which drops such a CT:
   :func:`.inputs.usable_ct`).
2. Working grid: ``spacing_mm`` voxels (4 mm default; the paper: autoPET's 2.04 x 2.04 x 3 mm) aligned with
   LPS over the PET's extent, so coronal slices have the head up whatever the input's direction; PET and CT
   resampled onto it (linear; CT -1000 HU outside; one interpolation instead of CT -> PET grid -> work grid).
3. Intensity scaling exactly as the issue states the paper's: PET clipped to 0..15 SUV and CT clipped to
   **100..250 HU**, each mapped linearly to 0..1. That CT window keeps only bone and dense tissue (fat, lung,
   most soft tissue become 0); the usual soft-tissue window is -100..250 HU, so the issue may have lost a
   minus sign. ``ct_window`` is configuration (``lesionseg train ... --ct-window``): either can be trained.
4. Localisation: the 2D net on every coronal slice (fixed ``j``) of the scaled PET in ``loc_size`` windows
   (padded when smaller, Gaussian-blended when larger; paper 320 x 384), sigmoid -> the 3D location cue
   ``P_loc``. Slices without any PET signal get cue 0 without running the net.
5. Segmentation: the 3D U-Net on the 2-channel (PET, CT) volume by Gaussian-weighted sliding window
   (``seg_patch``; paper 128 x 192 x 160), sigmoid -> lesion probability ``P``.
6. Both maps are resampled linearly onto the PET grid and thresholded there (label uint8 0/1):

   * ``mode="2d"``: ``P_loc > 0.5`` (the localisation phase alone);
   * ``"3d"``: ``P_plain > 0.5``, the 3D net trained without the cue weight (``seg_plain.pt``; when the model
     has none, the cue-weighted net's ``P``, logged);
   * ``"l2snet"``: ``P > 0.5``, or with the **adaptive threshold** (default): ``P > 0.1`` where ``P_loc > 0.5``
     and ``P > 0.5`` elsewhere (``--no-adaptive`` turns it off).

**PET-only mode**: ``set_image(pet_suv)`` (the CT is the spec's optional input: ``lesionseg predict autopet-l2snet
PET -o OUT``) checks the PET alone (:func:`lesionseg.pet.check_pet`), logs a warning and fills the CT channel with
:data:`NO_CT`, as CT-channel dropout did in training (card ``preprocessing.ct_dropout`` > 0). A model trained
without it (``ct_dropout`` 0) refuses PET-only input with a :class:`WeightsError`, except in mode "2d", whose
localisation net reads the PET only.

:meth:`L2SNetSegmenter.location_cue` and :meth:`L2SNetSegmenter.probability` give the maps on the PET grid.
Predict-time settings are :class:`L2SOptions` (PET units for :func:`.inputs.read_inputs`, ``mode``, ``adaptive``,
``allow_pet_only``); the extra outputs of ``lesionseg predict`` (``--table``, ``--mip``) are written by
:func:`.lesion_table.write_output` and :func:`.mip.write_output`. Training (:mod:`.train`), evaluation
(:mod:`.evaluate`) and the synthetic dataset (:mod:`.data`) are named in the spec by reference; this module imports
none of them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ...errors import InputError, WeightsError
from ...image import Image
from ...inference import prepare_for_inference
from ...modelfolder import ModelFolder
from ...options import Options, option
from ...prompts import Prompt
from ...registry import OutputSpec, register
from ...segmenter import Segmenter
from ...suv import UNITS
from .inputs import usable_ct
from .network import L2SLocNet  # noqa: F401  (registers the card name "L2SLocNet" with build_network)
from .pipeline import (MODES, NETWORK_FILES, REQUIRED_PREPROCESSING, L2SPreprocessing, _on_grid, location_cue_array,
                       network_input, probability_array, scale, threshold_maps, to_working_grid)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class L2SOptions(Options):
    """Predict-time settings of ``autopet-l2snet`` (the flags of ``lesionseg predict autopet-l2snet``).

    The PET fields say how :func:`.inputs.read_inputs` turns the PET file into SUVbw (:func:`lesionseg.pet.read_pet`:
    a DICOM folder converts from its tags; a NIfTI/NRRD/MHA file needs ``pet_units`` "suv", or "bqml" with
    ``weight_kg`` and the dose); the Slicer panel sets them from its own units box. ``mode`` picks the ablation
    row :meth:`L2SNetSegmenter.predict` returns (None: "l2snet" when the model has both networks, "2d" for a
    localisation-only model, else "3d"); ``adaptive`` the adaptive threshold in "l2snet" mode;
    ``allow_pet_only``: a CT that does not overlap the PET is dropped (PET-only mode, with a warning) instead of
    being an :class:`InputError`.
    """

    pet_units: str = option("auto", "what a NIfTI/NRRD/MHA PET holds: suv, or bqml (needs --weight-kg and a "
                                    "dose); auto = DICOM only (SUV from the tags); never guessed",
                            choices=UNITS, slicer=False)
    weight_kg: Optional[float] = option(None, "patient weight (bqml input)", unit="kg", slicer=False)
    dose_bq: Optional[float] = option(None, "injected dose at injection (bqml input)", unit="Bq", slicer=False)
    decay_s: Optional[float] = option(None, "seconds from injection to scan start (0 when decay-corrected to "
                                            "injection)", unit="s", slicer=False)
    half_life_s: Optional[float] = option(None, "radionuclide half-life (18F: 6586.2)", unit="s", slicer=False)
    decayed_dose_bq: Optional[float] = option(None, "dose decayed to the scan start (instead of --dose-bq/"
                                                    "--decay-s/--half-life-s)", unit="Bq", slicer=False)
    pet_series: Optional[str] = option(None, "SeriesInstanceUID of the PET when its DICOM folder holds several "
                                             "series", metavar="UID", slicer=False)
    mode: Optional[str] = option(None, "l2snet (default when the model has both networks), or an ablation row: "
                                       "2d = localisation only, 3d = 3D net only", choices=MODES, advanced=True)
    adaptive: bool = option(True, "lower the threshold where the location cue is > 0.5 (the adaptive threshold "
                                  "of l2snet mode)", advanced=True)
    allow_pet_only: bool = option(False, "when the CT does not overlap the PET, drop it and segment the PET alone "
                                         "(needs a model trained for PET-only; without this flag it is an error)")

    def __post_init__(self) -> None:
        if self.pet_units not in UNITS:
            raise InputError(f"{self.flag('pet_units')} must be one of {', '.join(UNITS)}, not {self.pet_units!r}")
        if self.mode is not None and self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r} ({self.flag('mode')})")


@register("autopet-l2snet", prompt="none", inputs=("PET", "CT"), optional_inputs=1,
          classes=("background", "lesion"), options=L2SOptions, training="lesionseg.methods.autopet.train:TRAINING",
          evaluation="lesionseg.methods.autopet.evaluate:L2SEvaluation",
          synthetic="lesionseg.methods.autopet.data:SYNTHETIC",
          reader="lesionseg.methods.autopet.inputs:read_inputs",
          outputs=(OutputSpec("table", (".csv", ".json"), "write the lesion table here",
                              writer="lesionseg.methods.autopet.lesion_table:write_output"),
                   OutputSpec("mip", (".png",), "write a coronal MIP with the lesions outlined here",
                              writer="lesionseg.methods.autopet.mip:write_output")),
          verbs=("lesionseg.cli_suv",), demo_case="wholebody_petct",
          summary="L2SNet (Cai et al., autoPET-II 2023): whole-body FDG-PET/CT lesions (CT optional with a model "
                  "trained for PET-only); 2D coronal localisation -> cue-weighted 3D U-Net -> adaptive threshold; "
                  "lesion table + MIP")
class L2SNetSegmenter(Segmenter):
    """L2SNet on a PET in SUV and its CT, or on the PET alone; the label is on the PET grid (module docstring).

    ``set_image(pet, ct)`` is the PET/CT mode. ``set_image(pet)`` is the PET-only mode (:attr:`pet_only`; logged as
    a warning): the 3D nets get the CT channel filled with :data:`NO_CT`, which only a model trained with
    CT-channel dropout (card ``preprocessing.ct_dropout`` > 0) has learnt; other models refuse it
    (:class:`WeightsError`) except in ``mode="2d"``, whose localisation net reads the PET only. With
    ``options.allow_pet_only`` a CT that does not overlap the PET is dropped (PET-only mode, warned) instead of
    being an :class:`InputError`.

    Args:
        model: model folder whose card lists ``networks`` (``loc.pt``, ``seg.pt``, optional ``seg_plain.pt``,
            each ``{"class", "kwargs"}``; a ``--stage loc`` model has only ``loc.pt``) and ``preprocessing``
            (with :data:`REQUIRED_PREPROCESSING`), all required: a missing one is a :class:`WeightsError`, not
            a default. The networks are loaded here, so a broken folder fails before any image is read.
        device: ``"cpu"`` or ``"cuda"``.
        options: :class:`L2SOptions` (default: its defaults); ``mode`` and ``adaptive`` are checked against the
            networks here (a localisation-only model cannot give "l2snet": :class:`WeightsError`).
        loc_net, seg_net, plain_net: networks to use instead of the model folder's (tests).
        preprocessing: used with the networks passed in.
        mode, adaptive: shorthands that replace ``options.mode`` / ``options.adaptive`` when given.
    """


    def __init__(self, model: Optional[ModelFolder] = None, device: str = "cpu",
                 options: Optional[L2SOptions] = None, *, loc_net: Optional[torch.nn.Module] = None,
                 seg_net: Optional[torch.nn.Module] = None, plain_net: Optional[torch.nn.Module] = None,
                 preprocessing: Optional[L2SPreprocessing] = None, mode: Optional[str] = None,
                 adaptive: Optional[bool] = None) -> None:
        super().__init__(model, device, options)
        given = {k: v for k, v in (("mode", mode), ("adaptive", adaptive)) if v is not None}
        if given:
            self.options = self.options.replace(**{k: (bool(v) if k == "adaptive" else v) for k, v in given.items()})
        nets = {"loc": loc_net, "seg": seg_net, "plain": plain_net}
        if model is not None and not any(nets.values()):
            specs = model.require("networks", "the networks and their keyword arguments")
            if not set(specs) & set(NETWORK_FILES.values()):
                raise model.lacks([f"networks.{name}" for name in NETWORK_FILES.values()], "any of its networks")
            preprocessing = model.settings(L2SPreprocessing, "preprocessing", "the pre-processing the model was "
                                           "trained with", REQUIRED_PREPROCESSING)
            for key, name in NETWORK_FILES.items():
                if name in specs:
                    nets[key] = model.load_network(name)
        if not any(nets.values()):
            raise WeightsError("autopet-l2snet needs a model folder (or networks passed as loc_net=/seg_net=)")
        self.nets = {key: prepare_for_inference(net, device) for key, net in nets.items() if net is not None}
        self.prep = preprocessing or L2SPreprocessing()
        self.mode, self.adaptive = "l2snet", True
        self._work: Optional[tuple[Image, np.ndarray]] = None
        self.pet_only = False
        self._maps: dict[str, np.ndarray] = {}
        self._on_pet: dict[str, Image] = {}
        self._apply_options()

    def _need(self, key: str) -> torch.nn.Module:
        """The network ``key`` ("loc", "seg", "plain"); WeightsError naming the missing file."""
        if key not in self.nets:
            raise WeightsError(f"the autopet-l2snet model has no {NETWORK_FILES[key]} network; train it with "
                               f"'lesionseg train autopet-l2snet --stage {'loc' if key == 'loc' else 'seg'}' "
                               "or choose another --mode")
        return self.nets[key]

    def _needed(self, mode: str, adaptive: bool) -> list[str]:
        """Maps that ``mode`` uses: "cue", "seg" (cue-weighted 3D net) and/or "plain"."""
        if mode == "2d":
            return ["cue"]
        if mode == "3d":
            return ["plain" if "plain" in self.nets else "seg"]
        return ["seg", "cue"] if adaptive else ["seg"]

    def default_mode(self) -> str:
        """The mode when ``options.mode`` is None: "l2snet" with both networks, "2d" for a localisation-only
        model, else "3d"."""
        if {"loc", "seg"} <= set(self.nets):
            return "l2snet"
        return "2d" if set(self.nets) == {"loc"} else "3d"

    def set_mode(self, mode: str, adaptive: bool = True) -> None:
        """Choose the ablation row that :meth:`predict` returns (see the module docstring): the same as
        :meth:`set_options` with ``mode`` and ``adaptive`` replaced. Checks the model has the networks it needs
        and computes what is missing when an image is already set."""
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.set_options(self.options.replace(mode=mode, adaptive=bool(adaptive)))

    def _apply_options(self) -> None:
        """Resolve ``options.mode``, check the networks it needs, and compute missing maps of a set image."""
        mode, adaptive = self.options.mode or self.default_mode(), bool(self.options.adaptive)
        for key in self._needed(mode, adaptive):
            self._need("loc" if key == "cue" else key)
        if self.pet_only:
            self._check_pet_only(mode)
        if mode == "3d" and "plain" not in self.nets and self.mode != "3d":
            log.info("autopet-l2snet: no seg_plain.pt in the model; --mode 3d uses the cue-weighted 3D net at 0.5")
        self.mode, self.adaptive = mode, adaptive
        if self._work is not None:
            for key in self._needed(mode, adaptive):
                self._map(key)

    def _check_pet_only(self, mode: str) -> None:
        """WeightsError when ``mode`` needs a 3D net and the model was not trained for PET-only input
        (``preprocessing.ct_dropout`` 0: its 3D nets have never seen a PET without its CT)."""
        if mode != "2d" and self.prep.ct_dropout <= 0.0:
            raise WeightsError(
                "this autopet-l2snet model was not trained for PET-only input (its card's preprocessing.ct_dropout "
                "is 0: its 3D nets have never seen a PET without its CT); give the CT as well, or use a model "
                "trained with CT-channel dropout ('lesionseg train autopet-l2snet ... --ct-dropout 0.5', then "
                "--weights MODEL_DIR)")

    def _prepare(self, image: Image, *others: Image) -> None:
        self._work, self._maps, self._on_pet = None, {}, {}  # a refused image leaves no maps of the previous one
        self.pet_only = False
        ct = usable_ct(image, others[0] if others else None, self.options.allow_pet_only,
                       self.options.flag("allow_pet_only"))
        if ct is None:
            self._check_pet_only(self.mode)
            if not others:
                log.warning("autopet-l2snet: no CT was given: PET-only mode (the 3D net's CT channel is empty, "
                            "as in the model's CT-dropout training)")
        self.pet_only = ct is None
        pet_work, ct_work = to_working_grid(image, ct, self.prep)
        self._work = (pet_work, network_input(pet_work, ct_work, self.prep))
        self._maps, self._on_pet = {}, {}
        for key in self._needed(self.mode, self.adaptive):
            self._map(key)
        log.info("autopet-l2snet: working grid %s at %.1f mm%s", pet_work.shape, self.prep.spacing_mm,
                 " (PET only)" if self.pet_only else "")

    def _map(self, key: str) -> np.ndarray:
        """Working-grid ``"cue"`` (P_loc), ``"seg"`` or ``"plain"`` (3D probabilities), computed once per image."""
        if self._work is None:
            raise InputError("autopet-l2snet: call set_image() before predict()")
        if key not in self._maps:
            volume = self._work[1]
            if key == "cue":
                self._maps[key] = location_cue_array(self._need("loc"), volume[0], self.prep, self.device)
            else:
                self._maps[key] = probability_array(self._need(key), volume, self.prep, self.device)
        return self._maps[key]

    def _pet_grid(self, key: str) -> Image:
        """Map ``key`` of :meth:`_map` on the PET grid (cached)."""
        if key not in self._on_pet:
            units = "location cue (probability)" if key == "cue" else "lesion probability"
            self._on_pet[key] = _on_grid(self._map(key), self._work[0], self.image, units)
        return self._on_pet[key]

    def location_cue(self) -> Image:
        """``P_loc`` (0..1, float32) on the PET grid."""
        return self._pet_grid("cue")

    def probability(self, network: str = "seg") -> Image:
        """3D lesion probability (0..1, float32) on the PET grid: ``"seg"`` the cue-weighted net, ``"plain"``
        the one trained without the cue (:class:`WeightsError` when the model lacks it)."""
        if network not in ("seg", "plain"):
            raise InputError(f"network must be 'seg' or 'plain', not {network!r}")
        return self._pet_grid(network)

    def label(self, mode: Optional[str] = None, adaptive: Optional[bool] = None) -> Image:
        """uint8 label (0/1) on the PET grid for ``mode`` / ``adaptive`` (default: the current ones)."""
        mode = self.mode if mode is None else mode
        adaptive = self.adaptive if adaptive is None else bool(adaptive)
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        maps = {key: self._pet_grid(key).array for key in self._needed(mode, adaptive)}
        prob = maps.get("seg", maps.get("plain"))
        out = threshold_maps(prob, maps.get("cue"), mode, adaptive, self.prep).astype(np.uint8)
        return Image(out, self.image.spacing, self.image.origin, self.image.direction)

    def predict(self, prompt: Prompt = None) -> Image:
        """uint8 lesion label (0 background, 1 lesion) on the PET grid for the current mode."""
        if prompt is not None:
            raise InputError("autopet-l2snet is automatic and takes no prompt")
        return self.label()

    def localise(self, pet: Image) -> Image:
        """The localisation phase alone on a PET in SUV (no CT needed): ``P_loc`` on ``pet``'s grid."""
        from ...pet import looks_like_pet

        pet.check_finite()
        if float(pet.array.min()) == float(pet.array.max()) or not looks_like_pet(pet.array):
            raise InputError("the PET is constant or does not look like SUV (convert it with 'lesionseg suv')")
        work = to_working_grid(pet, None, self.prep)[0]
        cue = location_cue_array(self._need("loc"), scale(work.array, self.prep.pet_window), self.prep, self.device)
        return _on_grid(cue, work, pet, "location cue (probability)")
