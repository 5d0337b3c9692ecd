"""Evaluate ``recist-coseg`` variants against the *true* masks on held-out patients (a small Table 1).

For every key slice (largest lesion area) of the held-out patients, the RECIST axes are derived from the
true mask exactly as for training; each variant's 2D result on that slice is compared with the true mask
of the slice: recall, precision, Dice, average symmetric surface distance (mm; the symmetric "average
Hausdorff distance") and volumetric similarity (:mod:`lesionseg.metrics`), averaged over lesions.

Rows: GrabCut alone (the weak training labels), each given model without and with DenseCRF, and for
co-segmentation models the partner study: the lesion paired with itself, with the held-out lesion of
another patient nearest in embedding space, and with a random one.

Usage::

    python -m lesionseg.methods.recist.evaluate --data DIR MODEL_DIR [MODEL_DIR ...] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ... import metrics
from ...errors import InputError
from ...image import Image
from ...modelfolder import load_model_folder
from .dataset import Sample, load_samples, network_input
from .segmenter import RecistCoSegSegmenter, keep_touching_axis

log = logging.getLogger(__name__)
METRICS = ("recall", "precision", "dice", "assd_mm", "volumetric_similarity")


def scores(pred_slice: np.ndarray, sample: Sample) -> dict:
    """Metrics of a ``(J, I)`` bool prediction against the sample's true slice mask."""
    spacing = (float(sample.spacing[0]), float(sample.spacing[1]), 1.0)
    pred = Image(pred_slice.astype(np.uint8), spacing)
    truth = Image(sample.truth_slice.astype(np.uint8), spacing)
    return {"recall": metrics.recall(pred, truth), "precision": metrics.precision(pred, truth),
            "dice": metrics.dice(pred, truth), "assd_mm": metrics.assd(pred, truth),
            "volumetric_similarity": metrics.volumetric_similarity(pred, truth)}


def summarise(rows: list[dict]) -> dict:
    """Mean (NaN/inf-free) of every metric over lesions, plus the lesion count."""
    out = {"lesions": len(rows)}
    for key in METRICS:
        values = np.array([r[key] for r in rows], float)
        out[key] = float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else float("nan")
    return out


def to_slice(sample: Sample, crop_mask: np.ndarray) -> np.ndarray:
    """A crop-frame mask mapped back onto the sample's native slice, ``(J, I)`` bool."""
    return sample.frame.paste(crop_mask.astype(np.float32)) >= 0.5


def sample_long_mm(sample: Sample) -> float:
    """Long-axis length of a sample in mm."""
    return float(np.linalg.norm((sample.recist.long[1] - sample.recist.long[0]) * sample.spacing[:2]))


def run_variant(samples: list[Sample], mask_of: Callable[[Sample], np.ndarray]) -> tuple[dict, float]:
    """Summary of ``mask_of(sample) -> (S, S) crop mask`` over ``samples`` and the mean ms per lesion."""
    rows, t0 = [], time.perf_counter()
    for s in samples:
        rows.append(scores(to_slice(s, keep_touching_axis(mask_of(s), s.frame.to_crop(s.recist.long))), s))
    return summarise(rows), 1000 * (time.perf_counter() - t0) / max(len(samples), 1)


def partner_inputs(seg: RecistCoSegSegmenter, samples: list[Sample], mode: str, seed: int) -> list[Optional[np.ndarray]]:
    """Partner network inputs per sample: ``"self"`` (None), ``"nearest"`` (held-out lesion of another
    patient closest in embedding), ``"random"`` (random lesion of another patient)."""
    if mode == "self":
        return [None] * len(samples)
    from .pairs import embeddings

    inputs = np.stack([network_input(s.crop_hu) for s in samples])
    emb = embeddings(seg.net, inputs)
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(samples):
        others = np.array([j for j, t in enumerate(samples) if t.patient != s.patient])
        if mode == "nearest":
            j = others[np.argmin(np.linalg.norm(emb[others] - emb[i], axis=1))]
        else:
            j = rng.choice(others)
        out.append(inputs[j])
    return out


def evaluate_models(data: Path, models: list[Path], seed: int = 0) -> dict:
    """All rows for the held-out patients recorded in the first model's card."""
    cards = [load_model_folder(m, "recist-coseg") for m in models]
    heldout = set(cards[0].require("training", "the training record").get("heldout_patients", []))
    if not heldout:
        raise InputError(f"{models[0]} records no held-out patients")
    samples = [s for s in load_samples(data, all_slices=False) if s.patient in heldout and s.key]
    log.info("evaluating %d held-out lesions from %d patients", len(samples), len(heldout))
    table: dict = {}
    table["GrabCut"], _ = run_variant(samples, lambda s: s.grabcut)
    for folder, model in zip(models, cards):
        seg = RecistCoSegSegmenter(model=model)
        name = Path(folder).name
        training = model.require("training", "the training record")
        modes = ("self", "nearest", "random") if training.get("attention") != "none" else ("self",)
        for mode in modes:
            partners = partner_inputs(seg, samples, mode, seed)
            probs = {s.name: seg.probability(s.crop_hu, p) for s, p in zip(samples, partners)}
            suffix = "" if mode == "self" else f" (partner: {mode})"
            table[f"{name}{suffix}"], _ = run_variant(samples, lambda s: probs[s.name] >= 0.5)
            table[f"{name} + DenseCRF{suffix}"], _ = run_variant(
                samples, lambda s: seg.refine_crop(s.crop_hu, probs[s.name], s.frame.pixel_mm, sample_long_mm(s)))
    return {"heldout_patients": sorted(heldout), "lesions": len(samples), "rows": table}


def markdown(result: dict) -> str:
    """The table as Markdown (metrics in %, ASSD in mm)."""
    lines = ["| variant | recall % | precision % | Dice % | ASSD mm | VS % |", "|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {100 * r['recall']:.1f} | {100 * r['precision']:.1f} | {100 * r['dice']:.1f} | "
                     f"{r['assd_mm']:.2f} | {100 * r['volumetric_similarity']:.1f} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = evaluate_models(args.data, args.models, args.seed)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['lesions']} held-out lesions, {len(result['heldout_patients'])} patients")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
