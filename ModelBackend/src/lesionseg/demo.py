"""``lesionseg demo``: every available method on generated phantoms, with pictures and a report.

The demo needs no data and no network. It generates seeded phantoms (:mod:`lesionseg.phantoms`), derives
each method's prompts from the phantom truth (a box around each lesion with a margin, or the lesion's
RECIST axes), runs every registered method whose weights are found (or that needs none), and writes into
the output folder: inputs and outputs as NIfTI, ``montage.png`` (truth green, prediction red, prompt
yellow), ``report.md`` and ``report.json`` (Dice against the phantom truth, time of each step). The folder is
assembled in a temporary sibling and renamed at the end, so a failed run leaves nothing behind.
All numbers in the report are measured on synthetic phantoms.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from scipy import ndimage

from . import progress
from .errors import LesionSegError
from .geometry import index_box_to_world
from .image import Image
from .io import output_folder, write_image
from .prompts import Box, Prompt

log = logging.getLogger(__name__)
BOX_MARGIN_MM = 3.0


@dataclass
class DemoCase:
    """One phantom: the input images (in a method's ``inputs`` order), truth labels and lesion prompts."""

    name: str
    images: tuple[Image, ...]
    truth: Image
    info: dict = field(default_factory=dict)


def _chest(seed: int) -> DemoCase:
    from .phantoms import chest_ct

    image, label, info = chest_ct(seed=seed)
    return DemoCase("chest_ct", (image,), label, info)


def _abdomen(seed: int) -> DemoCase:
    from .phantoms import abdomen_ct

    image, label, info = abdomen_ct(seed=seed)
    return DemoCase("abdomen_ct", (image,), label, info)


def _pancreas(seed: int) -> DemoCase:
    """The venous phase of a dual-phase pancreas phantom with a tumour (labels 1 pancreas, 2 tumour, 3 duct)."""
    from .phantoms.pancreas import pancreas_ct

    _, venous, label, info = pancreas_ct(seed=seed, kind="tumour")
    return DemoCase("pancreas_ct", (venous,), label, {**info, "window": [-160.0, 240.0]})


def _wholebody(seed: int) -> DemoCase:
    """A whole-body FDG-PET/CT phantom with lesions (PET in SUV, CT in HU, one 4 mm grid)."""
    from .phantoms.wholebody import wholebody_petct

    pet, ct, label, info = wholebody_petct(seed=seed, with_lesions=True)
    return DemoCase("wholebody_petct", (pet, ct), label, info)


def _smallbowel(seed: int) -> DemoCase:
    """A small-bowel CT crop with 1-4 small enhancing lesions at the bowel wall (label 1)."""
    from .phantoms.smallbowel import smallbowel_ct

    image, label, info = smallbowel_ct(seed=seed)
    return DemoCase("smallbowel_ct", (image,), label, info)


CASES: dict[str, Callable[[int], DemoCase]] = {"chest_ct": _chest, "abdomen_ct": _abdomen, "pancreas_ct": _pancreas,
                                               "wholebody_petct": _wholebody, "smallbowel_ct": _smallbowel}
"""Phantom builders by name; a method names its phantom in its spec (``register(..., demo_case=...)``)."""


def lesion_prompts(case: DemoCase, kind: str) -> list[Prompt]:
    """Prompts derived from the truth: one per 18-connected lesion (``[None]`` for automatic methods)."""
    if kind == "none":
        return [None]
    labels, n = ndimage.label(case.truth.array > 0, ndimage.generate_binary_structure(3, 2))
    prompts: list[Prompt] = []
    for sl in ndimage.find_objects(labels):
        lo = np.array([sl[2].start, sl[1].start, sl[0].start])
        hi = np.array([sl[2].stop - 1, sl[1].stop - 1, sl[0].stop - 1])
        if kind == "box":
            box = index_box_to_world(case.truth, lo, hi)
            prompts.append(Box(box.lo - BOX_MARGIN_MM * np.array([1, 1, 0]), box.hi + BOX_MARGIN_MM * np.array([1, 1, 0])))
        elif kind == "recist":
            from .metrics import recist_axes

            from .prompts import RecistLine

            comp = case.truth.with_array((labels == len(prompts) + 1).astype(np.uint8))
            axes = recist_axes(comp)
            prompts.append(RecistLine(*axes.long_endpoints_lps, *axes.short_endpoints_lps))
    return prompts


def _available_methods():
    from .modelfolder import find_model_folder
    from .registry import list_methods

    for cls in list_methods():
        if cls.needs_weights and find_model_folder(cls.name) is None:
            log.warning("demo: %s skipped (no weights found)", cls.name)
            continue
        yield cls


def detection_counts(pred: Image, truth: Image) -> dict:
    """For an automatic method (no prompt): ``lesions`` (true lesions, 26-connected), ``found`` (predicted
    lesions), ``hit`` (true lesions sharing a voxel with the prediction) and a ``notes`` line saying so."""
    from .metrics import lesion_components

    labels, n_truth = lesion_components(truth, connectivity=26)
    n_found = lesion_components(pred, connectivity=26)[1]
    hit = int(np.unique(labels.array[(pred.array > 0) & (labels.array > 0)]).size)
    return {"lesions": n_truth, "found": n_found, "hit": hit,
            "notes": f"{n_found} lesions found; {hit} of {n_truth} true lesions hit"}


def _run_method(name: str, case: DemoCase, device: str) -> dict:
    from .evaluation import Evaluation
    from .metrics import dice
    from .registry import build, get_spec

    seg = build(name, device=device)
    prompts = lesion_prompts(case, seg.prompt_kind)
    t0 = time.perf_counter()
    seg.set_image(*case.images)
    t_set = time.perf_counter() - t0
    out = np.zeros(case.truth.shape, np.uint8)
    times = []
    for prompt in prompts:
        t1 = time.perf_counter()
        out = np.maximum(out, np.asarray(seg.predict(prompt).array, np.uint8))   # keeps multi-class labels
        times.append(time.perf_counter() - t1)
    pred = case.truth.with_array(out)
    truth = case.truth
    if seg.prompt_kind == "recist":  # RECIST methods segment the RECIST slice (2D), as their paper evaluates
        from .geometry import recist_to_index

        keep = np.zeros(truth.shape[0], bool)
        keep[[recist_to_index(truth, p).k for p in prompts]] = True
        truth = truth.with_array(np.where(keep[:, None, None], truth.array, 0))
        pred = pred.with_array(np.where(keep[:, None, None], pred.array, 0))
    spec = get_spec(name)
    evaluation = spec.load("evaluation") if spec.evaluation else Evaluation
    extras = evaluation.demo_notes(seg, pred, case.truth)
    return {"method": name, "case": case.name, "prompt": seg.prompt_kind, "lesions": len(prompts), **extras,
            "dice": round(float(dice(pred, truth)), 4), "dice_scope": "RECIST slices" if truth is not case.truth
            else "3D", "set_image_s": round(t_set, 3),
            "predict_s_total": round(float(sum(times)), 3),
            "predict_ms_per_prompt": round(1000 * float(np.mean(times)), 1),
            "prompts": [p.to_dict() if p is not None else None for p in prompts], "_pred": pred}


def run_demo(output: Path, seed: int = 0, device: str = "auto", overwrite: bool = False,
             methods: Optional[list[str]] = None, command: str = "") -> dict:
    """Run the demo into ``output``; returns the report dict (also written as JSON and Markdown).

    ``overwrite`` replaces an earlier output folder of LesionSeg only (:func:`lesionseg.outputs.output_folder`);
    ``command`` is recorded in the folder's marker."""
    from .montage import render_montage

    output = Path(output)
    with output_folder(output, overwrite, command=command or "lesionseg demo") as work:
        report = _run_into(work, seed, device, methods, render_montage)
    report["montage"] = str(output / "montage.png")
    report["report_md"] = str(output / "report.md")
    return report


def _run_into(work: Path, seed: int, device: str, methods: Optional[list[str]], render_montage) -> dict:
    t_start = time.perf_counter()
    (work / "inputs").mkdir()
    (work / "outputs").mkdir()
    classes = [c for c in _available_methods() if methods is None or c.name in methods]
    if not classes:
        raise LesionSegError("no method is available to run (no weights found and no weight-free method)")
    cases: dict[str, DemoCase] = {}
    timings: dict[str, float] = {}
    results = []
    with progress.task("demo", total=len(classes)) as tick:
        for i, cls in enumerate(classes):
            case_name = cls.spec.demo_case
            if case_name not in cases:
                t0 = time.perf_counter()
                cases[case_name] = CASES[case_name](seed)
                timings[f"generate {case_name}"] = round(time.perf_counter() - t0, 3)
                case = cases[case_name]
                for j, img in enumerate(case.images):
                    write_image(img, work / "inputs" / f"{case_name}_image{j}.nii.gz")
                write_image(case.truth, work / "inputs" / f"{case_name}_truth.nii.gz")
            result = _run_method(cls.name, cases[case_name], device)
            write_image(result["_pred"], work / "outputs" / f"{case_name}_{cls.name}.nii.gz")
            results.append(result)
            tick(i + 1, len(classes))
    t0 = time.perf_counter()
    render_montage(work / "montage.png", [(r["method"], cases[r["case"]], r["_pred"], r["prompts"])
                                          for r in results])
    timings["montage"] = round(time.perf_counter() - t0, 3)
    timings["total"] = round(time.perf_counter() - t_start, 3)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    report = {"synthetic": True, "seed": seed, "results": clean, "timings_s": timings}
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (work / "report.md").write_text(_markdown(report), encoding="utf-8")
    return report


def _markdown(report: dict) -> str:
    lines = ["# LesionSeg demo", "",
             f"All numbers below are measured on **synthetic phantoms** (seed {report['seed']}), not on patients.",
             "", "| method | phantom | prompt | lesions | Dice (scope) | set_image s | predict ms / prompt | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| `{r['method']}` | {r['case']} | {r['prompt']} | {r['lesions']} | {r['dice']:.3f} ({r['dice_scope']}) | "
                     f"{r['set_image_s']:.2f} | {r['predict_ms_per_prompt']:.0f} | {r.get('notes', '')} |")
    lines += ["", "Step timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report["timings_s"].items()),
              "", "![montage](montage.png)", ""]
    return "\n".join(lines)
