"""autopet-l2snet's shipped model (skipped where it is not installed): the card, and what it finds on a fresh
synthetic whole-body phantom (seeds the training cohort never used) and on the real STS crops it did not see.

The thresholds sit well below the scores measured when the model was shipped (``MODEL_CARD.md``), so that a
broken pre-processing, a wrong network file or a lost threshold rule fails, while run-to-run noise does not.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lesionseg
from lesionseg.metrics import dice, false_positive_volume
from lesionseg.modelfolder import find_model_folder
from lesionseg.phantoms.wholebody import wholebody_petct

PHANTOM_SEEDS = (5001, 5002)
"""Fresh phantoms: training and evaluation cohorts draw 32-bit case seeds hashed from (cohort seed, index)."""


@pytest.fixture(scope="module")
def shipped():
    if find_model_folder("autopet-l2snet") is None:
        pytest.skip("no autopet-l2snet weights installed")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield lesionseg.build("autopet-l2snet", device="cpu")
    torch.set_num_threads(threads)


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
    pet, ct, truth, _ = wholebody_petct(seed=PHANTOM_SEEDS[0], with_lesions=False)
    shipped.set_image(pet, ct)
    assert not truth.array.any()
    assert false_positive_volume(shipped.predict(), truth) < FPV_FREE_ML


def test_real_sts_crops_it_did_not_see(shipped, shared_data):
    from lesionseg.methods.autopet.evaluate import sts_cases

    folder = shared_data / "ibsi-sts-petct"
    if not folder.is_dir():
        pytest.skip("ibsi-sts-petct is absent")
    scores = []
    for name, pet, ct, mask in sts_cases(folder, UNSEEN_STS):
        shipped.set_image(pet, ct)
        scores.append(dice(shipped.predict(), mask.with_array((mask.array > 0).astype(np.uint8))))
    assert np.mean(scores) > DICE_STS
