"""Combine networks of several ``autopet-l2snet`` model folders into one (networks trained in parallel runs).

    python scripts/autopet_combine.py --base MODEL [--seg MODEL] [--plain MODEL] [--loc MODEL] -o OUT

The three networks of L2SNet (``loc.pt``, ``seg.pt``, ``seg_plain.pt``) can be trained in separate runs of
``lesionseg train autopet-l2snet --stage ...`` on two CPU cores at once; this script takes each network (its
weights, architecture and training summary) from the folder named for it and everything else from
``--base``. All folders must have the same pre-processing (``ct_dropout`` aside: the combined card takes the
lowest of its 3D nets' own, so PET-only mode runs only when every 3D net saw blank CTs in training) and the same
training data and held-out cases (checked), so the combined card stays true. Weights are copied bit for bit.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from lesionseg.errors import InputError
from lesionseg.methods.autopet.segmenter import NETWORK_FILES
from lesionseg.methods.autopet.train import model_ct_dropout
from lesionseg.modelfolder import load_model_folder, sha256_of

SAME = ("data", "held_out_cases", "train_cases")


def _without_dropout(preprocessing: dict) -> dict:
    return {k: v for k, v in preprocessing.items() if k != "ct_dropout"}


def combine(base: Path, sources: dict[str, Path], output: Path) -> dict:
    """Write ``output`` = ``base`` with the networks ``{key: folder}`` (keys ``loc``, ``seg``, ``plain``)."""
    if output.exists():
        raise InputError(f"{output} exists")
    card = json.loads(json.dumps(load_model_folder(base, "autopet-l2snet").card))
    folders = {key: load_model_folder(path, "autopet-l2snet") for key, path in sources.items()}
    for key, folder in folders.items():
        if _without_dropout(folder.card["preprocessing"]) != _without_dropout(card["preprocessing"]):
            raise InputError(f"--{key} {folder.path}: pre-processing differs from --base")
        for field in SAME:
            if folder.card["training"].get(field) != card["training"].get(field):
                raise InputError(f"--{key} {folder.path}: training {field} differs from --base")
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = dict(card["files"])
    for name in card["files"]:
        shutil.copy2(Path(base) / name, tmp / name)
    commands = {"base": card["training"].get("command")}
    for key, folder in folders.items():
        name = NETWORK_FILES[key]
        shutil.copy2(folder.path / name, tmp / name)
        files[name] = sha256_of(tmp / name)
        card["networks"][name] = folder.card["networks"][name]
        card["training"]["stages"][key] = {**folder.card["training"]["stages"][key],
                                           "command": folder.card["training"].get("command")}
        commands[key] = folder.card["training"].get("command")
    card["files"] = files
    card["preprocessing"]["ct_dropout"] = model_ct_dropout(card["files"], card["training"].get("stages", {}),
                                                           card["preprocessing"].get("ct_dropout", 0.0))
    card["training"]["combined_from"] = {"base": str(base), **{k: str(v) for k, v in sources.items()},
                                         "command": "python scripts/autopet_combine.py " + " ".join(sys.argv[1:])}
    (tmp / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    tmp.rename(output)
    return card


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True)
    for key in ("loc", "seg", "plain"):
        parser.add_argument(f"--{key}", type=Path, help=f"folder whose {NETWORK_FILES[key]} to take")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    sources = {k: getattr(args, k) for k in ("loc", "seg", "plain") if getattr(args, k)}
    card = combine(args.base, sources, args.output)
    print(f"{args.output}: {', '.join(sorted(card['files']))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
