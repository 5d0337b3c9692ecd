"""Evaluate ``autopet-l2snet`` like autoPET and re-run the paper's ablation (2D only, 3D only, L2SNet,
L2SNet + adaptive threshold).

``python -m lesionseg.methods.autopet.evaluate --model MODEL [--phantoms 10] [--data DIR] [--sts DIR]
[--wholebody DIR] --json out.json --markdown out.md``

* **held-out phantoms**: ``--phantoms N`` fresh synthetic cases from :func:`wholebody_cohort` with
  ``--phantom-seed`` (default 1000, so none is a training case), and/or the cases of ``--data DIR`` that the
  model's card lists as held out;
* **real PET/CT crops**: ``--sts DIR`` = ``../shared/data/ibsi-sts-petct`` (``STS_*/PET_image`` in SUV,
  ``CT_image`` in HU, ``PET_mask`` the expert tumour on the PET grid);
* **the localisation phase on a real whole-body PET**: ``--wholebody DIR`` =
  ``../shared/data/sts001-wholebody-fdgpet`` (``PET_SUVbw.nii.gz``, ``mask_GTV_Mass.nii.gz``). That folder has
  no CT, and the 2D phase needs only the PET (:meth:`L2SNetSegmenter.localise`), so only ``P_loc > 0.5`` is
  scored there: its false-positive volume outside the tumour.

Metrics (:mod:`lesionseg.metrics`, autoPET definitions, 18-connectivity, on the PET grid): Dice; FPV, the
volume of predicted lesions that touch no true lesion; FNV, the volume of true lesions that no predicted voxel
touches. As in autoPET, the mean Dice and mean FNV are over cases with lesions, the mean FPV over all cases.
Each case is segmented once; the four rows are thresholds of the same cached maps.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ...errors import InputError
from ...image import Image
from ...io import read_image
from ...metrics import dice, false_negative_volume, false_positive_volume, volume_ml
from ...modelfolder import load_model_folder
from ...registry import resolve_device
from .segmenter import NETWORK_FILES, L2SNetSegmenter

log = logging.getLogger(__name__)
ROWS = {"2D only": ("2d", False), "3D only": ("3d", False), "L2SNet": ("l2snet", False),
        "L2SNet + adaptive threshold": ("l2snet", True)}
"""Ablation rows: name -> (mode, adaptive)."""


def available_rows(seg: L2SNetSegmenter) -> dict[str, tuple[str, bool]]:
    """The rows of :data:`ROWS` that ``seg``'s networks can produce (a loc-only model gives "2D only")."""
    needs = {"2d": {"loc"}, "3d": {"seg"} if "plain" not in seg.nets else {"plain"}, "l2snet": {"seg", "loc"}}
    return {row: spec for row, spec in ROWS.items() if needs[spec[0]] <= set(seg.nets)}


def phantom_cases(n: int, seed: int = 1000) -> Iterator[tuple[str, Image, Image, Image]]:
    """``(name, pet, ct, label)`` of ``n`` synthetic whole-body cases (half with lesions) at the default grid."""
    from ...phantoms.wholebody import wholebody_cohort, wholebody_petct

    for spec in wholebody_cohort(n, seed):
        pet, ct, label, _ = wholebody_petct(seed=spec["seed"], with_lesions=spec["with_lesions"])
        yield f"phantom_{spec['case']}", pet, ct, label


def folder_cases(data: Path, names: Sequence[str]) -> Iterator[tuple[str, Image, Image, Image]]:
    """``(name, pet, ct, label)`` of the named cases of a training data folder."""
    from .data import list_cases

    for case in list_cases(data):
        if case.name in names:
            yield case.name, read_image(case.pet), read_image(case.ct), read_image(case.label)


