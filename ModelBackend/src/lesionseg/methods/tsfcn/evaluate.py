"""Validation of TS-FCN against classical baselines on the same jittered boxes.

The score is the paper's: for each nodule the 3D Dice (intersections and sizes summed over all its slices
before dividing), averaged over nodules. Boxes are the masks' bounding boxes jittered ±15 % in scale and
shift per axis with a fixed seed (:func:`.data.jitter_boxes`), identical for every method.

``python -m lesionseg.methods.tsfcn.evaluate --data DIR --model slim=MODEL_DIR [--model paper=DIR]
[--baselines] [--fp16-check] [--json OUT]`` re-creates the validation split from the first model's card
(without ``--model``: from ``--split-seed`` / ``--val-fraction``, as training does).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ...errors import LesionSegWarning
from ...image import Image
from ...metrics import dice
from ...prompts import Box
from . import data
from .preprocess import Preprocessing

log = logging.getLogger(__name__)

HU_THRESHOLDS = (-700.0, -600.0, -500.0, -400.0, -300.0)
"""Candidate HU thresholds of the threshold baseline, chosen on the training patients."""


def tsfcn_predictions(net: torch.nn.Module, prep: Preprocessing, cases: Sequence[data.Case],
                      boxes: Sequence[Box], device: str = "cpu") -> list[np.ndarray]:
    """``(K, J, I)`` float32 tumour probabilities of each case for its box (warnings about boxes partly
    outside the small crops are silenced: clipping is the documented behaviour)."""
    from .segmenter import TSFCN

    seg = TSFCN(net=net, preprocessing=prep, device=device)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LesionSegWarning)
        for case, box in zip(cases, boxes):
            seg.set_image(case.image)
            out.append(seg.predict_probability(box).array)
    return out


def mean_dice(cases: Sequence[data.Case], probs: Sequence[np.ndarray], threshold: float,
              largest_component: bool = False) -> float:
    """Mean over cases of the 3D Dice of the label :func:`.segmenter.binarize` makes from ``prob``."""
    from .segmenter import binarize

    return float(np.mean(case_dice(cases, [binarize(p, threshold, largest_component) for p in probs])))


def case_dice(cases: Sequence[data.Case], masks: Sequence[np.ndarray]) -> list[float]:
    """3D Dice of each predicted ``(K, J, I)`` mask against its case's mask (:func:`lesionseg.metrics.dice`)."""
    return [dice(c.image.with_array(m.astype(np.uint8)), c.image.with_array(c.mask.astype(np.uint8)))
            for c, m in zip(cases, masks)]


def run_method(predict: Callable[[Image, Box], Image], cases: Sequence[data.Case], boxes: Sequence[Box]
               ) -> tuple[list[float], float]:
    """Per-case Dice of ``predict(image, box)`` and the median seconds per case."""
    scores, times = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LesionSegWarning)
        for case, box in zip(cases, boxes):
            t0 = time.perf_counter()
            label = predict(case.image, box)
            times.append(time.perf_counter() - t0)
            scores.append(case_dice([case], [label.array > 0])[0])
    return scores, float(np.median(times))


def baselines(train_cases: Sequence[data.Case], cases: Sequence[data.Case], boxes: Sequence[Box],
              seed: int) -> dict[str, dict]:
    """HU threshold in the box (threshold picked on ``train_cases``), GrabCut, GrabCut + DenseCRF."""
    from ..classical import ClassicalBox, threshold_in_box

    train_boxes = data.jitter_boxes(train_cases, seed + 1)
    train_scores = {hu: float(np.mean(run_method(lambda im, b, hu=hu: threshold_in_box(im, b, hu),
                                                 train_cases, train_boxes)[0])) for hu in HU_THRESHOLDS}
    best_hu = max(train_scores, key=train_scores.get)
    results = {}
    for name, predict in (
        (f"threshold {best_hu:g} HU", lambda im, b: threshold_in_box(im, b, best_hu)),
        ("GrabCut", _segmenter_predict(ClassicalBox(use_crf=False))),
        ("GrabCut + DenseCRF", _segmenter_predict(ClassicalBox())),
    ):
        scores, seconds = run_method(predict, cases, boxes)
        results[name] = {"mean_dice": round(float(np.mean(scores)), 4), "median_s_per_nodule": round(seconds, 4),
                         "dice": [round(s, 4) for s in scores]}
        log.info("%s: mean Dice %.4f", name, results[name]["mean_dice"])
    results[f"threshold {best_hu:g} HU"]["train_choice"] = {str(k): round(v, 4) for k, v in train_scores.items()}
    return results


def _segmenter_predict(seg) -> Callable[[Image, Box], Image]:
    def predict(image: Image, box: Box) -> Image:
        seg.set_image(image)
        return seg.predict(box)
    return predict


