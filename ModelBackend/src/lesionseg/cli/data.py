"""``lesionseg data``: datasets in the one convention (:mod:`lesionseg.data`).

- ``lesionseg data import KIND SRC -o DatasetNNN_Name``: translate a public layout (autopet, msd, nnunet,
  ibsi-sts, lidc-vois, deeplesion-3d, deeplesion) into the convention.
- ``lesionseg data synthetic METHOD -o DatasetNNN_Name [--cases N --seed S ...]``: a method's seeded synthetic
  dataset (phantoms), marked ``"synthetic": true``.
- ``lesionseg data merge A[=GROUP] B[=GROUP] ... -o DatasetNNN_Name [--folds K]``: one dataset of lesions of
  several kinds, each case's kind in ``groups`` (:mod:`lesionseg.data.merge`).
- ``lesionseg data check DATASET [--no-read]``: list channels, labels, cases and patients and check every case
  (missing channel, grids, label values); one error naming the first broken case.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..errors import InputError

HELP = "import, generate or check datasets (nnU-Net v2 raw layout)"


def add_parser(sub: argparse._SubParsersAction, argv: Sequence[str] = ()) -> None:
    from ..data.importers import IMPORTERS
    from ..registry import list_specs

    cmd = sub.add_parser("data", help=HELP, description=__doc__.split("\n\n")[0])
    actions = cmd.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser("import", help="translate a public dataset layout into the convention")
    kinds = imp.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, importer in IMPORTERS.items():
        p = kinds.add_parser(name, help=importer.help, description=importer.help)
        p.add_argument("source", type=Path, help="the folder to import from (never modified)")
        p.add_argument("-o", "--output", type=Path, required=True, help="dataset folder to write")
        p.add_argument("--overwrite", action="store_true", help="replace an earlier dataset written by LesionSeg")
        for option, (kind, default, text) in importer.options.items():
            flag = "--" + option.replace("_", "-")
            if kind is bool:
                p.add_argument(flag, dest=option, action="store_true", help=text)
            elif isinstance(default, (list, tuple)) or kind in (list, tuple):
                p.add_argument(flag, dest=option, nargs="+", default=default, help=text)
            else:
                p.add_argument(flag, dest=option, type=kind, default=default, help=text)
    syn = actions.add_parser("synthetic", help="write a method's seeded synthetic dataset")
    methods = syn.add_subparsers(dest="method", metavar="METHOD", required=True)
    for spec in list_specs():
        if spec.synthetic is None:
            continue
        generator = spec.load("synthetic")
        p = methods.add_parser(spec.name, help=generator.help, description=generator.help)
        p.add_argument("-o", "--output", type=Path, required=True, help="dataset folder to write")
        p.add_argument("--overwrite", action="store_true", help="replace an earlier dataset written by LesionSeg")
        generator.settings.add_arguments(p, f"{spec.name} generator options")
    merge = actions.add_parser("merge", help="one dataset from several (lesions of several kinds)")
    merge.add_argument("sources", nargs="+", metavar="DATASET[=GROUP]",
                       help="dataset folders, each optionally with its lesion kind (default: the folder's name)")
    merge.add_argument("-o", "--output", type=Path, required=True, help="dataset folder to write")
    merge.add_argument("--folds", type=int, default=0, help="also write splits.json: K patient-wise folds dealt "
                                                            "within each group")
    merge.add_argument("--seed", type=int, default=0, help="seed of the folds")
    merge.add_argument("--overwrite", action="store_true", help="replace an earlier dataset written by LesionSeg")
    check = actions.add_parser("check", help="list and check a dataset")
    check.add_argument("dataset", type=Path)
    check.add_argument("--no-read", dest="read", action="store_false",
                       help="check the files only, without reading the images")


def run(args: argparse.Namespace) -> int:
    if args.action == "import":
        from ..data.importers import IMPORTERS, import_dataset

        from .. import progress

        options = {name: getattr(args, name) for name in IMPORTERS[args.kind].options}
        with progress.task(f"importing {args.kind}") as tick:
            out = import_dataset(args.kind, args.source, args.output, overwrite=args.overwrite, progress=tick,
                                 **options)
        return _summary(out, read=False)
    if args.action == "synthetic":
        from ..registry import get_spec

        generator = get_spec(args.method).load("synthetic")
        out = generator.write(args.output, generator.settings.from_namespace(args), args.overwrite)
        return _summary(out, read=False)
    if args.action == "merge":
        from ..data.merge import merge_datasets, parse_source

        from .. import progress

        with progress.task("merging datasets") as tick:
            out = merge_datasets([parse_source(s) for s in args.sources], args.output, args.folds, args.seed,
                                 args.overwrite, tick, "lesionseg " + " ".join(sys.argv[1:]))
        return _summary(out, read=False)
    if args.action == "check":
        return _summary(args.dataset, read=args.read, check=True)
    raise InputError(f"unknown data action {args.action!r}")


def _summary(folder: Path, read: bool, check: bool = False) -> int:
    from .. import progress
    from ..data import Dataset

    dataset = Dataset(folder)
    train, test = dataset.cases("train"), dataset.cases("test")
    if check:
        cases = train + test
        with progress.task("checking cases", total=len(cases)) as tick:
            for i, case in enumerate(cases):
                dataset.check([case], read=read)
                tick(i + 1, len(cases))
    patients = {c.patient for c in train + test}
    print(f"{folder}: {dataset.name}; channels {', '.join(dataset.channel_names)}; labels "
          + ", ".join(f"{k}={v}" for k, v in dataset.labels.items())
          + f"; {len(train)} training and {len(test)} test cases of {len(patients)} patients"
          + ("; synthetic" if dataset.synthetic else "") + ("; checked" if check else ""))
    sys.stdout.flush()
    return 0
