"""Evaluate ``small-lesion-il`` variants like the paper's Table 1 (arXiv 2207.14700), by cross-validation.

``python -m lesionseg.methods.smalllesion.evaluate --data DIR --model seg=M0,M1,M2 --model seg+il=N0,N1,N2
[--pp seg] [--json F] [--markdown F] [--overwrite]``

Each model folder's card names the cases it held out (``training.held_out_cases``, written by ``lesionseg
train small-lesion-il --folds K --fold F``); each model segments only those, and the folds' models of one
variant (``NAME=M0,M1,...``) pool their held-out cases, so every case is scored by a model that never saw
it. ``--pp NAME`` adds the ``seg+pp`` row: the ``seg`` models of ``NAME`` with their own prior as
post-processing (``P x L(HU)``), from the same network pass. Metrics, on the CT grid of each case:

* **global Dice**: all cases' voxels pooled into one volume (``2 sum|P n G| / (sum|P| + sum|G|)``);
* **per-case Dice**: the mean over cases;
* **per-tumour Dice**: for each ground-truth tumour (26-connected component), Dice of the prediction and that
  tumour inside the tumour's bounding box padded by :data:`PAD_VOXELS` voxels per side, where voxels of other
  tumours in the box are left out of both masks; the mean over tumours, and over tumours >= 125 mm^3;
* paired t-tests (``scipy.stats.ttest_rel``) of the per-case and per-tumour Dice of each row against ``seg``.

``--all-cases`` scores every case of ``--data`` with one model per row instead, for a test set no model
trained on (the lesions inserted into the real CT, ``data.py --inserted``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ...errors import InputError, LesionSegError, OutputExistsError
from ...image import Image
from ...io import atomic_write_bytes_via, read_image
from ...metrics import lesion_components
from ...modelfolder import load_model_folder

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


def parse_models(specs: Sequence[str]) -> dict[str, list[Path]]:
    """``["seg=M0,M1", "seg+il=N0"]`` -> ``{"seg": [M0, M1], "seg+il": [N0]}`` (InputError for a bad spec or a
    name given twice)."""
    models: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, dirs = spec.partition("=")
        if not sep or not name or not dirs or name in models:
            raise InputError(f"--model takes NAME=DIR[,DIR...] once per name, got {spec!r}")
        models[name] = [Path(d) for d in dirs.split(",") if d]
    return models


def score_models(data: Path, models: dict[str, list[Path]], pp: Optional[str] = None,
                 device: str = "cpu", all_cases: bool = False) -> list[dict]:
    """One record per (row, case): ``variant`` (the row name), ``case``, ``model``, :func:`score_case`'s fields
    and ``seconds``. ``pp`` names the row whose ``seg`` models also give the ``seg+pp`` row. ``all_cases``:
    each row's single model scores every case of ``data`` (a test set none of them trained on), not the cases
    its card held out."""
    from ...registry import resolve_device
    from ...resample import resample_to_grid
    from .data import list_cases
    from .segmenter import SmallLesionSegmenter

    cases = {c.name: c for c in list_cases(data)}
    if pp is not None and pp not in models:
        raise InputError(f"--pp {pp}: no --model {pp}=... was given")
    if all_cases:
        several = [name for name, dirs in models.items() if len(dirs) != 1]
        if several:
            raise InputError(f"--all-cases scores every case with one model per row; rows {several} name "
                             "several (or none)")
        if not cases:
            raise InputError(f"{data} holds no case")
    records: list[dict] = []
    seen: dict[str, set] = {}
    for name, dirs in models.items():
        for model_dir in dirs:
            folder = load_model_folder(model_dir, METHOD)
            card = folder.card
            if all_cases:
                held = sorted(cases)
            else:
                held = folder.require("training", "the training record").get("held_out_cases") or []
            if pp == name and card.get("variant") != "seg":
                raise InputError(f"--pp {pp}: {model_dir} is a {card.get('variant')} model, not seg")
            missing = [c for c in held if c not in cases]
            twice = seen.setdefault(name, set()) & set(held)
            if missing or twice:
                raise InputError(f"{model_dir}: held-out cases {missing or sorted(twice)} are "
                                 f"{'not in ' + str(data) if missing else 'held out by another model of ' + name}")
            seen[name] |= set(held)
            if not held:
                log.warning("%s holds out no cases; it is not scored", model_dir)
            seg = SmallLesionSegmenter(folder, resolve_device(device))
            for case_name in held:
                t0 = time.perf_counter()
                seg.set_image(read_image(cases[case_name].ct))
                truth = read_image(cases[case_name].label)
                rows = [(name, seg.predict())]
                if pp == name:
                    seg.set_variant("seg+pp")
                    rows.append(("seg+pp", seg.predict()))
                    seg.set_variant("seg")
                seconds = round(time.perf_counter() - t0, 2)
                for row, pred in rows:
                    if not truth.same_grid(pred):
                        truth = resample_to_grid(truth, pred, "nearest", 0)
                    records.append({"variant": row, "case": case_name, "model": str(model_dir),
                                    **score_case(pred, truth), "seconds": seconds})
                    log.info("%s %s: Dice %.3f, %d tumours", row, case_name, records[-1]["dice"],
                             len(records[-1]["tumours"]))
    return records


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


def summarise(records: list[dict], baseline: str = BASELINE) -> dict:
    """Per row (in record order): ``global_dice`` (percent), ``per_case``, ``per_tumour`` and
    ``per_tumour_large`` (:func:`_stats`), ``p_per_case`` and ``p_per_tumour`` against ``baseline``."""
    rows: dict[str, list[dict]] = {}
    for record in records:
        rows.setdefault(record["variant"], []).append(record)

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


def markdown(summary: dict) -> str:
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


def _check_outputs(paths: Sequence[Optional[Path]], overwrite: bool) -> None:
    for path in (p for p in paths if p is not None):
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
        if not path.resolve().parent.is_dir():
            raise InputError(f"output folder {path.parent} does not exist")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="case folder (see lesionseg.methods.smalllesion.data)")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR[,DIR...]",
                        help="a row of the table and its fold models (repeat per variant)")
    parser.add_argument("--pp", metavar="NAME", help="add the seg+pp row from the seg models of row NAME")
    parser.add_argument("--all-cases", action="store_true",
                        help="score every case of --data with one model per row (a test set no model trained on)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", type=Path, help="write records and summary here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --json / --markdown files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        _check_outputs([args.json, args.markdown], args.overwrite)
        records = score_models(args.data, parse_models(args.model), args.pp, args.device,
                               args.all_cases)
        summary = summarise(records)
        table = markdown(summary)
        print(table)
        if args.json is not None:
            text = json.dumps({"records": records, "summary": summary}, indent=1) + "\n"
            atomic_write_bytes_via(args.json, lambda tmp: tmp.write_text(text, encoding="utf-8"), args.overwrite)
        if args.markdown is not None:
            atomic_write_bytes_via(args.markdown, lambda tmp: tmp.write_text(table, encoding="utf-8"), args.overwrite)
    except LesionSegError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
