"""Cross-validation of ``autopet-l2snet`` on real PET/CT crops, beside three threshold baselines.

    python scripts/autopet_cv.py --data .data/sts-mix --group sarcoma --folds 5 \\
        --models cv/fold0 cv/fold1 cv/fold2 cv/fold3 cv/fold4 --json cv.json --markdown cv.md

``--data`` is the dataset the fold models were trained on (e.g. ``lesionseg data merge`` of the IBSI crops and a
synthetic cohort, with ``--folds 5``); its folds (``splits.json``, else dealt as ``lesionseg train --folds K``
deals them) say which cases each fold holds out. Only the cases of ``--group`` (the real crops) are scored: every
one by the model of the fold that held it out (each model's card must hold it out). Rows:

* the model: ``2D only``, ``3D only`` (when the model has ``seg_plain.pt``), ``L2SNet``, ``L2SNet + adaptive
  threshold``, each with PET + CT, and the default row again from the PET alone (``PET only``) when the model was
  trained with CT-channel dropout;
* ``41% SUVmax``: voxels >= 0.41 x SUVmax, the 18-connected component holding the maximum;
* ``SUV >= 2.5``: every voxel of SUV 2.5 or more;
* ``fixed threshold``: SUV >= t, t chosen per fold as the best mean Dice over the fold's *training* crops
  (t from 1.0 to 8.0 in steps of 0.25).

Metrics are :mod:`lesionseg.metrics`' (autoPET definitions, 18-connectivity, on the PET grid): Dice, FPV, FNV
(mL). Without ``--models`` only the baselines are computed. Refuses to overwrite ``--json``/``--markdown``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from lesionseg.data import Dataset
from lesionseg.data.splits import fold_split
from lesionseg.image import Image
from lesionseg.io import read_image
from lesionseg.metrics import dice, false_negative_volume, false_positive_volume
from lesionseg.methods.autopet.data import pet_ct_files
from lesionseg.methods.autopet.evaluate import available_rows

THRESHOLDS = np.round(np.arange(1.0, 8.0001, 0.25), 2)
STRUCTURE_18 = ndimage.generate_binary_structure(3, 2)


def suvmax_41(pet: np.ndarray) -> np.ndarray:
    """41 % of SUVmax, the 18-connected component of the maximum."""
    labels, _ = ndimage.label(pet >= 0.41 * pet.max(), STRUCTURE_18)
    return labels == labels[np.unravel_index(int(np.argmax(pet)), pet.shape)]


def scores(pred: np.ndarray, truth: Image) -> dict:
    """Dice, FPV and FNV (mL) of a bool array on ``truth``'s grid."""
    p = truth.with_array(pred.astype(np.uint8))
    return {"dice": round(float(dice(p, truth)), 4), "fpv_ml": round(false_positive_volume(p, truth), 3),
            "fnv_ml": round(false_negative_volume(p, truth), 3)}


