"""Give a ``box-unet`` model folder trained before training chose ``recist-3d``'s geometry the key-box margin and
propagation limit that ``lesionseg train box-unet`` now chooses at its end, on the model's own training cases.

    python scripts/recist3d_geometry.py MODEL --data DATASET -o OUT      # OUT: a new folder (weights copied)
    python scripts/recist3d_geometry.py MODEL --data DATASET --in-place  # rewrite MODEL's card

It calls :func:`lesionseg.methods.boxunet.train.choose_geometry` with the training cases the card lists
(``training.train_cases``) and the card's label map, and writes ``preprocessing.recist_key_margin``,
``preprocessing.recist_reach`` and ``metrics.recist3d_geometry_train_dice_3d``. The weights are not changed. This
is how the 5-fold CV models of docs/box-unet.md (trained before the choice was part of training) got theirs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="box-unet model folder")
    parser.add_argument("--data", type=Path, required=True, help="the dataset the model was trained on")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", type=Path, help="new model folder to write (must not exist)")
    where.add_argument("--in-place", action="store_true", help="rewrite the model's own card")
    args = parser.parse_args(argv)

    from lesionseg.data import Dataset
    from lesionseg.data.labels import resolve
    from lesionseg.errors import InputError
    from lesionseg.methods.boxunet.train import choose_geometry
    from lesionseg.modelfolder import CARD_NAME
    from lesionseg.registry import build, get_spec

    try:
        card_path = args.model / CARD_NAME
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if card.get("method") != "box-unet":
            raise InputError(f"{args.model} is a {card.get('method')!r} model folder, not box-unet")
        cases = card.get("training", {}).get("train_cases")
        if not cases:
            raise InputError(f"{card_path} lists no training cases (training.train_cases)")
        if args.output is not None and args.output.exists():
            raise InputError(f"{args.output} exists; choose a new folder")
        dataset = Dataset(args.data)
        label_map = resolve(get_spec("box-unet").classes, dataset.labels)
        seg = build("recist-3d", weights=args.model, device="cpu")
        t0 = time.perf_counter()
        margin, reach, scores = choose_geometry(seg, dataset.select(cases), label_map)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    card["preprocessing"].update(recist_key_margin=margin, recist_reach=reach)
    card.setdefault("metrics", {})["recist3d_geometry_train_dice_3d"] = scores
    target = args.model
    if args.output is not None:
        tmp = args.output.with_name(args.output.name + ".partial")
        shutil.copytree(args.model, tmp)
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        tmp.rename(args.output)
        target = args.output
    else:
        tmp = card_path.with_name(CARD_NAME + ".partial")
        tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        tmp.replace(card_path)
    print(f"{target}: key-box margin {margin:g}, propagation limit {reach:g} long axes "
          f"(training 3D Dice {scores.get(f'{margin:g}/{reach:g}', '-')}; {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
