"""Evaluate ``autopet-l2snet`` like autoPET and re-run the paper's ablation (2D only, 3D only, L2SNet,
L2SNet + adaptive threshold): ``lesionseg evaluate autopet-l2snet --data DATASET --model MODEL``.

The rows are the model with other :class:`~.segmenter.L2SOptions` (``mode``, ``adaptive``), thresholds of the
same cached maps, so each case is segmented once (:class:`L2SEvaluation`). Data, as datasets in the one convention:

* **held-out cases**: ``--data`` the training dataset; each model is scored on the cases its card holds out;
* **fresh phantoms**: ``lesionseg data synthetic autopet-l2snet -o D --cases 10 --seed 1000`` (seeds no
  training cohort of seed 0 uses) and ``--all-cases``;
* **real PET/CT crops**: ``lesionseg data import ibsi-sts ../shared/data/ibsi-sts-petct -o D [--names ...]``
  (PET in SUV, CT paired onto the PET grid, the expert tumour mask) and ``--all-cases``;
* **a real whole-body PET without CT** (``../shared/data/sts001-wholebody-fdgpet``): the full PET-only prediction
  (:func:`wholebody_pet_only`; ``python scripts/autopet_wholebody.py MODEL``) and the localisation phase alone
  (:func:`wholebody_localisation`), from Python.

Metrics (:mod:`lesionseg.metrics`, autoPET definitions, 18-connectivity, on the PET grid): Dice; FPV, the
volume of predicted lesions that touch no true lesion; FNV, the volume of true lesions that no predicted voxel
touches (the base :meth:`lesionseg.evaluation.Evaluation.score`). As in autoPET, the summary's mean Dice and mean
FNV are over cases with lesions, the mean FPV over all cases (``summary[row]["autopet"]``); the base statistics
(mean, median, worst over every case; global Dice) are kept beside them.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...evaluation import Evaluation
from ...io import read_image
from ...pet import read_pet
from ...metrics import dice, false_negative_volume, false_positive_volume, volume_ml
from .segmenter import L2SNetSegmenter

log = logging.getLogger(__name__)
ROWS = {"2D only": ("2d", False), "3D only": ("3d", False), "L2SNet": ("l2snet", False),
        "L2SNet + adaptive threshold": ("l2snet", True)}
"""Ablation rows: name -> (mode, adaptive)."""
PLAIN_MISSING = "3D only (cue-weighted net)"
"""The "3D only" row's name when the model has no network trained without the cue (``seg_plain.pt``): the
cue-weighted 3D net at threshold 0.5, which then equals "L2SNet"."""
PAPER = ("Paper, for comparison (autoPET-II preliminary test, 5 real cases, L2SNet + adaptive threshold): "
         "Dice 0.414, FPV 1.611 mL, FNV 1.874 mL.")


def available_rows(seg: L2SNetSegmenter) -> dict[str, tuple[str, bool]]:
    """The rows of :data:`ROWS` that ``seg``'s networks can produce (a loc-only model gives "2D only"); "3D only"
    is named :data:`PLAIN_MISSING` when the model lacks ``seg_plain.pt``."""
    needs = {"2d": {"loc"}, "3d": {"seg"} if "plain" not in seg.nets else {"plain"}, "l2snet": {"seg", "loc"}}
    rows = {row: spec for row, spec in ROWS.items() if needs[spec[0]] <= set(seg.nets)}
    if "3D only" in rows and "plain" not in seg.nets:
        rows = {(PLAIN_MISSING if row == "3D only" else row): spec for row, spec in rows.items()}
    return rows


class L2SEvaluation(Evaluation):
    """The ablation rows and autoPET's summary (module docstring); scores are the base class's."""

    def rows(self, segmenter: L2SNetSegmenter) -> dict:
        return {row: segmenter.options.replace(mode=mode, adaptive=adaptive)
                for row, (mode, adaptive) in available_rows(segmenter).items()}

    def summary(self, records: Sequence[dict]) -> dict:
        """The base summary per row, plus ``positive_cases`` and ``autopet``: mean ``dice`` and ``fnv_ml`` over
        cases with lesions, mean ``fpv_ml`` over all cases (None where there is no such case)."""
        out = super().summary(records)
        for row, entry in out.items():
            rows = [r["scores"] for r in records if r["row"] == row]
            positive = [s for s in rows if s["truth_voxels"] > 0]
            entry["positive_cases"] = len(positive)
            entry["autopet"] = {"dice": _mean(s["dice"] for s in positive),
                                "fpv_ml": _mean(s["fpv_ml"] for s in rows),
                                "fnv_ml": _mean(s["fnv_ml"] for s in positive)}
        return out

    @classmethod
    def markdown(cls, result: dict) -> str:
        """The ablation table (autoPET means), the rows by Dice, the paper's numbers, then the base table."""
        summary = result["summary"]
        first = next(iter(summary.values()), {"cases": 0, "positive_cases": 0})
        lines = [f"# {result['method']} on {result['dataset']}", "",
                 f"{'Synthetic data.' if result.get('synthetic') else 'Real data.'} Models: "
                 + ", ".join(f"`{m}`" for m in result["models"]) + f". {first['cases']} cases, "
                 f"{first.get('positive_cases', 0)} with lesions. Mean Dice and FNV over cases with lesions, mean "
                 "FPV over all cases (autoPET).", "",
                 "| row | Dice | FPV mL | FNV mL |", "|---|---|---|---|"]
        for row, entry in summary.items():
            v = entry["autopet"]
            lines.append(f"| {row} | {_fmt(v['dice'])} | {_fmt(v['fpv_ml'])} | {_fmt(v['fnv_ml'])} |")
        lines += ["", f"Rows by Dice, lowest first: {order_text(summary)}.", "", PAPER, "",
                  "Per case (mean (median, worst)):", ""]
        plain = {row: {k: v for k, v in entry.items() if k != "autopet"} for row, entry in summary.items()}
        base = Evaluation.markdown({**result, "summary": plain}).split("\n")
        return "\n".join(lines + base[base.index("") + 3:]).rstrip("\n") + "\n"