def summary(values: list[dict]) -> dict:
    out = {}
    for key in ("dice", "fpv_ml", "fnv_ml"):
        v = np.array([r[key] for r in values], float)
        worst = v.min() if key == "dice" else v.max()
        out[key] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4),
                    "worst": round(float(worst), 4)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--group", default=None, help="score only the cases of this group (default: real cases of all)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=Path, nargs="*", default=[], help="one model folder per fold, in fold order")
    ap.add_argument("--fold", type=int, action="append", help="score only this fold (repeatable; --models then "
                                                             "gives one model per fold named)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    for out in (args.json, args.markdown):
        if out is not None and out.exists():
            sys.exit(f"error: {out} exists; choose another name")
    folds = sorted(set(args.fold)) if args.fold else list(range(args.folds))
    if args.models and len(args.models) != len(folds):
        sys.exit(f"error: give one model per fold scored ({len(folds)}), got {len(args.models)}")
    models = dict(zip(folds, args.models))
    dataset = Dataset(args.data)
    cases = {c.name: c for c in dataset.cases()}
    scored = [n for n in cases if args.group is None or dataset.group(n) == args.group]
    if not scored:
        sys.exit(f"error: no case of group {args.group!r} in {args.data}")
    data = {}
    for name in scored:
        pet_path, ct_path = pet_ct_files(cases[name])
        label = cases[name].read_label()
        data[name] = (read_image(pet_path), read_image(ct_path), label.with_array((label.array > 0).astype(np.uint8)))
    records, chosen = [], {}
    for fold in folds:
        split = fold_split(dataset, args.folds, fold, args.seed)
        train = [n for n in split.train if n in data]
        test = [n for n in split.held_out if n in data]
        mean_dice = [np.mean([float(dice(data[n][2].with_array((data[n][0].array >= t).astype(np.uint8)), data[n][2]))
                              for n in train]) for t in THRESHOLDS]
        t_best = float(THRESHOLDS[int(np.argmax(mean_dice))])
        chosen[fold] = t_best
        print(f"fold {fold}: {len(train)} training and {len(test)} test crops; fixed threshold SUV {t_best}",
              flush=True)
        seg = None
        if models:
            seg, rows = _load(models[fold], split, test, args.device)
        for name in test:
            pet, ct, truth = data[name]
            base = {"41% SUVmax": suvmax_41(pet.array), "SUV >= 2.5": pet.array >= 2.5,
                    "fixed threshold": pet.array >= t_best}
            for row, pred in base.items():
                records.append({"case": name, "fold": fold, "row": row, **scores(pred, truth)})
            if seg is None:
                continue
            t0 = time.perf_counter()
            seg.set_image(pet, ct)
            for row, (mode, adaptive) in rows.items():
                records.append({"case": name, "fold": fold, "row": row,
                                **scores(seg.label(mode, adaptive).array > 0, truth)})
            seconds = time.perf_counter() - t0
            if seg.prep.ct_dropout > 0:
                seg.set_image(pet)
                for row, (mode, adaptive) in rows.items():
                    records.append({"case": name, "fold": fold, "row": f"{row}, PET only",
                                    **scores(seg.label(mode, adaptive).array > 0, truth)})
            mine = {r["row"]: r["dice"] for r in records if r["case"] == name}
            print(f"  {name}: " + ", ".join(f"{row} {value:.3f}" for row, value in mine.items())
                  + f" ({seconds:.1f} s)", flush=True)
    table = {row: summary([r for r in records if r["row"] == row])
             for row in dict.fromkeys(r["row"] for r in records)}
    result = {"data": str(args.data), "group": args.group, "folds": args.folds, "scored_folds": folds,
              "seed": args.seed,
              "models": [str(m) for m in args.models], "cases": len(scored), "fixed_thresholds": chosen,
              "summary": table, "records": records}
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.markdown:
        args.markdown.write_text(text)
    return 0


def _load(model: Path, split, test: list, device: str):
    """The fold's segmenter and its ablation rows; exits when its card does not hold out every test crop."""
    from lesionseg.registry import build

    seg = build("autopet-l2snet", weights=model, device=device)
    held = set(seg.model.card.get("training", {}).get("held_out_cases") or [])
    if not set(test) <= held:
        sys.exit(f"error: {model} was trained on test cases {sorted(set(test) - held)} of fold {split.fold}")
    return seg, available_rows(seg)


def markdown(result: dict) -> str:
    lines = [f"Cross-validation on {result['cases']} real crops of `{result['data']}`"
             f" ({result['folds']} folds by patient; fixed thresholds per fold: "
             + ", ".join(f"{t:g}" for t in result["fixed_thresholds"].values()) + ").", "",
             "| row | Dice mean | median | worst | FPV mL mean | FNV mL mean |", "|---|---|---|---|---|---|"]
    for row, s in result["summary"].items():
        lines.append(f"| {row} | {s['dice']['mean']:.3f} | {s['dice']['median']:.3f} | {s['dice']['worst']:.3f} | "
                     f"{s['fpv_ml']['mean']:.2f} | {s['fnv_ml']['mean']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
