"""autopet-l2snet's shipped model (skipped where it is not installed): the card, and what it finds on fresh
synthetic whole-body phantoms (seeds the training cohort never used). It was trained on synthetic data only
and finds nothing on the real STS crops (measured, ``MODEL_CARD.md``), so no real-data score is asserted here.

The thresholds sit well below the scores measured when the model was shipped (``MODEL_CARD.md``), so that a
broken pre-processing, a wrong network file or a lost threshold rule fails, while run-to-run noise does not.
"""
from __future__ import annotations

import pytest

from lesionseg.metrics import dice, false_positive_volume
from lesionseg.phantoms.wholebody import wholebody_petct

SHIPPED_METHOD = "autopet-l2snet"
"""The method whose shipped model the ``shipped`` fixture (Testing/conftest.py) builds."""

PHANTOM_SEEDS = (0, 5001)
"""Fresh phantoms (seed 0 is also the demo's and the Slicer self-test's case): training and evaluation cohorts
draw 32-bit case seeds hashed from (cohort seed, index). Measured when shipped: Dice 0.678 and 0.836."""
DICE_PHANTOM = 0.5
FPV_FREE_ML = 5.0
"""Measured when shipped: 0.0 mL on the lesion-free body of seed 5001."""


def test_card_names_its_data_and_all_three_networks(shipped):
    card = shipped.model.card
    assert set(card["files"]) == {"loc.pt", "seg.pt", "seg_plain.pt"}
    assert card["preprocessing"]["ct_window"] == [-100.0, 250.0]
    assert (shipped.model.path / "MODEL_CARD.md").read_text(encoding="utf-8").count("synthetic") >= 3


@pytest.mark.parametrize("seed", PHANTOM_SEEDS)
def test_finds_the_lesions_of_a_fresh_phantom(shipped, seed):
    pet, ct, truth, _ = wholebody_petct(seed=seed, with_lesions=True)
    shipped.set_image(pet, ct)
    label = shipped.predict()
    assert label.same_grid(pet, tol=0)
    assert dice(label, truth) > DICE_PHANTOM


def test_a_lesion_free_phantom_gets_little_false_positive_volume(shipped):
    pet, ct, truth, _ = wholebody_petct(seed=PHANTOM_SEEDS[1], with_lesions=False)
    shipped.set_image(pet, ct)
    assert not truth.array.any()
    assert false_positive_volume(shipped.predict(), truth) < FPV_FREE_ML
