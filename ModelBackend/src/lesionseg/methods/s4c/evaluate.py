"""Evaluate S4C like the paper (Tables 1 and 2) by cross-validation, plus a plain baseline.

``python -m lesionseg.methods.s4c.evaluate --data DIR --model FOLD0 --model FOLD1 ... --json out.json``

``--all-cases`` scores every case of ``--data`` with a single model instead: a fresh test cohort (one written
with another seed) that the model never saw, e.g. for the shipped model.

``python -m lesionseg.methods.s4c.evaluate --pool f0.json --pool f1.json ... --json pooled.json`` summarises
the records of earlier ``--json`` outputs (one per fold, evaluated as each fold finished) without running
any model again.

Each model folder's card names the cases it held out (``training.held_out_cases``, written by
``lesionseg train s4c --folds K --fold I``); each model is scored on its own held-out cases only, so every
case is scored once by a model that never saw it. Per phase and fused (a case is positive when any phase
is), as in the paper:

* DSC of the whole pancreas (all non-zero labels) on normal cases ("normal pancreas") and on cases with a
  tumour or a dilated duct ("abnormal pancreas"), and DSC of the tumour on cases with a tumour;
* misses (positive cases called negative), wrong calls (negative cases called positive), sensitivity and
  specificity.

The **plain baseline** (as recent work recommends): the same network output without the
connected-component post-processing and without the duct rule; a phase is positive when its tumour volume
reaches a single threshold. It is reported at 40 mm^3 (the S4C tumour threshold) and over a sweep.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...errors import InputError
from ...io import read_image
from ...metrics import dice
from ...modelfolder import load_model_folder
from ...registry import build
from .data import list_cases

log = logging.getLogger(__name__)
BASELINE_SWEEP_MM3 = (1.0, 40.0, 100.0, 250.0, 500.0, 1000.0)


def _dice(grid, pred: np.ndarray, truth: np.ndarray) -> Optional[float]:
    """Dice of two masks on ``grid``'s grid; None when the truth is empty (the DSC is undefined)."""
    if not truth.any():
        return None
    return float(dice(grid.with_array(pred.astype(np.uint8)), grid.with_array(truth.astype(np.uint8))))


def score_cases(data: Path, model_dirs: Sequence[Path], device: str = "cpu", stride: Optional[int] = None,
                all_cases: bool = False) -> list[dict]:
    """One record per (case, phase): truth, S4C counts and verdict, raw tumour volume, DSCs, seconds.

    Each model scores the cases its card held out, or, with ``all_cases`` (one model only), every case."""
    cases = {c.name: c for c in list_cases(data)}
    if all_cases and len(model_dirs) != 1:
        raise InputError(f"--all-cases scores every case with one model; {len(model_dirs)} were given")
    records = []
    for model_dir in model_dirs:
        training = load_model_folder(model_dir, "s4c").require("training", "the training record")
        held = training.get("held_out_cases") or []
        if all_cases:
            held = sorted(cases)
        if not held:
            log.warning("%s holds out no cases; it is not scored", model_dir)
        missing = sorted(set(held) - set(cases))
        if missing:
            raise InputError(f"{model_dir} held out {', '.join(missing[:3])}, which {data} does not hold: is it "
                             "the cohort the model was trained on?")
        seg = build("s4c", weights=model_dir, device=device)
        if stride is not None:
            seg.set_stride(stride)
        for name in held:
            case = cases[name]
            truth = read_image(case.label)
            for phase, path in case.phases.items():
                t0 = time.perf_counter()
                seg.set_image(read_image(path))
                label = seg.predict()
                found = seg.findings(phase)
                seconds = time.perf_counter() - t0
                true = truth.array if truth.same_grid(label) else None
                if true is None:
                    from ...resample import resample_to_grid

                    true = resample_to_grid(truth, label, "nearest").array
                raw_mm3 = float((seg.raw.array == 2).sum() * 1000.0 * seg.raw.voxel_volume_ml)
                records.append({
                    "case": name, "phase": phase, "model": str(model_dir),
                    "truth_positive": bool(np.isin(true, (2, 3)).any()),
                    "truth_tumour": bool((true == 2).any()), "truth_duct": bool((true == 3).any()),
                    "positive": found.positive, "tumour_mm3": found.tumour_mm3, "duct_mm3": found.duct_mm3,
                    "raw_tumour_mm3": round(raw_mm3, 2),
                    "dsc_pancreas": _dice(label, label.array > 0, true > 0),
                    "dsc_tumour": _dice(label, label.array == 2, true == 2),
                    "dsc_duct": _dice(label, label.array == 3, true == 3),
                    "seconds": round(seconds, 2)})
                log.info("%s %s: truth %s, called %s (tumour %.0f mm3, duct %.0f mm3), %.1f s", name, phase,
                         records[-1]["truth_positive"], found.positive, found.tumour_mm3, found.duct_mm3, seconds)
    return records


def _classification(calls: list[tuple[bool, bool]]) -> dict:
    """(truth, call) pairs -> misses, wrong calls, sensitivity, specificity (percent)."""
    pos = [c for t, c in calls if t]
    neg = [c for t, c in calls if not t]
    return {"cases": len(calls), "positive_cases": len(pos), "misses": int(sum(not c for c in pos)),
            "wrong_calls": int(sum(neg)),
            "sensitivity": round(100.0 * sum(pos) / len(pos), 2) if pos else None,
            "specificity": round(100.0 * sum(not c for c in neg) / len(neg), 2) if neg else None}


