"""One ModelCard for every method; the shipped (old) cards load (issue #16)."""
from __future__ import annotations

import json

import pytest

from lesionseg.card import ModelCard
from lesionseg.errors import WeightsError
from lesionseg.modelfolder import PACKAGE_WEIGHTS


@pytest.mark.parametrize("folder", sorted(p.name for p in PACKAGE_WEIGHTS.iterdir() if (p / "model.json").is_file()))
def test_shipped_cards_load(folder):
    data = json.loads((PACKAGE_WEIGHTS / folder / "model.json").read_text())
    card = ModelCard.from_dict(data)
    assert card.method == folder and card.networks and set(card.files) == set(data["files"])
    for spec in card.networks.values():
        assert "class" in spec and isinstance(spec.get("kwargs"), dict)
    again = ModelCard.from_dict(card.to_dict())
    assert again == card and again.to_dict()["card_version"] == 2
    # what the model never saw: its held-out cases, or (a model trained on every case) the cross-validation of its recipe
    assert card.held_out_cases or card.held_out_patients or data["metrics"]["cross_validation"]["protocol"]


def test_old_single_network_and_held_out_records():
    card = ModelCard.from_dict({"method": "x", "network": {"class": "N", "kwargs": {}}, "files": {"w.pt": "ab"},
                                "training": {"heldout_patients": ["P1"]}, "rule": {"a": 1}})
    assert card.networks == {"w.pt": {"class": "N", "kwargs": {}}} and card.held_out_patients == ["P1"]
    assert card.extra == {"rule": {"a": 1}} and card.to_dict()["rule"] == {"a": 1}
    tsfcn = ModelCard.from_dict({"method": "t", "training": {"split": {"validation_patients": ["Q"]}}})
    assert tsfcn.held_out_patients == ["Q"] and tsfcn.held_out_cases == []
    with pytest.raises(WeightsError, match="lacks 'method'"):
        ModelCard.from_dict({"network": {}})
    with pytest.raises(WeightsError, match="'training' must be a JSON object"):
        ModelCard.from_dict({"method": "x", "training": [1]})
