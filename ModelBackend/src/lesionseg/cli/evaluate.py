"""``lesionseg evaluate``: score a prediction against ground truth, or a method's models on a dataset.

- ``lesionseg evaluate PRED GT [--json]``: Dice, volumes and surface distances of one label image.
- ``lesionseg evaluate METHOD --data DATASET --model M [--model M2 ...] [--all-cases | --split test]
  [--labels MAP] [--baselines] [--json OUT] [--markdown OUT]``: every model on the cases its card held out
  (:mod:`lesionseg.evaluation`); with the method's options as flags.
- ``lesionseg evaluate METHOD --pool a.json --pool b.json [--json OUT] [--markdown OUT]``: pool earlier results.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from ..errors import InputError

HELP = "score a label image against ground truth, or a method's models on a dataset"


def _method_in(argv: Sequence[str]) -> str | None:
    from ..registry import method_names

    words = [a for a in argv if not a.startswith("-")]
    if "evaluate" in words:
        after = words[words.index("evaluate") + 1:]
        if after and after[0] in method_names():
            return after[0]
    return None


def add_parser(sub: argparse._SubParsersAction, argv: Sequence[str] = ()) -> None:
    from ..registry import get_spec
    from . import add_common

    ev = sub.add_parser("evaluate", help=HELP, description=__doc__.split("\n\n")[0])
    method = _method_in(argv)
    if method is None:
        ev.add_argument("prediction", type=Path, help="predicted label image")
        ev.add_argument("truth", type=Path, help="ground-truth label image on the same grid")
        ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return
    spec = get_spec(method)
    ev.add_argument("method", help="registered method name")
    ev.add_argument("--data", type=Path, help="dataset folder")
    ev.add_argument("--model", type=Path, action="append", default=[], help="model folder (repeat for each fold)")
    ev.add_argument("--all-cases", action="store_true", help="score every training case with each model")
    ev.add_argument("--split", choices=("train", "test"), default="train",
                    help="test: score the labelled test cases (imagesTs + labelsTs)")
    ev.add_argument("--labels", metavar="MAP", help="map the dataset's labels onto the method's classes")
    ev.add_argument("--baselines", action="store_true", help="also score the method's baselines (no model)")
    ev.add_argument("--seed", type=int, default=0, help="seed of prompt jitter (default 0)")
    ev.add_argument("--pool", type=Path, action="append", default=[], help="pool earlier --json results instead")
    ev.add_argument("--json", type=Path, metavar="OUT", help="write the records and summary as JSON")
    ev.add_argument("--markdown", type=Path, metavar="OUT", help="write the summary as a Markdown table")
    add_common(ev)
    spec.options.add_arguments(ev, f"{spec.name} options")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "method", None) is None:
        return _run_files(args)
    from ..evaluation import Evaluation, evaluate, pool, write_report
    from ..outputs import check_output_file
    from ..registry import get_spec

    spec = get_spec(args.method)
    for path in (args.json, args.markdown):
        if path is not None:
            check_output_file(path, args.overwrite, args.pool)
    if args.pool:
        if args.data or args.model:
            raise InputError("--pool sums up earlier results; it takes no --data or --model")
        result = pool(args.pool)
    else:
        if args.data is None:
            raise InputError("give --data DATASET (or --pool earlier results)")
        options = spec.options.from_namespace(args)
        result = evaluate(args.method, args.data, args.model, all_cases=args.all_cases, split=args.split,
                          labels=args.labels, device=args.device,
                          options=None if not spec.options.describe() else options,
                          baselines=args.baselines, seed=args.seed)
    write_report(result, args.json, args.markdown, args.overwrite)
    cls = spec.load("evaluation") if spec.evaluation else Evaluation
    print(cls.markdown(result), end="")
    return 0


def _run_files(args: argparse.Namespace) -> int:
    from ..image import check_same_grid
    from ..io import read_image
    from ..metrics import evaluate

    prediction, truth = read_image(args.prediction), read_image(args.truth)
    check_same_grid(prediction, truth, f"the prediction {args.prediction}", f"the ground truth {args.truth}")
    result = evaluate(prediction, truth)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            if value is None:
                print(f"{key:24s} n/a")
            elif not isinstance(value, (list, dict)):
                print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
    return 0
