"""Evaluation of box methods on jittered boxes: TS-FCN against classical baselines, and ``classical-box``.

``lesionseg evaluate tsfcn --data DATASET --model M [--baselines] [--seed S] [--json OUT] [--markdown OUT]``
scores the model on the cases its card held out; ``lesionseg evaluate classical-box --data DATASET`` scores
the weight-free baseline on every case (it never trained). The protocol is the paper's:

- **prompts**: one box per lesion (:func:`.data.lesion_masks`), the lesion's bounding box jittered ±15 % in
  scale and shift per axis from a generator seeded with ``--seed`` and the case's name
  (:func:`.data.case_boxes`), so every row and every model sees the same boxes;
- **score**: the 3D Dice of each lesion (intersections and sizes summed over all its slices before dividing;
  where a case holds several lesions, the predicted voxels nearest to a lesion count for it:
  :func:`.data.lesion_dice`), besides the common scores of :class:`lesionseg.evaluation.Evaluation`;
- **summary**: per row the mean (median, worst) per-lesion Dice, and a paired Wilcoxon signed-rank test of
  every other row against the first (the method);
- **baselines** (``--baselines``): an HU threshold inside the box (largest component above the threshold; the
  threshold of :data:`HU_THRESHOLDS` with the best mean Dice on the *training* cases' lesions, boxes seeded
  with ``--seed`` + 1), GrabCut and GrabCut + DenseCRF (``classical-box``).

The Dice that ``lesionseg train tsfcn`` records as ``validation_mean_dice_3d`` is this evaluation's mean
per-lesion Dice of the ``tsfcn`` row at ``--seed 0``.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from ...data import Case
from ...errors import LesionSegWarning
from ...evaluation import Evaluation, Predictor
from ...image import Image
from ...options import Options
from ...prompts import Prompt
from . import data

log = logging.getLogger(__name__)

HU_THRESHOLDS = (-700.0, -600.0, -500.0, -400.0, -300.0)
"""Candidate HU thresholds of the threshold baseline, chosen on the training cases."""
FIXED_HU = -400.0
"""The threshold used when there are no training cases to choose on (a weight-free method on every case)."""
THRESHOLD_ROW = "HU threshold"


class BoxEvaluation(Evaluation):
    """Jittered boxes, per-lesion 3D Dice and paired tests (module docstring); rows come from subclasses."""

    def __init__(self, spec, dataset, label_map, seed: int = 0) -> None:
        super().__init__(spec, dataset, label_map, seed)
        self._masks: tuple[str, list[np.ndarray]] = ("", [])
        self.threshold_choices: list[dict] = []

    def lesions(self, case: Case, truth: Image) -> list[np.ndarray]:
        """The lesion masks of ``truth`` (kept for the case last asked about)."""
        if self._masks[0] != case.name:
            self._masks = (case.name, data.lesion_masks(truth))
        return self._masks[1]

    def prompts(self, case: Case, truth: Image) -> list[Prompt]:
        boxes = data.case_boxes(truth, self.lesions(case, truth), case.name, self.seed)
        return [data.clip_to_image(truth, box) for box in boxes]

    def score(self, pred: Image, truth: Image, case: Case) -> dict:
        scores = super().score(pred, truth, case)
        dice = data.lesion_dice(pred.array, self.lesions(case, truth), truth.spacing)
        group = self._group(case.name)
        return {**scores, "lesion_dice": [round(float(d), 4) for d in dice], **({"group": group} if group else {})}

    def _ct(self) -> int:
        return data.ct_channel(self.dataset.channel_names) if self.dataset is not None else 0

    hu_thresholds: tuple[float, ...] = HU_THRESHOLDS
    """Candidate thresholds of the threshold baseline."""

    def _group(self, case: str) -> str:
        """The lesion kind of a case (:meth:`lesionseg.data.Dataset.group`), ``""`` without."""
        return self.dataset.group(case) if self.dataset is not None else ""

    def threshold_baseline(self, train_cases: Sequence[Case]) -> dict[str, Predictor]:
        """The HU-threshold row, its threshold chosen on ``train_cases`` (:data:`FIXED_HU` without any); on a
        merged dataset one threshold per lesion kind, each chosen on the training lesions of that kind."""
        from ..classical import threshold_in_box

        items = data.read_samples(train_cases, self.label_map) if train_cases else []
        kinds: dict[str, list] = {}
        for s in items:
            kinds.setdefault(self._group(s.case), []).append(s)
        chosen: dict[str, float] = {}
        for kind, group in sorted(kinds.items()) or [("", [])]:
            boxes = data.sample_boxes(group, self.seed + 1)
            scores: dict[float, float] = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LesionSegWarning)
                for candidate in self.hu_thresholds if group else ():
                    scores[candidate] = float(np.mean([
                        data.lesion_dice(threshold_in_box(s.image, box, candidate).array, [s.mask])[0]
                        for s, box in zip(group, boxes)]))
            chosen[kind] = max(scores, key=scores.get) if scores else FIXED_HU
            self.threshold_choices.append({"hu": chosen[kind], "training_lesions": len(group),
                                           "train_dice": {f"{k:g}": round(v, 4) for k, v in scores.items()},
                                           **({"group": kind} if kind else {})})
            log.info("HU threshold %g%s (chosen on %d training lesions)", chosen[kind],
                     f" for {kind}" if kind else "", len(group))
        ct = self._ct()

        def threshold(images: tuple, prompt: Prompt) -> Image:
            hu = chosen.get(self._group(self._masks[0]), FIXED_HU)  # _masks: the case being scored
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LesionSegWarning)
                return threshold_in_box(images[ct], prompt, hu)

        return {THRESHOLD_ROW: threshold}

    def grabcut_baselines(self) -> dict[str, Predictor]:
        """GrabCut alone and GrabCut + DenseCRF (``classical-box`` with and without ``--no-crf``)."""
        from ..classical import ClassicalBox, ClassicalBoxOptions

        ct = self._ct()

        def runner(seg: ClassicalBox) -> Predictor:
            def predict(images: tuple, prompt: Prompt) -> Image:
                seg.set_image(images[ct])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", LesionSegWarning)
                    return seg.predict(prompt)
            return predict

        return {"GrabCut": runner(ClassicalBox(options=ClassicalBoxOptions(crf=False))),
                "GrabCut + DenseCRF": runner(ClassicalBox())}

    def baselines(self, train_cases: Sequence[Case]) -> dict[str, Predictor]:
        return {**self.threshold_baseline(train_cases), **self.grabcut_baselines()}

    def summary(self, records: Sequence[dict]) -> dict:
        """The common summary plus, per row, ``lesion_dice`` (``mean``, ``median``, ``worst``, ``lesions``) and,
        for every row after the first, ``vs <first row>`` (:func:`paired`); the threshold row also gets the
        threshold chosen on each model's training cases."""
        out = super().summary(records)
        rows = list(out)
        per_row = {row: {(r["case"], n): d for r in records if r["row"] == row
                         for n, d in enumerate(r["scores"].get("lesion_dice") or [])} for row in rows}
        group_of = {r["case"]: r["scores"]["group"] for r in records if "group" in r.get("scores", {})}
        for row in rows:
            values = list(per_row[row].values())
            if values:
                out[row]["lesion_dice"] = _stats(values)
            if group_of:
                by_group: dict[str, list[float]] = {}
                for (case, _), d in per_row[row].items():
                    by_group.setdefault(group_of.get(case, "?"), []).append(d)
                out[row]["lesion_dice_by_group"] = {g: _stats(v) for g, v in sorted(by_group.items())}
        for row in rows[1:]:
            keys = sorted(set(per_row[rows[0]]) & set(per_row[row]))
            if keys:
                out[row][f"vs {rows[0]}"] = paired([per_row[rows[0]][k] for k in keys], [per_row[row][k] for k in keys])
        if THRESHOLD_ROW in out and self.threshold_choices:
            out[THRESHOLD_ROW]["chosen"] = self.threshold_choices
        return out

    @classmethod
    def markdown(cls, result: dict) -> str:
        """One line per row: lesions, mean (median, worst) per-lesion 3D Dice, the paired test against the
        first row, and the global Dice."""
        summary = result["summary"]
        rows = list(summary)
        first = rows[0] if rows else ""
        lines = [f"# {result['method']} on {result['dataset']}", "",
                 f"{'Synthetic data.' if result.get('synthetic') else 'Real data.'} Models: "
                 + ", ".join(f"`{m}`" for m in result["models"]) + f". Cases scored: {result['cases']}. "
                 "One box per lesion, jittered ±15 % in scale and shift per axis; the same boxes for every row.", "",
                 f"| row | lesions | mean 3D Dice per lesion (median, worst) | vs {first}: mean difference, "
                 f"{first} better on, Wilcoxon p | global Dice |", "|---|---|---|---|---|"]
        for row, entry in summary.items():
            d = entry.get("lesion_dice")
            cell = f"{d['mean']:.4f} ({d['median']:.4f}, {d['worst']:.4f})" if d else "–"
            test = entry.get(f"vs {first}")
            versus = "–"
            if test:
                p = "–" if test["p"] is None else f"{test['p']:.3g}"
                versus = f"{test['mean_difference']:+.4f}, {test['first_better']} of {test['lesions']}, {p}"
            lesions = d["lesions"] if d else 0
            lines.append(f"| {row} | {lesions} | {cell} | {versus} | {entry.get('global_dice', '–')} |")
        groups = sorted({g for entry in summary.values() for g in entry.get("lesion_dice_by_group", {})})
        if groups:
            lines += ["", "Per lesion kind: mean (median, worst) per-lesion 3D Dice, lesions.", "",
                      "| row | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
            for row, entry in summary.items():
                by = entry.get("lesion_dice_by_group", {})
                lines.append(f"| {row} | " + " | ".join(
                    f"{by[g]['mean']:.4f} ({by[g]['median']:.4f}, {by[g]['worst']:.4f}), {by[g]['lesions']}"
                    if g in by else "–" for g in groups) + " |")
        for choice in summary.get(THRESHOLD_ROW, {}).get("chosen", []):
            kind = f" for {choice['group']}" if choice.get("group") else ""
            lines.append(f"\n{THRESHOLD_ROW}{kind}: {choice['hu']:g} HU, chosen on {choice['training_lesions']} "
                         f"training lesions {choice['train_dice'] or '(none: fixed)'}.")
        return "\n".join(lines) + "\n"


def _stats(values: Sequence[float]) -> dict:
    """Mean, median, worst and count of per-lesion Dice values."""
    return {"mean": round(float(np.mean(values)), 4), "median": round(float(np.median(values)), 4),
            "worst": round(float(np.min(values)), 4), "lesions": len(values)}


def paired(first: Sequence[float], other: Sequence[float]) -> dict[str, Any]:
    """Paired comparison of two rows' per-lesion Dice: ``lesions``, ``mean_difference`` (other - first),
    ``first_better`` (lesions where the first row scores higher) and ``p`` of the two-sided Wilcoxon
    signed-rank test (None with fewer than two lesions or no difference at all)."""
    a, b = np.asarray(first, float), np.asarray(other, float)
    p: Optional[float] = None
    if len(a) >= 2 and np.any(a != b):
        from scipy.stats import wilcoxon

        p = round(float(wilcoxon(a, b).pvalue), 6)
    return {"lesions": int(len(a)), "mean_difference": round(float(np.mean(b - a)), 4),
            "first_better": int(np.sum(a > b)), "p": p}


class TSFCNEvaluation(BoxEvaluation):
    """``lesionseg evaluate tsfcn``: the model's row is ``tsfcn``; baselines as :class:`BoxEvaluation`."""

    def rows(self, segmenter) -> dict[str, Optional[Options]]:
        return {"tsfcn": None}


class ClassicalBoxEvaluation(BoxEvaluation):
    """``lesionseg evaluate classical-box``: its row is ``classical-box`` (with the given options); the only
    baseline is the HU threshold (fixed at :data:`FIXED_HU` when every case is scored, as there are then no
    training cases to choose it on)."""

    def rows(self, segmenter) -> dict[str, Optional[Options]]:
        return {"classical-box": None}

    def baselines(self, train_cases: Sequence[Case]) -> dict[str, Predictor]:
        return self.threshold_baseline(train_cases)
