"""PET-only ``autopet-l2snet`` on the real STS_001 whole-body FDG-PET (no CT) against its tumour mask.

    python scripts/autopet_wholebody.py MODEL [--folder F] [--json OUT] [--device cpu|cuda|auto]

Runs :func:`lesionseg.methods.autopet.evaluate.wholebody_pet_only` (the segmenter's default mode, PET only) and
prints tumour found, Dice, autoPET FPV / FNV (18-connectivity), the predicted volume outside the mask, the predicted
volume and the seconds; ``--json OUT`` also writes them (never over an existing file). ``MODEL`` must be trained for
PET-only input (card ``preprocessing.ct_dropout`` > 0); another model is refused with the backend's message.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

DEFAULT_FOLDER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sts001-wholebody-fdgpet"
"""``../shared/data/sts001-wholebody-fdgpet`` beside the repository."""
LINES = (("found", "tumour found"), ("dice", "Dice"), ("fpv_ml", "FPV (mL)"), ("fnv_ml", "FNV (mL)"),
         ("outside_mask_ml", "predicted outside the mask (mL)"), ("pred_ml", "predicted volume (mL)"),
         ("truth_ml", "tumour volume (mL)"), ("seconds", "seconds"))


def run(model: Path, folder: Path, json_out: Path | None = None, device: str = "auto") -> dict:
    """The result dict of :func:`wholebody_pet_only` (plus ``model``), written to ``json_out`` when given.

    Raises:
        InputError: ``json_out`` exists (checked before any work), the folder lacks its files.
        WeightsError: a model not trained for PET-only input.
    """
    import lesionseg
    from lesionseg.errors import InputError
    from lesionseg.methods.autopet.evaluate import WHOLEBODY_MASK, WHOLEBODY_PET, wholebody_pet_only

    if json_out is not None and json_out.exists():
        raise InputError(f"{json_out} exists; give another --json file (this script never overwrites)")
    for name in (WHOLEBODY_PET, WHOLEBODY_MASK):
        if not (folder / name).is_file():
            raise InputError(f"{folder / name} is missing; give the sts001-wholebody-fdgpet folder with --folder")
    seg = lesionseg.build("autopet-l2snet", weights=model, device=device)
    result = {"model": str(model), **wholebody_pet_only(seg, folder)}
    if json_out is not None:
        with open(json_out, "x", encoding="utf-8") as fh:  # "x": fails rather than replace a file made meanwhile
            fh.write(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    from lesionseg.errors import LesionSegError

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="autopet-l2snet model folder trained for PET-only input")
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help=f"default: {DEFAULT_FOLDER}")
    parser.add_argument("--json", type=Path, help="also write the figures here (refused when it exists)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(args.model, args.folder, args.json, args.device)
    except (LesionSegError, FileExistsError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(f"{result['case']}, model {result['model']}, mode {result['mode']}"
          f"{' + adaptive threshold' if result['adaptive'] and result['mode'] == 'l2snet' else ''}:")
    for key, text in LINES:
        print(f"  {text}: {result[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