def evaluate_model(folder: Path, cases: Sequence[data.Case], boxes: Sequence[Box], fp16_check: bool,
                   retune: Optional[tuple[Sequence[data.Case], int]] = None) -> dict:
    """Dice of a TS-FCN model folder on ``cases``; with ``fp16_check`` also with fp16-rounded weights.

    ``retune=(train_cases, seed)`` first re-chooses the threshold and largest-component step on the
    training patients (:func:`.train.choose_postprocessing`), as training does, and scores with those.
    """
    from ...modelfolder import load_model_folder
    from .segmenter import TSFCN
    from .train import choose_postprocessing

    seg = TSFCN(load_model_folder(folder, "tsfcn"), device="cpu")
    stored = torch.load(folder / "weights.pt", weights_only=True)
    result: dict = {"weights_dtype": str(next(iter(stored.values())).dtype)}
    if retune is not None:
        seg.prep, result["postprocessing_train_dice"] = choose_postprocessing(
            seg.net, seg.prep, retune[0], retune[1], 0.15, "cpu")
    result["preprocessing"] = seg.prep.to_dict()
    variants = {"stored": seg.net.state_dict()}
    if fp16_check:
        variants["fp16"] = {k: v.half().float() if v.is_floating_point() else v for k, v in variants["stored"].items()}
    for name, state in variants.items():
        seg.net.load_state_dict(state)
        scores, seconds = run_method(_segmenter_predict(seg), cases, boxes)
        result[name] = {"mean_dice": round(float(np.mean(scores)), 4), "median_s_per_nodule": round(seconds, 4),
                        "dice": [round(s, 4) for s in scores]}
        log.info("%s (%s weights): mean Dice %.4f", folder, name, result[name]["mean_dice"])
    return result


def export_model(src: Path, dest: Path, results: dict, key: str) -> None:
    """Copy model folder ``src`` to ``dest`` with the comparison table in its card's ``metrics``."""
    from ...modelfolder import load_model_folder, save_model_folder

    folder = load_model_folder(src, "tsfcn")
    own = results["methods"][key]
    fp16 = "fp16" in own and own["fp16"]["mean_dice"] >= own["stored"]["mean_dice"] - 0.001
    table = {name: (res.get("stored", res)["mean_dice"]) for name, res in results["methods"].items()}
    before = folder.card.get("metrics", {})
    metrics = {**before, "validation_mean_dice_3d": own["fp16" if fp16 else "stored"]["mean_dice"],
               "validation_mean_dice_3d_at_training": before.get("validation_mean_dice_3d"),
               "comparison_mean_dice_3d": table,
               "validation_nodules": results["validation_nodules"],
               "fp16_mean_dice_3d": own.get("fp16", {}).get("mean_dice"), "weights_fp16": fp16}
    state = torch.load(folder.file("weights.pt"), map_location="cpu", weights_only=True)
    card = {**folder.card, "preprocessing": own["preprocessing"], "metrics": metrics}
    save_model_folder(dest, card, {"weights.pt": state}, fp16=fp16, overwrite=True)
    log.info("exported %s to %s (%s weights)", src, dest, "fp16" if fp16 else "float32")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Validate TS-FCN models and baselines on jittered boxes")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR", help="model folder(s)")
    parser.add_argument("--baselines", action="store_true", help="also threshold, GrabCut, GrabCut + DenseCRF")
    parser.add_argument("--fp16-check", action="store_true", help="also score fp16-rounded weights")
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--export", metavar="NAME=DIR",
                        help="write model NAME to DIR with these results in its card; fp16 weights when "
                             "--fp16-check shows they cost no Dice (< 0.001), else float32")
    parser.add_argument("--retune", action="store_true",
                        help="re-choose threshold and largest-component step on the training patients first")
    parser.add_argument("--split-seed", type=int, default=0, help="split seed when no --model is given")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="validation fraction without --model")
    parser.add_argument("--eval-seed", type=int, default=2016, help="box seed without --model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    models = dict(m.split("=", 1) for m in args.model)
    cases = data.load_cases(args.data)
    if models:
        card = json.loads((Path(next(iter(models.values()))) / "model.json").read_text())
        val_patients = set(card["training"]["split"]["validation_patients"])
        seed, eval_seed = int(card["training"]["config"]["seed"]), int(card["metrics"].get("eval_seed", 2016))
    else:
        seed, eval_seed = args.split_seed, args.eval_seed
        val_patients = {c.patient for c in data.split_by_patient(cases, args.val_fraction, seed)[1]}
    train_cases = [c for c in cases if c.patient not in val_patients]
    val_cases = [c for c in cases if c.patient in val_patients]
    boxes = data.jitter_boxes(val_cases, eval_seed)
    results = {"validation_nodules": len(val_cases), "validation_patients": len(val_patients),
               "train_nodules": len(train_cases), "eval_seed": eval_seed, "split_seed": seed,
               "cases": [c.name for c in val_cases], "methods": {}}
    for name, folder in models.items():
        retune = (train_cases, eval_seed + 1) if args.retune else None
        results["methods"][f"tsfcn {name}"] = evaluate_model(Path(folder), val_cases, boxes, args.fp16_check, retune)
    if args.baselines:
        results["methods"].update(baselines(train_cases, val_cases, boxes, eval_seed))
    if args.export:
        name, dest = args.export.split("=", 1)
        export_model(Path(models[name]), Path(dest), results, f"tsfcn {name}")
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    for name, res in results["methods"].items():
        res = res.get("stored", res)
        print(f"{name:28s} mean 3D Dice {res['mean_dice']:.4f}  ({res['median_s_per_nodule'] * 1000:.0f} ms/nodule)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
