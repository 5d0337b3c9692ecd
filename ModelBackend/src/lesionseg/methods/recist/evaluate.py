"""``lesionseg evaluate recist-coseg``: the network, with and without DenseCRF, against the true masks (a small
Table 1 of the paper), on the RECIST slice.

Each scored case gets one RECIST prompt per lesion: the dataset's own (``prompts.json``) where it has them, else
the axes measured on each 18-connected lesion of the true mask on its slice of largest area, exactly as training
measures them (:func:`.dataset.lesion_prompts`). The prediction of every prompt (their union per case) is compared
with the true mask on the prompts' slices only, in 2D, as the paper evaluates: recall, precision, Dice, average
symmetric surface distance (mm; the symmetric "average Hausdorff distance") and volumetric similarity
(:mod:`lesionseg.metrics`), and the voxel counts for the global Dice.

Rows: ``network`` (no DenseCRF), ``network + DenseCRF`` (the default), and with ``--baselines`` ``GrabCut`` (the
initial masks the network learnt from, from the same prompts; no model).

Cases without a mask but with RECIST axes (DeepLesion's release: ``lesionseg data import deeplesion``) are scored
by how well the segmentation reproduces the reader's measurement (:meth:`RecistEvaluation.score_unlabelled`): the
RECIST long and short axes measured on the predicted lesion of each prompt's slice against the given ones, as
absolute relative errors in %, and the share of prompts that got a lesion at all. This is a consistency check, not
an overlap score: a mask can match both diameters and still be wrong elsewhere; DeepLesion's paper scored masks
on a labelled subset, which its public release does not hold.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ... import metrics
from ...data import Case, Dataset
from ...errors import InputError
from ...evaluation import Evaluation, Predictor
from ...geometry import recist_to_index
from ...image import Image
from ...prompts import RecistLine
from .dataset import lesion_prompts, recist_prompts
from .initial_mask import grabcut_from_recist
from .segmenter import axes_in_crop, crop_of, keep_touching_axis, slice_label

SCORES = ("recall", "precision", "dice", "assd_mm", "volumetric_similarity")
NO_MASKS = ("{root} holds no lesion mask (no labelsTr/labelsTs) and no RECIST axes (prompts.json): there is "
            "nothing to score recist-coseg against")
AXIS_SCORES = ("long_axis_error_pct", "short_axis_error_pct", "found")


def grabcut(images: Sequence[Image], prompt: RecistLine) -> Image:
    """The ``GrabCut`` baseline: the GrabCut initial mask of ``prompt`` (the weak label of training), its parts
    touching the long axis' middle half, on the RECIST slice of ``images[0]``."""
    image = images[0]
    recist = recist_to_index(image, prompt)
    frame, crop = crop_of(image, recist)
    long_uv, short_uv = axes_in_crop(frame, recist)
    return slice_label(image, recist.k, frame, keep_touching_axis(grabcut_from_recist(crop, long_uv, short_uv),
                                                                   long_uv))