def sts_cases(folder: Path, names: Optional[Sequence[str]] = None) -> Iterator[tuple[str, Image, Image, Image]]:
    """``(name, pet, ct, mask)`` of the IBSI soft-tissue-sarcoma crops (``STS_*`` sub-folders; only ``names``
    when given, e.g. the cases a fine-tuned model did not see)."""
    cases = sorted(p for p in Path(folder).glob("STS_*") if p.is_dir())
    if names:
        missing = sorted(set(names) - {c.name for c in cases})
        if missing:
            raise InputError(f"{folder}: no case {', '.join(missing)}")
        cases = [c for c in cases if c.name in names]
    return ((case.name, read_image(case / "PET_image.nii.gz"), read_image(case / "CT_image.nii.gz"),
             read_image(case / "PET_mask.nii.gz")) for case in cases)


def score(pred: Image, truth: Image) -> dict:
    """Dice, FPV and FNV (mL) and both volumes of one prediction on the truth's grid."""
    return {"dice": round(float(dice(pred, truth)), 4), "fpv_ml": round(false_positive_volume(pred, truth), 3),
            "fnv_ml": round(false_negative_volume(pred, truth), 3), "pred_ml": round(volume_ml(pred), 3),
            "truth_ml": round(volume_ml(truth), 3)}


def score_cases(seg: L2SNetSegmenter, cases: Iterator[tuple[str, Image, Image, Image]], source: str) -> list[dict]:
    """One record per case: the ablation rows' scores (:func:`available_rows`) and the seconds ``set_image`` took."""
    records = []
    rows_wanted = available_rows(seg)
    seg.set_mode(*next(iter(rows_wanted.values())))
    for name, pet, ct, truth in cases:
        t0 = time.perf_counter()
        seg.set_image(pet, ct)
        seconds = time.perf_counter() - t0
        truth = truth.with_array((truth.array > 0).astype(np.uint8))
        rows = {row: score(seg.label(mode, adaptive), truth) for row, (mode, adaptive) in rows_wanted.items()}
        records.append({"case": name, "source": source, "positive": bool(truth.array.any()), "rows": rows,
                        "set_image_s": round(seconds, 2)})
        log.info("%s: %s (%.1f s)", name, ", ".join(f"{r} Dice {v['dice']:.3f}" for r, v in rows.items()), seconds)
    return records


def summarise(records: list[dict]) -> dict:
    """Per source and row: mean Dice and FNV over positive cases, mean FPV over all cases, case counts."""
    out: dict = {}
    for source in sorted({r["source"] for r in records}):
        rs = [r for r in records if r["source"] == source]
        pos = [r for r in rs if r["positive"]]
        out[source] = {"cases": len(rs), "positive_cases": len(pos), "rows": {}}
        for row in rs[0]["rows"] if rs else ():
            out[source]["rows"][row] = {
                "dice": _mean(r["rows"][row]["dice"] for r in pos),
                "fpv_ml": _mean(r["rows"][row]["fpv_ml"] for r in rs),
                "fnv_ml": _mean(r["rows"][row]["fnv_ml"] for r in pos)}
        dices = {row: v["dice"] for row, v in out[source]["rows"].items() if v["dice"] is not None}
        out[source]["order_by_dice"] = sorted(dices, key=dices.get)
    return out


def _mean(values) -> Optional[float]:
    vals = list(values)
    return round(float(np.mean(vals)), 4) if vals else None


def wholebody_localisation(seg: L2SNetSegmenter, folder: Path) -> dict:
    """The localisation phase (``P_loc > 0.5``) on the STS_001 whole-body PET against its GTV_Mass mask:
    autoPET FPV, the predicted volume outside the mask, Dice, FNV (mL) and seconds."""
    pet, mask = read_image(Path(folder) / "PET_SUVbw.nii.gz"), read_image(Path(folder) / "mask_GTV_Mass.nii.gz")
    t0 = time.perf_counter()
    cue = seg.localise(pet)
    seconds = time.perf_counter() - t0
    pred = cue.with_array((cue.array > seg.prep.cue_threshold).astype(np.uint8))
    truth = mask.with_array((mask.array > 0).astype(np.uint8))
    outside = int(np.count_nonzero((pred.array > 0) & (truth.array == 0))) * truth.voxel_volume_ml
    return {"case": "STS_001 whole-body PET", **score(pred, truth), "outside_mask_ml": round(outside, 3),
            "seconds": round(seconds, 2)}


