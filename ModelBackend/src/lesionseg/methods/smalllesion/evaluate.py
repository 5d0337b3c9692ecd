"""Evaluate ``small-lesion-il`` variants like the paper's Table 1 (arXiv 2207.14700), by cross-validation.

``lesionseg evaluate small-lesion-il --data D --model M0 --model M1 --model M2 --json seg.json`` scores the
fold models of ONE variant: each model segments the cases its card held out (``training.held_out_cases``,
written by ``lesionseg train small-lesion-il --folds K --fold F``), so every case is scored by a model that
never saw it. The rows (:meth:`SmallLesionEvaluation.rows`) are named by the models' variant; a ``seg`` model
also gives the ``seg+pp`` row (its own prior as post-processing, ``P x L(HU)``, from the same network pass).
The variants' results are then pooled into one table: ``lesionseg evaluate small-lesion-il --pool seg.json
--pool seg+il.json ... --markdown table1.md`` (each row keeps its name; the paired tests need a ``seg`` row).
Metrics, on the CT grid of each case:

* **global Dice**: all cases' voxels pooled into one volume (``2 sum|P n G| / (sum|P| + sum|G|)``);
* **per-case Dice**: the mean over cases (1.0 for a case where both masks are empty);
* **per-tumour Dice**: for each ground-truth tumour (26-connected component), Dice of the prediction and that
  tumour inside the tumour's bounding box padded by :data:`PAD_VOXELS` voxels per side, where voxels of other
  tumours in the box are left out of both masks; the mean over tumours, and over tumours >= 125 mm^3;
* paired t-tests (``scipy.stats.ttest_rel``) of the per-case and per-tumour Dice of each row against ``seg``
  (pairs matched by case, and by case and tumour).

``--all-cases`` scores every case of ``--data`` with each model instead, for a test set no model trained on
(the lesions inserted into the real CT, ``lesionseg data synthetic small-lesion-il --inserted N``).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...evaluation import Evaluation
from ...image import Image
from ...metrics import lesion_components

log = logging.getLogger(__name__)
METHOD = "small-lesion-il"
PAD_VOXELS = 2
LARGE_MM3 = 125.0
"""Per-tumour Dice is also reported for tumours at least this large (mm^3), as in the paper."""
BASELINE = "seg"


def _masks(pred: Image, truth: Image) -> tuple[np.ndarray, np.ndarray]:
    if not pred.same_grid(truth):
        raise InputError(f"prediction {pred!r} and ground truth {truth!r} are not on the same grid")
    return pred.array > 0, truth.array > 0


def tumour_dice(pred: Image, truth: Image, pad: int = PAD_VOXELS) -> list[dict]:
    """Dice of each 26-connected ground-truth tumour in its bounding box grown by ``pad`` voxels per side
    (clipped to the image); voxels of other tumours in the box count in neither mask. One dict per tumour in
    scipy label order: ``tumour`` (1-based), ``voxels``, ``volume_mm3``, ``dice``. Images on one grid.

    Written here rather than with :func:`lesionseg.metrics.per_lesion_dice`, whose margin is in mm: the
    paper's tight box is padded in voxels."""
    p, _ = _masks(pred, truth)
    if pad < 0:
        raise InputError(f"pad must be >= 0 voxels, got {pad}")
    labels, _ = lesion_components(truth, 26)
    out = []
    for number, found in enumerate(ndimage.find_objects(labels.array), start=1):
        box = tuple(slice(max(s.start - pad, 0), s.stop + pad) for s in found)
        local = labels.array[box]
        tumour = local == number
        size, hit = int(np.count_nonzero(tumour)), int(np.count_nonzero(tumour & p[box]))
        predicted = int(np.count_nonzero(p[box] & ((local == 0) | tumour)))
        out.append({"tumour": number, "voxels": size, "volume_mm3": round(size * 1000.0 * truth.voxel_volume_ml, 3),
                    "dice": 2.0 * hit / (size + predicted)})
    return out


def score_case(pred: Image, truth: Image) -> dict:
    """Voxel counts (``intersection``, ``pred_voxels``, ``truth_voxels``), the case's Dice (1.0 when both masks
    are empty) and :func:`tumour_dice` of one case."""
    p, g = _masks(pred, truth)
    inter, n_p, n_g = int(np.count_nonzero(p & g)), int(np.count_nonzero(p)), int(np.count_nonzero(g))
    return {"intersection": inter, "pred_voxels": n_p, "truth_voxels": n_g,
            "dice": 2.0 * inter / (n_p + n_g) if n_p + n_g else 1.0, "tumours": tumour_dice(pred, truth)}


def _stats(values: list[float]) -> dict:
    """``mean``, ``sd`` (sample SD; 0 for one value) and ``n``, in percent; None for no values."""
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    arr = 100.0 * np.asarray(values, np.float64)
    return {"mean": round(float(arr.mean()), 2), "sd": round(float(arr.std(ddof=1)) if arr.size > 1 else 0.0, 2),
            "n": int(arr.size)}


