"""``lesionseg evaluate s4c``: S4C scored like the paper (Tables 1 and 2), plus a plain baseline.

``lesionseg evaluate s4c --data DATASET --model F0 --model F1 ... [--json OUT] [--markdown OUT]`` scores each
model on the cases its card held out (``lesionseg train s4c --folds K --fold I`` records them), so that the
models of a cross-validation score every case once, each by a model that never saw it (the shared driver,
:mod:`lesionseg.evaluation`). ``--all-cases`` scores every case with each model instead (a dataset no model
trained on, e.g. a fresh synthetic cohort written with another seed, for the shipped model); ``--pool a.json
--pool b.json ...`` sums up earlier ``--json`` results (one per fold) without running a model; ``--stride N``
changes the models' sliding-window stride; ``--labels`` maps the dataset's labels as in training.

**Each channel of a case is a phase, scored on its own** (:meth:`S4CEvaluation.score_case`: one
``set_image`` per phase; a dual-phase case gives a venous and an arterial record, an MSD case one ``ct``
record). Per phase, and fused per case (:func:`.rules.fuse_verdicts`: positive when any phase is), as in the
paper:

* DSC of the whole pancreas (all non-zero labels) on normal cases ("normal pancreas") and on cases with a
  tumour or a dilated duct ("abnormal pancreas"), DSC of the tumour on cases with a tumour, and of the duct
  on cases with a duct. MSD Task07's "pancreas" label excludes the tumour, but the pancreas DSC here is over
  all non-zero labels, the same union (pancreas + tumour) whichever way a dataset draws it;
* misses, wrong calls, sensitivity and specificity.

**Inconclusive** phases and cases (a phase that failed a check of :mod:`.verdict`: no pancreas in view, a
pancreas volume outside plausible adult limits, not an abdominal scan; their ``positive`` is None) are counted
explicitly, never as a true or false positive or negative (:func:`classification`): sensitivity is positive
calls / positive cases and specificity negative calls / negative cases, so an inconclusive call is neither a
hit nor an all-clear and lowers both; ``misses`` are positive cases called negative, ``wrong_calls`` negative
cases called positive, and the inconclusive ones are reported apart (``inconclusive`` in all,
``inconclusive_positive`` and ``inconclusive_negative`` by truth): found + misses + inconclusive = positive
cases. Verdicts are read case-insensitively (records written before issue #18 hold upper case).

The **plain baseline** (as recent work recommends): the same network output without the connected-component
post-processing, the duct rule and the pancreas bound; a phase is positive when its raw tumour volume (on the
working grid) reaches a single threshold. It is reported over :data:`BASELINE_SWEEP_MM3` (40 mm^3 is S4C's own
tumour threshold).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from ...data import Case
from ...evaluation import Evaluation, Predictor
from ...image import Image
from ...options import Options
from .data import DUCT, TUMOUR, phase_names
from .rules import fuse_verdicts
from .verdict import INCONCLUSIVE, NEGATIVE, POSITIVE, as_verdict

log = logging.getLogger(__name__)
BASELINE_SWEEP_MM3 = (1.0, 40.0, 100.0, 250.0, 500.0, 1000.0)
"""Raw tumour volumes (mm^3) at which the plain baseline calls a phase positive."""


def _dice(pred: Image, truth: np.ndarray, values: Sequence[int]) -> Optional[float]:
    """Dice of the voxels of ``pred`` and ``truth`` (same grid) holding ``values``; None when the truth has none
    (the DSC is undefined)."""
    from ...metrics import dice

    true = np.isin(truth, values)
    if not true.any():
        return None
    return float(dice(pred.with_array(np.isin(pred.array, values).astype(np.uint8)),
                      pred.with_array(true.astype(np.uint8))))


class S4CEvaluation(Evaluation):
    """The paper's Tables 1 and 2 per phase and fused, and the plain baseline (see the module docstring)."""

    @classmethod
    def demo_notes(cls, segmenter, pred: Image, truth: Image) -> dict:
        """What ``lesionseg demo`` adds for S4C: the phase verdict (the rule and the volume checks; positive,
        negative or inconclusive), tumour Dice and the truth's verdict."""
        from ...metrics import dice
        from .rules import phase_findings

        found = phase_findings(pred, segmenter.rule, "venous")
        truth_positive = bool(np.isin(truth.array, (TUMOUR, DUCT)).any())
        tumour = dice(pred.with_array((pred.array == TUMOUR).astype(np.uint8)),
                      truth.with_array((truth.array == TUMOUR).astype(np.uint8)))
        return {"verdict": found.verdict, "tumour_dice": round(float(tumour), 4),
                "notes": f"Dice = whole pancreas; tumour Dice {tumour:.3f}; verdict "
                         f"{found.verdict if found.verdict == NEGATIVE else found.verdict.upper()} (truth "
                         f"{'positive' if truth_positive else 'negative'})"}

    def score(self, pred: Image, truth: Image, case: Case) -> dict:
        """Truth flags and DSCs of one phase's post-processed labels (``pred``, on the phase's grid)."""
        true = truth.array
        if not truth.same_grid(pred):
            from ...resample import resample_to_grid

            true = resample_to_grid(truth, pred, "nearest", 0).array
        return {"truth_positive": bool(np.isin(true, (TUMOUR, DUCT)).any()), "truth_tumour": bool((true == TUMOUR).any()),
                "truth_duct": bool((true == DUCT).any()), "dsc_pancreas": _dice(pred, true, (1, 2, 3)),
                "dsc_tumour": _dice(pred, true, (TUMOUR,)), "dsc_duct": _dice(pred, true, (DUCT,))}

    def score_case(self, seg, rows: Mapping[str, Optional[Options]], baselines: Mapping[str, Predictor], case: Case,
                   model: Optional[Path]) -> list[dict]:
        """One record per phase (channel) of ``case``, its ``row`` the phase name: ``set_image`` of that phase
        alone, its labels, the verdict (the screening rule and the checks of :mod:`.verdict`; ``positive`` is None
        when inconclusive) and the raw tumour volume of the plain baseline.

        S4C is scored with the segmenter's own options (``rows`` and ``baselines`` are not used: the baseline is
        read from the same network output)."""
        truth = self.truth(case)
        records = []
        for phase, image in zip(phase_names(case), case.read_images()):
            t0 = time.perf_counter()
            seg.set_image(image)
            label = seg.predict()
            found = seg.findings(phase)
            seconds = time.perf_counter() - t0
            raw_mm3 = float((seg.raw.array == TUMOUR).sum() * 1000.0 * seg.raw.voxel_volume_ml)
            scores = {"phase": phase, **self.score(label, truth, case), "verdict": found.verdict,
                      "positive": found.positive, "tumour_mm3": found.tumour_mm3, "duct_mm3": found.duct_mm3,
                      "pancreas_mm3": found.pancreas_mm3, "raw_tumour_mm3": round(raw_mm3, 2)}
            records.append({"case": case.name, "patient": case.patient, "model": None if model is None else str(model),
                            "row": phase, "seconds": round(seconds, 3), "scores": scores})
            log.info("%s %s: truth %s, called %s (tumour %.0f mm3, duct %.0f mm3), %.1f s", case.name, phase,
                     "positive" if scores["truth_positive"] else "negative", found.verdict, found.tumour_mm3,
                     found.duct_mm3, seconds)
        return records

    def summary(self, records: Sequence[dict]) -> dict:
        """``{"phases": {phase: Table 1 + Table 2 row}, "fused": Table 2 row, "baseline": {T: {phase: ...,
        "fused": ...}}}`` (DSC in %, sensitivity and specificity in %)."""
        return summarise(records)

    @classmethod
    def markdown(cls, result: dict) -> str:
        """Tables 1 (segmentation) and 2 (classification) and the baseline sweep, as Markdown."""
        summary = result["summary"]
        lines = [f"# {result['method']} on {result['dataset']}", "",
                 f"{'Synthetic data.' if result.get('synthetic') else 'Real data.'} Models: "
                 + ", ".join(f"`{m}`" for m in result["models"]) + f". Cases scored: {result['cases']}. DSC in %; "
                 "sensitivity = positive calls / positive cases, specificity = negative calls / negative cases "
                 "(an inconclusive call is neither, and lowers both).", "",
                 "| phase | DSC normal pancreas | DSC abnormal pancreas | DSC tumour | DSC duct |", "|---|---|---|---|---|"]
        for phase, s in summary["phases"].items():
            lines.append(f"| {phase} | {s['dsc_normal_pancreas']} | {s['dsc_abnormal_pancreas']} | {s['dsc_tumour']} "
                         f"| {s['dsc_duct']} |")
        lines += ["", "| rule | misses | wrong calls | inconclusive (positive / negative cases) | sensitivity % | "
                      "specificity % |", "|---|---|---|---|---|---|"]
        rows = [(f"S4C {p}", s) for p, s in summary["phases"].items()] + [("S4C fused (any phase)", summary["fused"])]
        rows += [(f"baseline tumour >= {t} mm3, {name}", s) for t, entry in summary["baseline"].items()
                 for name, s in entry.items()]
        for name, s in rows:
            lines.append(f"| {name} | {s['misses']}/{s['positive_cases']} | {s['wrong_calls']}/{s['negative_cases']} | "
                         f"{s['inconclusive_positive']} / {s['inconclusive_negative']} | {s['sensitivity']} | "
                         f"{s['specificity']} |")
        return "\n".join(lines) + "\n"