class RecistEvaluation(Evaluation):
    """Scores on the RECIST slice (see the module docstring)."""

    unlabelled = True

    def __init__(self, spec, dataset: Dataset, label_map, seed: int = 0) -> None:
        super().__init__(spec, dataset, label_map, seed)
        cases = dataset.cases("all") if dataset is not None else []
        if dataset is not None and not any(c.label is not None or recist_prompts(dataset, c.name) for c in cases):
            raise InputError(NO_MASKS.format(root=dataset.root))
        self._slices: dict[str, list[int]] = {}

    def score_unlabelled(self, pred: Image, image: Image, prompts, case: Case) -> dict:
        """For a case with RECIST axes and no mask: per prompt, the predicted lesion on its slice (the component
        nearest the long axis' middle) measured like a reader (:func:`lesionseg.metrics.recist_axes`) against the
        given axes; the mean absolute relative errors (%) over the prompts that got a lesion, and ``found``, the
        share of prompts that got one."""
        from scipy import ndimage

        long_err, short_err, found = [], [], 0
        recists = [p for p in prompts if isinstance(p, RecistLine)]
        for prompt in recists:
            index = recist_to_index(image, prompt)
            k = index.k
            labels, n = ndimage.label(np.asarray(pred.array[k]) > 0)
            if n == 0:
                continue
            middle = np.asarray(index.long, float).mean(axis=0)[::-1]  # (j, i) of the long axis' middle
            spots = np.argwhere(labels > 0)
            nearest = labels[tuple(spots[np.argmin(((spots - middle) ** 2).sum(axis=1))])]
            size = image.size_ijk
            lesion = image.crop((0, 0, k), (size[0] - 1, size[1] - 1, k)).with_array(
                (labels == nearest).astype(np.uint8)[None])
            axes = metrics.recist_axes(lesion)
            found += 1
            long_err.append(abs(axes.long_mm - prompt.long_length_mm) / prompt.long_length_mm)
            if prompt.short_start is not None and prompt.short_length_mm > 0:
                short_err.append(abs(axes.short_mm - prompt.short_length_mm) / prompt.short_length_mm)
        return {"long_axis_error_pct": round(100 * float(np.mean(long_err)), 2) if long_err else None,
                "short_axis_error_pct": round(100 * float(np.mean(short_err)), 2) if short_err else None,
                "found": round(found / len(recists), 4) if recists else None, "prompts": len(recists)}

    def rows(self, segmenter) -> dict:
        """``network`` (DenseCRF off) and ``network + DenseCRF``, with the segmenter's other options."""
        own = segmenter.options
        return {"network": own.replace(use_crf=False), "network + DenseCRF": own.replace(use_crf=True)}

    def baselines(self, train_cases: Sequence[Case]) -> dict[str, Predictor]:
        """``GrabCut`` from the same prompts (no parameter is chosen on ``train_cases``)."""
        return {"GrabCut": grabcut}

    def prompts(self, case: Case, truth: Image) -> list[RecistLine]:
        """The dataset's RECIST prompts of ``case``, else one per lesion of ``truth`` (its key slice's axes);
        their slices are the ones :meth:`score` compares."""
        found = recist_prompts(self.dataset, case.name) or lesion_prompts(truth)
        self._slices[case.name] = sorted({recist_to_index(truth, p).k for p in found})
        return found

    def score(self, pred: Image, truth: Image, case: Case) -> dict:
        """2D scores on the RECIST slices of ``case`` (:meth:`prompts`): recall, precision, Dice and volumetric
        similarity from the voxels of all its RECIST slices, ASSD (mm) the mean over those slices (None when
        infinite: one of the two is empty); None where undefined (no RECIST slice, an empty truth)."""
        size = truth.size_ijk
        planes = [(pred.crop((0, 0, k), (size[0] - 1, size[1] - 1, k)),
                   truth.crop((0, 0, k), (size[0] - 1, size[1] - 1, k))) for k in self._slices.get(case.name, [])]
        p = np.concatenate([(a.array > 0).ravel() for a, _ in planes]) if planes else np.zeros(0, bool)
        t = np.concatenate([(b.array > 0).ravel() for _, b in planes]) if planes else np.zeros(0, bool)
        both, n_p, n_t = int((p & t).sum()), int(p.sum()), int(t.sum())
        assd = [metrics.assd(a.with_array((a.array > 0).astype(np.uint8)), b.with_array((b.array > 0).astype(np.uint8)))
                for a, b in planes]

        def ratio(num: float, den: float):
            return round(num / den, 4) if den else None

        mean_assd = float(np.mean(assd)) if assd else math.nan
        return {"recall": ratio(both, n_t), "precision": ratio(both, n_p), "dice": ratio(2 * both, n_p + n_t),
                "assd_mm": round(mean_assd, 3) if math.isfinite(mean_assd) else None,
                "volumetric_similarity": round(1 - abs(n_p - n_t) / (n_p + n_t), 4) if n_p + n_t else None,
                "slices": len(planes), "overlap_voxels": both, "pred_voxels": n_p, "truth_voxels": n_t}

    def summary(self, records: Sequence[dict]) -> dict:
        """The base summary (mean, median, worst per score; global Dice), with the worst ASSD the largest."""
        out = super().summary(records)
        for row, entry in out.items():
            for key in ("assd_mm", "long_axis_error_pct", "short_axis_error_pct"):
                values = [r["scores"][key] for r in records if r["row"] == row and r["scores"].get(key) is not None]
                if key in entry and values:
                    entry[key]["worst"] = round(float(max(values)), 4)
            entry.pop("slices", None)
            entry.pop("prompts", None)
        return out

    @classmethod
    def markdown(cls, result: dict) -> str:
        """The paper's table: per row the cases and the mean recall, precision, Dice, ASSD and VS over cases."""
        lines = [f"# {result['method']} on {result['dataset']}", "",
                 f"{'Synthetic data.' if result.get('synthetic') else 'Real data.'} Models: "
                 + ", ".join(f"`{m}`" for m in result["models"]) + f". Cases scored: {result['cases']}. 2D, on the "
                 "RECIST slice of each lesion; mean over cases.", "",
                 "| row | cases | recall % | precision % | Dice % | ASSD mm | VS % | global Dice % |",
                 "|---|---|---|---|---|---|---|---|"]
        for row, entry in result["summary"].items():
            def cell(key: str, scale: float = 100.0, digits: int = 1) -> str:
                return f"{scale * entry[key]['mean']:.{digits}f}" if key in entry else "–"

            glob = entry.get("global_dice")
            lines.append(f"| {row} | {entry['cases']} | {cell('recall')} | {cell('precision')} | {cell('dice')} | "
                         f"{cell('assd_mm', 1.0, 2)} | {cell('volumetric_similarity')} | "
                         f"{'–' if glob is None else f'{100 * glob:.1f}'} |")
        if any("long_axis_error_pct" in entry for entry in result["summary"].values()):
            lines += ["", "Cases without a mask, against the given RECIST axes (mean over cases; worst in brackets):", "",
                      "| row | long-axis error % | short-axis error % | prompts with a lesion % |", "|---|---|---|---|"]
            for row, entry in result["summary"].items():
                def err(key: str) -> str:
                    return f"{entry[key]['mean']:.1f} ({entry[key]['worst']:.1f})" if key in entry else "–"

                got = f"{100 * entry['found']['mean']:.0f}" if "found" in entry else "–"
                lines.append(f"| {row} | {err('long_axis_error_pct')} | {err('short_axis_error_pct')} | {got} |")
        return "\n".join(lines) + "\n"