def markdown(summary: dict, wholebody: Optional[dict], plain_net: bool = True) -> str:
    """The ablation tables (one per source) and the whole-body localisation line, as Markdown. ``plain_net``:
    whether "3D only" had its own network trained without the cue (else it is the cue-weighted net at 0.5)."""
    lines = [] if plain_net else ["\"3D only\" uses the cue-weighted 3D net at threshold 0.5 (the model has no "
                                  f"{NETWORK_FILES['plain']}), so it equals \"L2SNet\".", ""]
    for source, s in summary.items():
        lines += [f"**{source}** ({s['cases']} cases, {s['positive_cases']} with lesions)", "",
                  "| row | Dice | FPV mL | FNV mL |", "|---|---|---|---|"]
        for row, v in s["rows"].items():
            lines.append(f"| {row} | {_fmt(v['dice'])} | {_fmt(v['fpv_ml'])} | {_fmt(v['fnv_ml'])} |")
        lines += ["", f"Rows by Dice, lowest first: {_order_text(s)}.", ""]
    if wholebody is not None:
        lines += [f"**2D localisation on the real whole-body PET of STS_001** (no CT in that folder, so only the "
                  f"PET-only localisation phase): FPV {wholebody['fpv_ml']:.1f} mL, "
                  f"{wholebody['outside_mask_ml']:.1f} mL predicted outside the tumour, Dice {wholebody['dice']:.3f}, "
                  f"FNV {wholebody['fnv_ml']:.1f} mL "
                  f"({wholebody['seconds']:.1f} s).", ""]
    lines.append("Paper, for comparison (autoPET-II preliminary test, 5 real cases, L2SNet + adaptive threshold): "
                 "Dice 0.414, FPV 1.611 mL, FNV 1.874 mL.")
    return "\n".join(lines) + "\n"


def _order_text(source_summary: dict) -> str:
    """``order_by_dice`` joined by " < ", or " = " between rows whose mean Dice agree to 3 decimals."""
    order, rows = source_summary["order_by_dice"], source_summary["rows"]
    text = order[0] if order else "n/a"
    for before, row in zip(order, order[1:]):
        same = round(rows[before]["dice"], 3) == round(rows[row]["dice"], 3)
        text += (" = " if same else " < ") + row
    return text


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="autopet-l2snet model folder")
    parser.add_argument("--phantoms", type=int, default=10, help="fresh synthetic cases (0: none)")
    parser.add_argument("--phantom-seed", type=int, default=1000)
    parser.add_argument("--data", type=Path, help="training data folder: score the cases the card holds out")
    parser.add_argument("--sts", type=Path, help="ibsi-sts-petct folder (real PET/CT crops)")
    parser.add_argument("--sts-names", nargs="+", metavar="STS_00N",
                        help="score only these crops (e.g. those a fine-tuned model did not see)")
    parser.add_argument("--wholebody", type=Path, help="sts001-wholebody-fdgpet folder (PET-only localisation)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write records and summary here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seg = L2SNetSegmenter(load_model_folder(args.model, "autopet-l2snet"), resolve_device(args.device))
    sts = sts_cases(args.sts, args.sts_names) if args.sts else None  # a missing name fails before any work
    records = []
    if args.phantoms:
        records += score_cases(seg, phantom_cases(args.phantoms, args.phantom_seed), "held-out phantoms")
    if args.data:
        held = seg.model.require("training", "the training record").get("held_out_cases") or []
        records += score_cases(seg, folder_cases(args.data, held), "held-out cases of --data")
    if args.sts:
        records += score_cases(seg, sts, "IBSI STS PET/CT crops (real)")
    wholebody = wholebody_localisation(seg, args.wholebody) if args.wholebody else None
    summary = summarise(records)
    text = markdown(summary, wholebody, "plain" in seg.nets)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "records": records, "summary": summary,
                                         "wholebody_localisation": wholebody}, indent=1) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