def classification(calls: Sequence[tuple[bool, str]]) -> dict:
    """``(truth positive, verdict)`` pairs -> case counts, misses, wrong calls, inconclusive calls, sensitivity
    and specificity in % (None without positive / negative cases).

    An inconclusive call is never counted as a true or false positive or negative: it is counted in
    ``inconclusive`` (and by truth in ``inconclusive_positive`` / ``inconclusive_negative``) and stays in the
    denominators of sensitivity (positive calls / positive cases) and specificity (negative calls / negative
    cases), so it lowers both. Verdicts are read case-insensitively (:func:`.verdict.as_verdict`).
    """
    pos = [as_verdict(v) for t, v in calls if t]
    neg = [as_verdict(v) for t, v in calls if not t]
    return {"cases": len(calls), "positive_cases": len(pos), "negative_cases": len(neg),
            "misses": pos.count(NEGATIVE), "wrong_calls": neg.count(POSITIVE),
            "inconclusive": pos.count(INCONCLUSIVE) + neg.count(INCONCLUSIVE),
            "inconclusive_positive": pos.count(INCONCLUSIVE), "inconclusive_negative": neg.count(INCONCLUSIVE),
            "sensitivity": round(100.0 * pos.count(POSITIVE) / len(pos), 2) if pos else None,
            "specificity": round(100.0 * neg.count(NEGATIVE) / len(neg), 2) if neg else None}