def _paired_p(a: dict, b: dict) -> Optional[float]:
    """Two-sided paired t-test p-value of the values of ``a`` and ``b`` on their common keys (None when fewer
    than two pairs or no pair differs: the test is undefined)."""
    from scipy.stats import ttest_rel

    keys = sorted(set(a) & set(b))
    first, second = np.array([a[k] for k in keys]), np.array([b[k] for k in keys])
    if len(keys) < 2 or np.array_equal(first, second):
        return None
    return float(ttest_rel(first, second).pvalue)


def summarise(records: Sequence[dict], baseline: str = BASELINE) -> dict:
    """Per row (in record order): ``cases``, ``tumours``, ``global_dice`` (percent), ``per_case``, ``per_tumour``
    and ``per_tumour_large`` (:func:`_stats`), ``p_per_case`` and ``p_per_tumour`` against ``baseline`` (None
    without a ``baseline`` row). ``records``: ``{"row", "case", "scores": score_case(...)}``."""
    rows: dict[str, list[dict]] = {}
    for record in records:
        rows.setdefault(record["row"], []).append({"case": record["case"], **record["scores"]})

    def keyed(rs: list[dict]) -> tuple[dict, dict]:
        return ({r["case"]: r["dice"] for r in rs},
                {(r["case"], t["tumour"]): t["dice"] for r in rs for t in r["tumours"]})

    base = keyed(rows[baseline]) if baseline in rows else None
    out = {}
    for name, rs in rows.items():
        inter, n_p, n_g = (sum(r[k] for r in rs) for k in ("intersection", "pred_voxels", "truth_voxels"))
        tumours = [t for r in rs for t in r["tumours"]]
        per_case, per_tumour = keyed(rs)
        compare = base is not None and name != baseline
        out[name] = {
            "cases": len(rs), "tumours": len(tumours),
            "global_dice": round(100.0 * 2.0 * inter / (n_p + n_g), 2) if n_p + n_g else None,
            "per_case": _stats([r["dice"] for r in rs]), "per_tumour": _stats([t["dice"] for t in tumours]),
            "per_tumour_large": _stats([t["dice"] for t in tumours if t["volume_mm3"] >= LARGE_MM3]),
            "p_per_case": _paired_p(per_case, base[0]) if compare else None,
            "p_per_tumour": _paired_p(per_tumour, base[1]) if compare else None}
    return out


def table(summary: dict) -> str:
    """The summary as a Markdown table like the paper's Table 1 (Dice in percent, mean +- SD)."""
    def cell(s: dict) -> str:
        return "n/a" if s["mean"] is None else f"{s['mean']:.1f} ± {s['sd']:.1f}"

    def pval(p: Optional[float]) -> str:
        return "" if p is None else f"{p:.3g}"

    lines = [f"| variant | cases | tumours | global Dice % | per-case Dice % | per-tumour Dice % | "
             f"per-tumour Dice % (>= {LARGE_MM3:g} mm³) | p per-case vs {BASELINE} | p per-tumour vs {BASELINE} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        glob = "n/a" if s["global_dice"] is None else f"{s['global_dice']:.1f}"
        lines.append(f"| {name} | {s['cases']} | {s['tumours']} | {glob} | {cell(s['per_case'])} | "
                     f"{cell(s['per_tumour'])} | {cell(s['per_tumour_large'])} | {pval(s['p_per_case'])} | "
                     f"{pval(s['p_per_tumour'])} |")
    return "\n".join(lines) + "\n"


class SmallLesionEvaluation(Evaluation):
    """The paper's Table 1 through ``lesionseg evaluate small-lesion-il`` (see the module docstring)."""

    def rows(self, segmenter) -> dict:
        """The model's variant as it runs (the trained one, or ``seg+pp`` when asked), and for a ``seg`` model
        with a prior also ``seg+pp``."""
        rows = {segmenter.variant: None}
        if segmenter.variant == "seg" and segmenter.model_prior is not None:
            rows["seg+pp"] = segmenter.options.replace(variant="seg+pp")
        return rows

    def score(self, pred: Image, truth: Image, case) -> dict:
        """:func:`score_case` of one prediction (any foreground is lesion)."""
        return score_case(pred, truth)

    def summary(self, records: Sequence[dict]) -> dict:
        """:func:`summarise` (rows in record order; the tests against ``seg`` when that row is present)."""
        return summarise(records)

    @classmethod
    def markdown(cls, result: dict) -> str:
        """A title, the data and models, and :func:`table`."""
        kind = "Synthetic data." if result.get("synthetic") else "Real data."
        return (f"# {result['method']} on {result['dataset']}\n\n{kind} Models: "
                + ", ".join(f"`{m}`" for m in result["models"]) + f". Cases scored: {result['cases']}.\n\n"
                + table(result["summary"]))