def _mean(values) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return round(100.0 * float(np.mean(vals)), 2) if vals else None


def summarise(records: list[dict]) -> dict:
    """Tables 1 and 2 per phase and fused, and the baseline sweep."""
    out: dict = {"phases": {}, "fused": {}, "baseline": {}}
    phases = sorted({r["phase"] for r in records})
    for phase in phases:
        rs = [r for r in records if r["phase"] == phase]
        out["phases"][phase] = {
            "dsc_normal_pancreas": _mean(r["dsc_pancreas"] for r in rs if not r["truth_positive"]),
            "dsc_abnormal_pancreas": _mean(r["dsc_pancreas"] for r in rs if r["truth_positive"]),
            "dsc_tumour": _mean(r["dsc_tumour"] for r in rs if r["truth_tumour"]),
            "dsc_duct": _mean(r["dsc_duct"] for r in rs if r["truth_duct"]),
            **_classification([(r["truth_positive"], r["positive"]) for r in rs]),
            "seconds_per_phase": round(float(np.mean([r["seconds"] for r in rs])), 2)}
    by_case: dict[str, list[dict]] = {}
    for r in records:
        by_case.setdefault(r["case"], []).append(r)
    out["fused"] = _classification([(rs[0]["truth_positive"], any(r["positive"] for r in rs))
                                    for rs in by_case.values()])
    for threshold in BASELINE_SWEEP_MM3:
        entry = {phase: _classification([(r["truth_positive"], r["raw_tumour_mm3"] >= threshold)
                                          for r in records if r["phase"] == phase]) for phase in phases}
        entry["fused"] = _classification([(rs[0]["truth_positive"], any(r["raw_tumour_mm3"] >= threshold for r in rs))
                                          for rs in by_case.values()])
        out["baseline"][f"{threshold:g}"] = entry
    return out


def pool_records(paths: Sequence[Path]) -> list[dict]:
    """The records of earlier ``--json`` outputs, concatenated; a (case, phase) scored twice is an error (two
    folds that held out the same case do not make a cross-validation)."""
    records: list[dict] = []
    seen: dict[tuple[str, str], Path] = {}
    for path in paths:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))["records"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path} is not an s4c evaluation JSON (written by --json): {exc}") from None
        for record in loaded:
            key = (record["case"], record["phase"])
            if key in seen:
                raise InputError(f"{key[0]} ({key[1]}) is scored in both {seen[key]} and {path}")
            seen[key] = Path(path)
        records.extend(loaded)
    if not records:
        raise InputError("the pooled evaluation JSONs hold no records")
    return records


def markdown(summary: dict) -> str:
    """Tables 1 (segmentation) and 2 (classification) and the baseline, as Markdown."""
    lines = ["| phase | DSC normal pancreas | DSC abnormal pancreas | DSC tumour | DSC duct |", "|---|---|---|---|---|"]
    for phase, s in summary["phases"].items():
        lines.append(f"| {phase} | {s['dsc_normal_pancreas']} | {s['dsc_abnormal_pancreas']} | {s['dsc_tumour']} | "
                     f"{s['dsc_duct']} |")
    lines += ["", "| phase | misses | wrong calls | sensitivity % | specificity % |", "|---|---|---|---|---|"]
    rows = [(p, s) for p, s in summary["phases"].items()] + [("fused (any phase)", summary["fused"])]
    for name, s in rows:
        lines.append(f"| S4C {name} | {s['misses']}/{s['positive_cases']} | {s['wrong_calls']}/"
                     f"{s['cases'] - s['positive_cases']} | {s['sensitivity']} | {s['specificity']} |")
    for threshold, entry in summary["baseline"].items():
        for name, s in entry.items():
            lines.append(f"| baseline tumour >= {threshold} mm3, {name} | {s['misses']}/{s['positive_cases']} | "
                         f"{s['wrong_calls']}/{s['cases'] - s['positive_cases']} | {s['sensitivity']} | "
                         f"{s['specificity']} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="S4C data folder (see lesionseg.methods.s4c.data)")
    parser.add_argument("--model", type=Path, action="append", help="fold model folder (repeat)")
    parser.add_argument("--all-cases", action="store_true",
                        help="score every case of --data with the one --model (a cohort it never saw)")
    parser.add_argument("--pool", type=Path, action="append",
                        help="summarise the records of an earlier --json output instead of running models (repeat)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stride", type=int, default=None, help="override the models' stride")
    parser.add_argument("--json", type=Path, help="write records and summary here")
    args = parser.parse_args(argv)
    if bool(args.pool) == bool(args.data or args.model or args.all_cases):
        parser.error("give either --data and --model (and --all-cases), or --pool")
    if not args.pool and not (args.data and args.model):
        parser.error("--data and --model go together")
    if args.json and not args.json.parent.is_dir():
        parser.error(f"--json: folder {args.json.parent} does not exist")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        records = pool_records(args.pool) if args.pool else score_cases(args.data, args.model, args.device,
                                                                            args.stride, args.all_cases)
    except InputError as exc:
        parser.exit(2, f"error: {exc}\n")
    summary = summarise(records)
    print(markdown(summary))
    if args.json:
        args.json.write_text(json.dumps({"records": records, "summary": summary}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
