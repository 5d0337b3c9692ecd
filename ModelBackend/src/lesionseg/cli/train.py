"""``lesionseg train METHOD --data DATASET -o MODEL``: train a method's model on a dataset.

Every method takes the same common flags (:class:`lesionseg.train_job.CommonTrainSettings`: ``--labels``,
``--folds``/``--fold`` or ``--val-fraction``, ``--seed``, ``--minutes``, ``--device``, ``--init``, ``--resume``,
``--checkpoint-minutes``) and its own (its :class:`lesionseg.train_job.Training` ``settings``). Everything that
can fail without training (dataset, labels, split, output folder) is checked before the first minute.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..errors import InputError

HELP = "train a method's model on a dataset"


def add_parser(sub: argparse._SubParsersAction, argv: Sequence[str] = ()) -> None:
    """``lesionseg train METHOD ...`` for every method with a training entry."""
    from ..registry import list_specs
    from ..train_job import CommonTrainSettings

    cmd = sub.add_parser("train", help=HELP, description=HELP)
    methods = cmd.add_subparsers(dest="method", metavar="METHOD", required=True)
    for spec in list_specs():
        if spec.training is None:
            continue
        p = methods.add_parser(spec.name, help=f"train {spec.name}", description=spec.summary)
        p.add_argument("--data", type=Path, required=True, help="dataset folder (dataset.json, imagesTr, labelsTr)")
        p.add_argument("-o", "--output", type=Path, required=True, help="model folder to write")
        p.add_argument("--overwrite", action="store_true", help="replace an earlier model folder of LesionSeg")
        CommonTrainSettings.add_arguments(p, "common training options")
        spec.load("training").settings.add_arguments(p, f"{spec.name} options")


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg train``; returns the exit status."""
    from ..registry import get_spec
    from ..train_job import CommonTrainSettings, make_job
    from ..training import seed_everything

    spec = get_spec(args.method)
    if spec.training is None:
        raise InputError(f"method {spec.name!r} has no training command")
    command = getattr(args, "command_line", "lesionseg " + " ".join(sys.argv[1:]))
    training = spec.load("training")
    job = make_job(spec.name, args.data, args.output, CommonTrainSettings.from_namespace(args),
                   training.settings.from_namespace(args), args.overwrite, command, training.stratify)
    job.progress = args.progress == "bar"
    seed_everything(job.common.seed)  # the networks' initial weights too, which most trainings draw before the
    folder = training.train(job)      # Trainer seeds: without it they changed from run to run whatever --seed
    print(f"model written to {folder.path}")
    return 0