def order_text(summary: dict) -> str:
    """The rows by mean autoPET Dice, lowest first, joined by " < ", or " = " between rows whose Dice agree to
    3 decimals ("n/a" when no row has a Dice)."""
    dices = {row: e["autopet"]["dice"] for row, e in summary.items() if e["autopet"]["dice"] is not None}
    order = sorted(dices, key=dices.get)
    text = order[0] if order else "n/a"
    for before, row in zip(order, order[1:]):
        text += (" = " if round(dices[before], 3) == round(dices[row], 3) else " < ") + row
    return text


def _mean(values) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def wholebody_localisation(seg: L2SNetSegmenter, folder: Path) -> dict:
    """The localisation phase (``P_loc > 0.5``, :meth:`L2SNetSegmenter.localise`, PET only) on the STS_001
    whole-body PET (``folder`` = ``sts001-wholebody-fdgpet``: ``PET_SUVbw.nii.gz``, ``mask_GTV_Mass.nii.gz``)
    against its tumour mask: Dice, autoPET FPV and FNV, the predicted volume outside the mask (mL), seconds."""
    pet, mask = read_image(Path(folder) / "PET_SUVbw.nii.gz"), read_image(Path(folder) / "mask_GTV_Mass.nii.gz")
    t0 = time.perf_counter()
    cue = seg.localise(pet)
    seconds = time.perf_counter() - t0
    pred = cue.with_array((cue.array > seg.prep.cue_threshold).astype(np.uint8))
    truth = mask.with_array((mask.array > 0).astype(np.uint8))
    outside = int(np.count_nonzero((pred.array > 0) & (truth.array == 0))) * truth.voxel_volume_ml
    return {"case": "STS_001 whole-body PET", "dice": round(float(dice(pred, truth)), 4),
            "fpv_ml": round(false_positive_volume(pred, truth), 3),
            "fnv_ml": round(false_negative_volume(pred, truth), 3), "pred_ml": round(volume_ml(pred), 3),
            "truth_ml": round(volume_ml(truth), 3), "outside_mask_ml": round(outside, 3),
            "seconds": round(seconds, 2)}


WHOLEBODY_PET, WHOLEBODY_MASK = "PET_SUVbw.nii.gz", "mask_GTV_Mass.nii.gz"
"""Files of the STS_001 whole-body folder (``sts001-wholebody-fdgpet``): the PET in SUVbw, the tumour mask."""


def wholebody_pet_only(seg: L2SNetSegmenter, folder: Path) -> dict:
    """The full PET-only prediction (``seg.set_image(pet)`` then ``seg.predict()``, in ``seg``'s current mode:
    "l2snet" with the adaptive threshold by default) on the STS_001 whole-body PET (``folder`` =
    ``sts001-wholebody-fdgpet``: ``PET_SUVbw.nii.gz`` read as SUV, ``mask_GTV_Mass.nii.gz``) against its tumour
    mask, on the PET grid.

    Returns:
        ``found`` (any predicted voxel inside the tumour), ``dice``, autoPET ``fpv_ml`` / ``fnv_ml``
        (:mod:`lesionseg.metrics`, 18-connectivity), ``outside_mask_ml`` (predicted volume outside the mask),
        ``pred_ml``, ``truth_ml``, ``seconds`` (``set_image`` + ``predict``), ``mode`` and ``adaptive``.

    Raises:
        WeightsError: a model not trained for PET-only input (card ``preprocessing.ct_dropout`` 0) in a mode
            that needs its 3D net.
    """
    folder = Path(folder)
    pet = read_pet(folder / WHOLEBODY_PET, units="suv")
    mask = read_image(folder / WHOLEBODY_MASK)
    t0 = time.perf_counter()
    seg.set_image(pet)
    pred = seg.predict()
    seconds = time.perf_counter() - t0
    truth = mask.with_array((mask.array > 0).astype(np.uint8))
    hit = pred.array > 0
    outside = int(np.count_nonzero(hit & (truth.array == 0))) * truth.voxel_volume_ml
    return {"case": "STS_001 whole-body PET (PET only)", "mode": seg.mode, "adaptive": seg.adaptive,
            "found": bool(np.any(hit & (truth.array > 0))), "dice": round(float(dice(pred, truth)), 4),
            "fpv_ml": round(false_positive_volume(pred, truth), 3),
            "fnv_ml": round(false_negative_volume(pred, truth), 3), "outside_mask_ml": round(outside, 3),
            "pred_ml": round(volume_ml(pred), 3), "truth_ml": round(volume_ml(truth), 3), "seconds": round(seconds, 2)}