def _mean(values) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return round(100.0 * float(np.mean(vals)), 2) if vals else None


def summarise(records: Sequence[dict]) -> dict:
    """Tables 1 and 2 per phase and fused, and the baseline sweep, from the records of
    :meth:`S4CEvaluation.score_case` (a case is one model's records of one case name)."""
    out: dict = {"phases": {}, "fused": {}, "baseline": {}}
    phases = list(dict.fromkeys(r["row"] for r in records))
    for phase in phases:
        rs = [r["scores"] for r in records if r["row"] == phase]
        out["phases"][phase] = {
            "dsc_normal_pancreas": _mean(s["dsc_pancreas"] for s in rs if not s["truth_positive"]),
            "dsc_abnormal_pancreas": _mean(s["dsc_pancreas"] for s in rs if s["truth_positive"]),
            "dsc_tumour": _mean(s["dsc_tumour"] for s in rs if s["truth_tumour"]),
            "dsc_duct": _mean(s["dsc_duct"] for s in rs if s["truth_duct"]),
            **classification([(s["truth_positive"], s["verdict"]) for s in rs]),
            "seconds_per_phase": round(float(np.mean([r["seconds"] for r in records if r["row"] == phase])), 2)}
    by_case: dict[tuple, list[dict]] = {}
    for r in records:
        by_case.setdefault((r["model"], r["case"]), []).append(r["scores"])
    cases = list(by_case.values())
    out["fused"] = classification([(any(s["truth_positive"] for s in ss), fuse_verdicts([s["verdict"] for s in ss]))
                                   for ss in cases])
    for threshold in BASELINE_SWEEP_MM3:
        def call(scores: Sequence[dict]) -> str:
            return POSITIVE if any(s["raw_tumour_mm3"] >= threshold for s in scores) else NEGATIVE

        entry = {phase: classification([(r["scores"]["truth_positive"], call([r["scores"]]))
                                        for r in records if r["row"] == phase]) for phase in phases}
        entry["fused"] = classification([(any(s["truth_positive"] for s in ss), call(ss)) for ss in cases])
        out["baseline"][f"{threshold:g}"] = entry
    return out
