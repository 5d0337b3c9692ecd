"""s4c's shipped model (skipped where it is not installed): the card, and what it segments and calls on fresh
dual-phase pancreas phantoms (``pancreas_ct(seed, kind)`` with small seeds; the training cohort's case seeds
are hashed from (cohort seed, index)). Trained on synthetic data only; no real-data score is asserted.

The floors sit well below the values measured when the model was shipped (``MODEL_CARD.md``), so that a broken
working grid, intensity window, label order or screening rule fails, while run-to-run noise does not.
"""
from __future__ import annotations

import numpy as np
import pytest

from lesionseg.methods.s4c.rules import fuse
from lesionseg.metrics import dice
from lesionseg.phantoms.pancreas import pancreas_ct

SHIPPED_METHOD = "s4c"
"""The method whose shipped model the ``shipped`` fixture (Testing/conftest.py) builds."""

PANCREAS_DICE = 0.9
"""Whole-pancreas (labels 1-3) Dice floor per phase; measured when shipped: 0.941-0.967 on these phantoms."""
CASES = [("tumour", 0, True), ("normal", 3, False), ("duct", 1, True)]
"""(kind, seed, expected fused verdict). Measured when shipped: tumour 0 -> 1,455 mm^3 tumour (arterial) and
112 mm^3 (venous), tumour Dice 0.76 / 0.21; normal 3 -> 0 mm^3 tumour and duct in both phases; duct 1 ->
3,532 / 3,336 mm^3 duct."""
ARTERIAL_TUMOUR_DICE = 0.4
"""Tumour Dice floor in the phase that shows the seed-0 tumour (arterial); measured 0.764."""


def _mask(image, values):
    return image.with_array(np.isin(image.array, values).astype(np.uint8))


def test_card_is_the_synthetic_fold_0_model_with_the_papers_rule(shipped):
    card = shipped.model.card
    assert card["method"] == "s4c" and card["training"]["synthetic"] is True
    assert card["training"]["fold"] == 0 and len(card["training"]["held_out_cases"]) == 10
    assert card["preprocessing"]["patch"] == 64 and card["preprocessing"]["stride"] == 20
    assert card["rule"]["tumour_min_mm3"] == 40.0 and card["rule"]["duct_min_mm3"] == 500.0
    assert (shipped.model.path / "MODEL_CARD.md").read_text(encoding="utf-8").count("synthetic") >= 3


@pytest.mark.parametrize("kind,seed,positive", CASES, ids=[f"{k}-{s}" for k, s, _ in CASES])
def test_segments_and_screens_a_fresh_phantom(shipped, kind, seed, positive):
    arterial, venous, truth, _ = pancreas_ct(seed=seed, kind=kind)
    found = []
    for phase, ct in (("arterial", arterial), ("venous", venous)):
        shipped.set_image(ct)
        label = shipped.predict()
        assert label.same_grid(ct, tol=0)
        assert dice(_mask(label, (1, 2, 3)), _mask(truth, (1, 2, 3))) > PANCREAS_DICE, phase
        if kind == "tumour" and phase == "arterial":
            assert dice(_mask(label, (2,)), _mask(truth, (2,))) > ARTERIAL_TUMOUR_DICE
        found.append(shipped.findings(phase))
    verdict, reasons = fuse(found)
    assert verdict is positive, reasons
