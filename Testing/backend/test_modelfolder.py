from __future__ import annotations

import json

import pytest
import torch

from lesionseg import WeightsError
from lesionseg.modelfolder import find_model_folder, load_model_folder, save_model_folder


def _save(folder, method="tsfcn"):
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}
    return save_model_folder(folder, {"method": method, "network": {"class": "X", "kwargs": {}}},
                             {"weights.pt": state})


def test_save_load_round_trip_fp16(tmp_path):
    mf = _save(tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert set(card["files"]) == {"weights.pt"} and len(card["files"]["weights.pt"]) == 64
    state = load_model_folder(tmp_path / "m", "tsfcn").load_state_dict()
    assert state["w"].dtype == torch.float32 and state["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert state["n"].item() == 3
    raw = torch.load(mf.path / "weights.pt", weights_only=True)
    assert raw["w"].dtype == torch.float16


def test_sha256_mismatch_is_clear(tmp_path):
    mf = _save(tmp_path / "m")
    with open(mf.path / "weights.pt", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(WeightsError, match="sha256"):
        load_model_folder(mf.path).load_state_dict()


def test_wrong_method_missing_card_and_no_overwrite(tmp_path):
    _save(tmp_path / "m", method="s4c")
    with pytest.raises(WeightsError, match="not 'tsfcn'"):
        load_model_folder(tmp_path / "m", "tsfcn")
    with pytest.raises(WeightsError, match="not a model folder"):
        load_model_folder(tmp_path)
    with pytest.raises(WeightsError, match="already holds"):
        _save(tmp_path / "m")


def test_search_order(tmp_path, monkeypatch):
    _save(tmp_path / "env" / "tsfcn")
    _save(tmp_path / "explicit")
    monkeypatch.setenv("LESIONSEG_WEIGHTS", str(tmp_path / "env"))
    assert find_model_folder("tsfcn", tmp_path / "explicit").path == tmp_path / "explicit"
    assert find_model_folder("tsfcn").path == tmp_path / "env" / "tsfcn"
    monkeypatch.setenv("LESIONSEG_WEIGHTS", str(tmp_path / "nowhere"))
    assert find_model_folder("no-such-method") is None
