"""scripts/autopet_combine.py: joining the networks of parallel ``autopet-l2snet`` runs keeps the card true, in
particular the PET-only switch ``ct_dropout`` (the lowest of the 3D nets' own). Tiny random networks: plumbing
only, no model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lesionseg.errors import InputError
from lesionseg.methods.autopet.network import loc_network, seg_network
from lesionseg.methods.autopet.pipeline import L2SPreprocessing
from lesionseg.modelfolder import load_model_folder, save_model_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import autopet_combine  # noqa: E402

TINY = dict(loc_size=(16, 16), seg_patch=(8, 8, 8))
SPLIT = {"data": "d", "train_cases": ["a", "b"], "held_out_cases": ["c"]}


def _folder(path: Path, nets: dict[str, float], card_dropout: float, **prep) -> Path:
    """A model folder with loc.pt and the 3D nets ``{"seg"|"plain": ct_dropout they trained with}``."""
    torch.manual_seed(len(nets))
    names = {"seg": "seg.pt", "plain": "seg_plain.pt"}
    loc = loc_network([4, 8], [4], 1)
    specs, states = {"loc.pt": {"class": "L2SLocNet", "kwargs": loc.config}}, {"loc.pt": loc.state_dict()}
    stages = {"loc": {"steps": 1}}
    for key, dropout in nets.items():
        net = seg_network([4, 8])
        specs[names[key]], states[names[key]] = {"class": "UNet", "kwargs": net.config}, net.state_dict()
        stages[key] = {"steps": 1, "ct_dropout": dropout}
    card = {"method": "autopet-l2snet", "networks": specs,
            "preprocessing": L2SPreprocessing(**{**TINY, **prep}, ct_dropout=card_dropout).to_dict(),
            "training": {**SPLIT, "stages": stages, "note": "random tiny networks; not a model"}}
    return save_model_folder(path, card, states).path


def test_dropout_is_the_lowest_of_the_joined_nets(tmp_path):
    base = _folder(tmp_path / "fold", {"seg": 0.5}, 0.5)
    plain = _folder(tmp_path / "plain", {"seg": 0.0, "plain": 0.5}, 0.0)  # kept a seg net without dropout
    card = autopet_combine.combine(base, {"plain": plain}, tmp_path / "both")
    assert set(card["files"]) == {"loc.pt", "seg.pt", "seg_plain.pt"}
    assert card["preprocessing"]["ct_dropout"] == 0.5  # both nets of the joined model saw blank CTs
    saved = load_model_folder(tmp_path / "both", "autopet-l2snet").card
    assert saved["training"]["stages"]["plain"]["ct_dropout"] == 0.5 and saved["files"] == card["files"]
    old = _folder(tmp_path / "old", {"seg": 0.0, "plain": 0.0}, 0.0)
    card = autopet_combine.combine(base, {"plain": old}, tmp_path / "mixed")
    assert card["preprocessing"]["ct_dropout"] == 0.0  # a plain net that never saw a blank CT: no PET-only


def test_other_preprocessing_differences_and_existing_output_are_refused(tmp_path):
    base = _folder(tmp_path / "fold", {"seg": 0.5}, 0.5)
    other = _folder(tmp_path / "plain", {"seg": 0.5, "plain": 0.5}, 0.5, spacing_mm=8.0)
    with pytest.raises(InputError, match="pre-processing differs"):
        autopet_combine.combine(base, {"plain": other}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="exists"):
        autopet_combine.combine(base, {"plain": other}, tmp_path / "taken")
    assert json.loads((base / "model.json").read_text())["preprocessing"]["ct_dropout"] == 0.5
