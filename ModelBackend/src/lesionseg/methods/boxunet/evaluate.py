"""``lesionseg evaluate box-unet --data DATASET --model M [M ...] [--baselines]``: TS-FCN's box protocol
(:class:`~lesionseg.methods.tsfcn.evaluate.BoxEvaluation`: boxes jittered ±15 %, per-lesion 3D Dice, paired
tests, HU-threshold and GrabCut baselines) with ``box-unet`` as the model row. On a merged dataset
(``lesionseg data merge``) every row is also reported per lesion kind (``lesion_dice_by_group``); the five fold
models of a cross-validation are given together, each scoring the cases its card held out.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import numpy as np

from ...data import Case
from ...errors import LesionSegWarning
from ...evaluation import Predictor
from ...image import Image
from ...options import Options
from ...prompts import Prompt
from ..recist.evaluate import RecistEvaluation
from ..tsfcn import data
from ..tsfcn.evaluate import BoxEvaluation

COSEG_PROPAGATE = 40
"""Slices on each side that the ``recist-coseg --propagate`` baseline segments (enough for the tallest lesion)."""


class BoxUNetEvaluation(BoxEvaluation):
    """``lesionseg evaluate box-unet``: the model's row is ``box-unet``; baselines as :class:`BoxEvaluation`."""

    hu_thresholds = (-700.0, -500.0, -400.0, -300.0, -200.0, -100.0, -50.0, 0.0, 20.0, 40.0)
    """Lung and soft-tissue candidates (chosen per lesion kind on the training cases)."""

    def rows(self, segmenter) -> dict[str, Optional[Options]]:
        return {"box-unet": None}


class Recist3DEvaluation(RecistEvaluation):
    """``lesionseg evaluate recist-3d --data DATASET --model M [M ...] [--baselines]``: one RECIST prompt per
    lesion measured on its key slice (:class:`~lesionseg.methods.recist.evaluate.RecistEvaluation`'s prompts),
    scored in 2D on the RECIST slice as the paper does (``dice``, recall, precision, ASSD, VS) and in 3D over the
    whole lesion (``dice_3d``: mean per-lesion 3D Dice of the case). Baselines (``--baselines``): GrabCut (2D)
    and, where its weights are installed, the shipped ``recist-coseg`` in 2D and propagated over
    :data:`COSEG_PROPAGATE` slices on each side. On a merged dataset both Dice scores are also given per lesion
    kind (``by_group``)."""

    def rows(self, segmenter) -> dict[str, Optional[Options]]:
        return {"recist-3d": None}

    def baselines(self, train_cases: Sequence[Case]) -> dict[str, Predictor]:
        from ...registry import build, find_model_folder

        out = dict(super().baselines(train_cases))
        if find_model_folder("recist-coseg") is None:
            return out
        coseg = build("recist-coseg", device="cpu")

        def runner(propagate: int) -> Predictor:
            def predict(images: tuple, prompt: Prompt) -> Image:
                coseg.set_options(coseg.options.replace(propagate=propagate))
                coseg.set_image(images[0])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", LesionSegWarning)
                    return coseg.predict(prompt)
            return predict

        out["recist-coseg"] = runner(0)
        out[f"recist-coseg --propagate {COSEG_PROPAGATE}"] = runner(COSEG_PROPAGATE)
        return out

    def score(self, pred: Image, truth: Image, case: Case) -> dict:
        scores = super().score(pred, truth, case)
        dice = data.lesion_dice(pred.array, data.lesion_masks(truth), truth.spacing)
        group = self.dataset.group(case.name) if self.dataset is not None else ""
        return {**scores, "dice_3d": round(float(np.mean(dice)), 4) if dice else None,
                **({"group": group} if group else {})}

    def summary(self, records: Sequence[dict]) -> dict:
        out = super().summary(records)
        for row, entry in out.items():
            by: dict[str, dict[str, list[float]]] = {}
            for r in records:
                group = r["scores"].get("group")
                if r["row"] != row or group is None:
                    continue
                for key in ("dice", "dice_3d"):
                    if isinstance(r["scores"].get(key), (int, float)):
                        by.setdefault(group, {}).setdefault(key, []).append(r["scores"][key])
            if by:
                entry["by_group"] = {g: {k: {"mean": round(float(np.mean(v)), 4), "cases": len(v)}
                                         for k, v in d.items()} for g, d in sorted(by.items())}
        return out

    @classmethod
    def markdown(cls, result: dict) -> str:
        text = super().markdown(result)
        lines = ["", "3D Dice over the whole lesion (mean per case), and per lesion kind (2D Dice on the RECIST "
                 "slice / 3D Dice, cases):", "", "| row | 3D Dice | per kind |", "|---|---|---|"]
        for row, entry in result["summary"].items():
            d3 = entry.get("dice_3d", {}).get("mean")
            kinds = "; ".join(f"{g}: {v.get('dice', {}).get('mean', float('nan')):.3f} / "
                              f"{v.get('dice_3d', {}).get('mean', float('nan')):.3f}, {v.get('dice', {}).get('cases', 0)}"
                              for g, v in entry.get("by_group", {}).items())
            lines.append(f"| {row} | {'–' if d3 is None else f'{d3:.4f}'} | {kinds or '–'} |")
        return text + "\n".join(lines) + "\n"
