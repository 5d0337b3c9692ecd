"""small-lesion-il's shipped model (skipped where it is not installed): the card, what it finds on fresh
synthetic small-bowel phantoms (seeds the training cohort never used: its case seeds are hashed from (cohort
seed, index)), and that its second output learnt the intensity likelihood. Trained on synthetic data only;
no real-data score is asserted.

The thresholds sit well below the scores measured when the model was shipped (``MODEL_CARD.md``), so that a
broken pre-processing, a wrong channel or a lost prior fails, while run-to-run noise does not.
"""
from __future__ import annotations

import numpy as np
import pytest

from lesionseg.methods.smalllesion.evaluate import score_case
from lesionseg.phantoms.smallbowel import smallbowel_ct

SHIPPED_METHOD = "small-lesion-il"
"""The method whose shipped model the ``shipped`` fixture (Testing/conftest.py) builds."""

DICE_BY_SEED = {3: 0.5, 2: 0.15}
"""Case Dice floors; measured when shipped: 0.790 (seed 3, its 777 mm^3 tumour at 0.83) and 0.305 (seed 2)."""
LIKELIHOOD_CORRELATION = 0.4
"""Floor of the Pearson correlation, inside the body, between the predicted likelihood (channel 2) and the
model prior's L(smoothed HU); measured when shipped: 0.646 (seed 3) and 0.622 (seed 2)."""


def test_card_is_the_proposed_variant_with_its_prior_and_says_synthetic(shipped):
    card = shipped.model.card
    assert card["variant"] == "seg+il" and card["network"]["kwargs"]["out_channels"] == 2
    assert card["training"]["synthetic"] is True and card["training"]["held_out_cases"]
    assert (shipped.model.path / "prior.json").is_file() and shipped.model_prior is not None
    assert (shipped.model.path / "MODEL_CARD.md").read_text(encoding="utf-8").count("synthetic") >= 3


@pytest.mark.parametrize("seed", sorted(DICE_BY_SEED))
def test_segments_a_fresh_phantom_and_predicts_the_likelihood(shipped, seed):
    ct, truth, _ = smallbowel_ct(seed=seed)
    shipped.set_image(ct)
    label = shipped.predict()
    assert label.same_grid(ct, tol=0)
    assert score_case(label, truth)["dice"] > DICE_BY_SEED[seed]
    predicted = shipped.likelihood().array
    reference = shipped.model_prior.likelihood(shipped.model_prior.smooth(ct).array)
    body = ct.array > -500
    assert np.corrcoef(predicted[body], reference[body])[0, 1] > LIKELIHOOD_CORRELATION
