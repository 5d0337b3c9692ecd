"""Evaluation of any method through ``build`` / ``set_image`` / ``predict`` only, written once.

``lesionseg evaluate METHOD --data DATASET --model M [--model M2 ...]`` scores each model on the cases its card
says it never trained on (``training.held_out_cases``, or the cases of ``held_out_patients``), so that the
models of a cross-validation together score every case once; ``--all-cases`` scores every case with each
model instead (a dataset no model trained on); ``--split test`` scores the labelled test cases (imagesTs +
labelsTs). The truth is the dataset's label mapped onto the method's classes (``--labels``, as in training).

A method's :class:`Evaluation` subclass (named in its spec) says what differs: the rows (the model with other
options: an ablation; or baselines that need no model), the prompts a case gets (derived from its truth, as a
user would draw them), the scores of one prediction, and the summary and its Markdown. The base class
serves a binary lesion method: any foreground class is "lesion"; scores are Dice, false-positive and
false-negative volume (autoPET's definitions, 18-connected components) and both volumes; the summary has per
row the mean, median and worst of each score and the global Dice (all cases' voxels pooled).

Results are one JSON document (``records`` + ``summary``) and a Markdown table, written together
(:func:`write_report`); ``--pool`` sums up several earlier JSON documents (one per fold) without running
anything. No torch here.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from . import progress
from .data import Case, Dataset
from .data.labels import apply as apply_labels
from .data.labels import resolve
from .errors import InputError
from .image import Image
from .options import Options
from .prompts import Prompt

log = logging.getLogger(__name__)
Predictor = Callable[[tuple, Prompt], Image]
"""A baseline row: ``predict(images, prompt) -> label`` without a model."""


class Evaluation:
    """What a method's evaluation does differently (see the module docstring); the base serves binary lesions.

    Args:
        spec: the method's :class:`~lesionseg.registry.MethodSpec`.
        dataset: the dataset scored.
        label_map: ``{class index: [dataset values]}``.
        seed: for prompt jitter and anything random, so every row and model sees the same prompts.
    """

    unlabelled: bool = False
    """Whether cases without a label but with prompts (``prompts.json``, e.g. DeepLesion's RECIST axes) are
    scored, by :meth:`score_unlabelled`."""

    def __init__(self, spec, dataset: Dataset, label_map: Mapping[int, Sequence[int]], seed: int = 0) -> None:
        self.spec, self.dataset, self.label_map, self.seed = spec, dataset, dict(label_map), seed

    def scorable(self, case: Case) -> bool:
        """A case this evaluation can score: labelled, or (:attr:`unlabelled`) carrying prompts."""
        return case.label is not None or (self.unlabelled and bool(self.dataset.prompts(case.name)))

    def score_unlabelled(self, pred: Image, image: Image, prompts: Sequence[Prompt], case: Case) -> dict:
        """Scores of one prediction of a case without a label (only with :attr:`unlabelled`)."""
        raise NotImplementedError

    # --- hooks ------------------------------------------------------------------------------------------
    def rows(self, segmenter) -> dict[str, Optional[Options]]:
        """Rows scored with the model: ``{name: options}`` (None: the segmenter's own options)."""
        return {"model": None}

    def baselines(self, train_cases: Sequence[Case]) -> dict[str, Predictor]:
        """Rows that need no model (chosen on ``train_cases`` where they have a parameter); default none."""
        return {}

    def truth(self, case: Case) -> Image:
        """The case's label in the method's classes."""
        label = case.read_label()
        return label.with_array(apply_labels(label.array, self.label_map))

    def prompts(self, case: Case, truth: Image) -> list[Prompt]:
        """The prompts of one case: ``[None]`` for an automatic method; a box around each lesion (its voxels'
        bounds) or its RECIST axes (the demo's prompts) for prompt methods; the dataset's own prompts
        (``prompts.json``) where it has them."""
        given = self.dataset.prompts(case.name)
        if given or self.spec.prompt == "none":
            return given or [None]
        from .demo import DemoCase, lesion_prompts

        return lesion_prompts(DemoCase(case.name, (truth,), truth.with_array((truth.array > 0).astype(np.uint8))),
                              self.spec.prompt)

    def score(self, pred: Image, truth: Image, case: Case) -> dict:
        """Scores of one prediction (any foreground is lesion): ``dice`` (None when both are empty),
        ``fpv_ml``, ``fnv_ml``, ``pred_ml``, ``truth_ml`` and the voxel counts for the global Dice."""
        from .metrics import dice, false_negative_volume, false_positive_volume, volume_ml

        p = pred.with_array((pred.array > 0).astype(np.uint8))
        t = truth.with_array((truth.array > 0).astype(np.uint8))
        both_empty = not p.array.any() and not t.array.any()
        return {"dice": None if both_empty else round(float(dice(p, t)), 4),
                "fpv_ml": round(false_positive_volume(p, t), 3), "fnv_ml": round(false_negative_volume(p, t), 3),
                "pred_ml": round(volume_ml(p), 3), "truth_ml": round(volume_ml(t), 3),
                "overlap_voxels": int((p.array & t.array).sum()), "pred_voxels": int(p.array.sum()),
                "truth_voxels": int(t.array.sum())}

    def summary(self, records: Sequence[dict]) -> dict:
        """Per row: ``cases``, ``mean``/``median``/``worst`` of every numeric score, ``global_dice``."""
        out: dict[str, dict] = {}
        for row in dict.fromkeys(r["row"] for r in records):
            rows = [r for r in records if r["row"] == row]
            entry: dict[str, Any] = {"cases": len(rows)}
            for key in rows[0]["scores"]:
                values = [r["scores"][key] for r in rows if isinstance(r["scores"].get(key), (int, float))
                          and not isinstance(r["scores"].get(key), bool)]
                if values and not key.endswith("_voxels"):
                    lower_is_better = key.startswith(("fpv", "fnv"))
                    entry[key] = {"mean": round(float(np.mean(values)), 4), "median": round(float(np.median(values)), 4),
                                  "worst": round(float(max(values) if lower_is_better else min(values)), 4)}
            pooled = [r["scores"] for r in rows if "overlap_voxels" in r["scores"]]
            if pooled:
                denominator = sum(s["pred_voxels"] + s["truth_voxels"] for s in pooled)
                entry["global_dice"] = round(2 * sum(s["overlap_voxels"] for s in pooled) / denominator, 4) \
                    if denominator else None
            out[row] = entry
        return out

    def score_case(self, seg, rows: Mapping[str, Optional[Options]], baselines: Mapping[str, Predictor], case: Case,
                   model: Optional[Path]) -> list[dict]:
        """The records of one case: by default one ``set_image(*images)``, then each row and baseline. A method
        whose case holds several inputs scored one by one overrides it (s4c: one CT phase per channel)."""
        return _score_case(self, seg, rows, baselines, case, model)

    @classmethod
    def demo_notes(cls, segmenter, pred: Image, truth: Image) -> dict:
        """What ``lesionseg demo`` reports besides Dice for one phantom: for an automatic method the true
        lesions, the lesions found and the true lesions hit (:func:`lesionseg.demo.detection_counts`); nothing
        for a prompt method (its prompts come from the truth)."""
        from .demo import detection_counts

        return detection_counts(pred, truth) if segmenter.prompt_kind == "none" else {}

    @classmethod
    def markdown(cls, result: dict) -> str:
        """A Markdown table: one line per row, the mean (median, worst) of each score."""
        summary = result["summary"]
        keys = [k for k in next(iter(summary.values()), {}) if isinstance(next(iter(summary.values()))[k], dict)]
        lines = [f"# {result['method']} on {result['dataset']}", "",
                 f"{'Synthetic data.' if result.get('synthetic') else 'Real data.'} Models: "
                 + ", ".join(f"`{m}`" for m in result["models"]) + f". Cases scored: {result['cases']}.", "",
                 "| row | cases | " + " | ".join(f"{k} mean (median, worst)" for k in keys) + " | global Dice |",
                 "|---|---|" + "---|" * len(keys) + "---|"]
        for row, entry in summary.items():
            cells = [f"{entry[k]['mean']:.4g} ({entry[k]['median']:.4g}, {entry[k]['worst']:.4g})" if k in entry else "–"
                     for k in keys]
            lines.append(f"| {row} | {entry['cases']} | " + " | ".join(cells) + f" | {entry.get('global_dice', '–')} |")
        return "\n".join(lines) + "\n"


def held_out(dataset: Dataset, card, model: Path, all_cases: bool, split: str,
             evaluation: Optional[Evaluation] = None) -> list[Case]:
    """The cases a model is scored on (see the module docstring); ``evaluation`` says which it can score
    (default: labelled ones)."""
    can = evaluation.scorable if evaluation is not None else (lambda case: case.label is not None)
    if split == "test":
        cases = [c for c in dataset.cases("test") if can(c)]
        if not cases:
            raise InputError(f"{dataset.root} has no labelled test cases (imagesTs with labelsTs)")
        return cases
    if all_cases:
        return dataset.cases("train") or [c for c in dataset.cases("test") if can(c)]
    if card.held_out_cases:
        return dataset.select(card.held_out_cases)
    patients = set(card.held_out_patients)
    if patients:
        cases = [c for c in dataset.cases("all") if c.patient in patients and can(c)]
        if cases:
            return cases
    raise InputError(f"{model}'s card records no held-out cases of {dataset.root}; pass --all-cases to score every "
                     "case (fair only on data the model never trained on)")


def evaluate(method: str, data: Path, models: Sequence[Path] = (), *, all_cases: bool = False, split: str = "train",
             labels: Optional[str] = None, device: str = "auto", options: Optional[Options] = None,
             baselines: bool = False, seed: int = 0) -> dict:
    """Score ``models`` of ``method`` on ``data`` (module docstring); returns the JSON-ready result
    ``{"method", "dataset", "synthetic", "models", "cases", "records", "summary"}``.

    With no model, a method that needs none is scored as it is (e.g. ``classical-box``) on every case.
    """
    from .modelfolder import load_model_folder
    from .registry import build, get_spec

    spec = get_spec(method)
    dataset = Dataset(data)
    label_map = resolve(spec.classes, dataset.labels, labels)
    evaluation = _evaluation(spec, dataset, label_map, seed)
    if not models and spec.needs_weights:
        raise InputError(f"give the model(s) of {method} to evaluate with --model")
    plan: list[tuple[Optional[Path], list[Case]]] = []
    for model in models:
        card = load_model_folder(model, method).model_card
        plan.append((Path(model), held_out(dataset, card, Path(model), all_cases, split, evaluation)))
    if not models:
        plan.append((None, [c for c in dataset.cases("test") if evaluation.scorable(c)] if split == "test"
                     else dataset.cases("train")))
    seen: dict[str, str] = {}
    for model, cases in plan:
        for case in cases:
            if case.name in seen and not all_cases:
                raise InputError(f"case {case.name} is held out by both {seen[case.name]} and {model}: "
                                 "give the models of one cross-validation")
            seen[case.name] = str(model)
    records: list[dict] = []
    total = sum(len(cases) for _, cases in plan)
    with progress.task("evaluating", total=total) as tick:
        done = 0
        for model, cases in plan:
            seg = build(method, weights=model, device=device, options=options)
            rows = evaluation.rows(seg)
            extra = evaluation.baselines([c for c in dataset.cases("train") if c not in cases]) if baselines else {}
            for case in cases:
                records += evaluation.score_case(seg, rows, extra, case, model)
                done += 1
                tick(done, total)
    return {"method": method, "dataset": str(dataset.root), "synthetic": dataset.synthetic,
            "models": [str(m) for m, _ in plan if m is not None] or ["(no weights)"], "cases": len(seen),
            "label_map": labels, "records": records, "summary": evaluation.summary(records)}


def _evaluation(spec, dataset: Dataset, label_map, seed: int) -> Evaluation:
    cls = spec.load("evaluation") if spec.evaluation else Evaluation
    return cls(spec, dataset, label_map, seed)


def _score_case(evaluation: Evaluation, seg, rows: Mapping[str, Optional[Options]],
                baselines: Mapping[str, Predictor], case: Case, model: Optional[Path]) -> list[dict]:
    """The records of one case: every model row and baseline on the same prompts, scored against the label, or
    from the prompts for a case without one (:meth:`Evaluation.score_unlabelled`)."""
    images = method_inputs(evaluation.spec, case)
    if case.label is None:
        grid, prompts = images[0], evaluation.dataset.prompts(case.name)
        score = lambda pred: evaluation.score_unlabelled(pred, grid, prompts, case)  # noqa: E731
    else:
        grid = truth = evaluation.truth(case)
        prompts = evaluation.prompts(case, truth)
        score = lambda pred: evaluation.score(pred, truth, case)  # noqa: E731

    def record(row: str, row_model: Optional[Path], pred: Image, seconds: float) -> dict:
        return {"case": case.name, "patient": case.patient, "model": None if row_model is None else str(row_model),
                "row": row, "seconds": round(seconds, 3), "scores": score(pred)}

    out = []
    t0 = time.perf_counter()
    seg.set_image(*images)
    set_seconds = time.perf_counter() - t0
    own = seg.options
    for row, options in rows.items():
        seg.set_options(own if options is None else options)
        t0 = time.perf_counter()
        pred = _union(grid, (seg.predict(p) for p in prompts))
        out.append(record(row, model, pred, set_seconds + time.perf_counter() - t0))
    seg.set_options(own)
    for row, predict in baselines.items():
        t0 = time.perf_counter()
        pred = _union(grid, (predict(images, p) for p in prompts))
        out.append(record(row, None, pred, time.perf_counter() - t0))
    return out


def method_inputs(spec, case: Case) -> tuple[Image, ...]:
    """The case's channels a method takes, in its order: by name where the dataset names them as the method's
    inputs (case-insensitive, e.g. a CT method on a PET/CT dataset takes "CT"), else the first channels.
    Trailing optional inputs the case lacks are left out."""
    names = [n.lower() for n in case.channel_names]
    wanted = [n.lower() for n in spec.inputs]
    if all(n in names for n in wanted[: len(wanted) - spec.optional_inputs]):
        paths = [case.images[names.index(n)] for n in wanted if n in names]
    else:
        needed = len(wanted) - spec.optional_inputs
        if len(case.images) < needed:
            raise InputError(f"case {case.name} has {len(case.images)} channel(s); {spec.name} needs "
                             f"{', '.join(spec.inputs)}")
        paths = list(case.images[: len(wanted)])
    from .io import read_image

    return tuple(read_image(p) for p in paths)


def _union(grid: Image, labels: Iterable[Image]) -> Image:
    out = np.zeros(grid.shape, np.uint8)
    for label in labels:
        out = np.maximum(out, np.asarray(label.array, np.uint8))
    return grid.with_array(out)


def pool(paths: Sequence[Path]) -> dict:
    """One result from several earlier ``--json`` results of one method (one per fold), without running any
    model; a case scored twice in one row is an error."""
    from .registry import get_spec

    results = []
    for path in paths:
        try:
            results.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
    methods = {r.get("method") for r in results}
    if len(methods) != 1:
        raise InputError(f"--pool files come from different methods: {sorted(map(str, methods))}")
    records = [rec for r in results for rec in r["records"]]
    keys = [(rec["row"], rec["case"]) for rec in records]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise InputError(f"case {twice[0][1]} is scored twice in row {twice[0][0]} by the pooled files")
    spec = get_spec(methods.pop())
    first = results[0]
    dataset = Dataset(first["dataset"]) if Path(first["dataset"]).is_dir() else None
    evaluation = _evaluation(spec, dataset, {}, 0)  # the method's summary, also where the dataset has moved
    return {**first, "models": [m for r in results for m in r["models"]], "cases": len({k[1] for k in keys}),
            "records": records, "summary": evaluation.summary(records), "pooled_from": [str(p) for p in paths]}


def write_report(result: dict, json_path: Optional[Path], markdown_path: Optional[Path], overwrite: bool = False) -> None:
    """Write the JSON result and/or its Markdown together (both or neither)."""
    from .outputs import atomic_write, publish_together
    from .registry import get_spec

    spec = get_spec(result["method"])
    cls = spec.load("evaluation") if spec.evaluation else Evaluation
    with publish_together():
        if json_path is not None:
            text = json.dumps(result, indent=1) + "\n"
            atomic_write(json_path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite)
        if markdown_path is not None:
            text = cls.markdown(result)
            atomic_write(markdown_path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite)
