from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import InputError
from lesionseg.geometry import world_to_index
from lesionseg.phantoms.wholebody import TISSUES, wholebody_cohort, wholebody_petct

EIGHTEEN = ndimage.generate_binary_structure(3, 2)


@pytest.fixture(scope="module")
def case():
    """Seed 3 with four lesions, default grid, PSF and noise."""
    return wholebody_petct(3, n_lesions=4)


@pytest.fixture(scope="module")
def clean():
    """Seed 3 with four lesions, no PSF and no PET noise: the painted SUV map itself."""
    return wholebody_petct(3, n_lesions=4, fwhm_mm=0.0, noise=0.0)


def test_types_geometry_and_json(case):
    pet, ct, label, info = case
    assert pet.array.dtype == np.float32 and ct.array.dtype == np.int16 and label.array.dtype == np.uint8
    assert pet.shape == (256, 64, 100) and pet.same_grid(ct) and pet.same_grid(label)
    np.testing.assert_array_equal(pet.spacing, (4.0, 4.0, 4.0))
    assert pet.meta["units"] == "SUV" and ct.meta["units"] == "HU"
    assert pet.array.min() >= 0.0 and set(np.unique(label.array)) == {0, 1}
    json.dumps(info, allow_nan=False)
    assert info["positive"] and len(info["lesions"]) == 4
    assert 1600 <= info["height_mm"] <= 1900


def test_same_seed_identical_other_seed_different(case):
    again = wholebody_petct(3, n_lesions=4)
    for a, b in zip(case[:3], again[:3]):
        np.testing.assert_array_equal(a.array, b.array)
    assert case[3] == again[3]
    other = wholebody_petct(4, n_lesions=4)
    assert not np.array_equal(case[0].array, other[0].array)
    assert not np.array_equal(case[1].array, other[1].array)


def test_lesions_change_only_their_neighbourhood(case):
    pet, ct, label, _ = case
    pet0, ct0, label0, info0 = wholebody_petct(3, with_lesions=False)
    assert not label0.array.any() and info0["lesions"] == [] and not info0["positive"]
    far = ~ndimage.binary_dilation(label.array > 0, np.ones((3, 3, 3), bool), iterations=4)  # past both blurs
    np.testing.assert_array_equal(ct.array[far], ct0.array[far])
    np.testing.assert_array_equal(pet.array[far], pet0.array[far])
    assert not np.array_equal(pet.array, pet0.array)


def test_physiological_uptake_and_volumes(clean):
    pet, ct, _, info = clean
    voxel_ml = pet.voxel_volume_ml
    suv = {name: entry["suv"] for name, entry in info["tissues"].items()}
    for name, (_, (low, high)) in TISSUES.items():
        assert low <= suv[name] <= high, name
    volume = {name: np.count_nonzero(np.isclose(pet.array, suv[name], rtol=0, atol=5e-4)) * voxel_ml
              for name in ("liver", "spleen", "kidney", "urine", "grey", "lung", "myocardium")}
    assert 1000 < volume["liver"] < 2600
    assert 100 < volume["spleen"] < 450
    assert 150 < volume["kidney"] < 600
    assert 40 < volume["urine"] < 700
    assert 300 < volume["grey"] < 1200
    assert 2500 < volume["lung"] < 8000
    assert 80 < volume["myocardium"] < 500
    lung = np.isclose(pet.array, suv["lung"], rtol=0, atol=5e-4)
    assert abs(float(np.median(ct.array[lung])) + 850) < 40
    assert ct.array.max() > 600 and ct.array.min() <= -1000 + 60


def test_lesion_records_match_the_label(clean):
    pet, _, label, info = clean
    parts, n = ndimage.label(label.array > 0, EIGHTEEN)
    assert n == len(info["lesions"])
    seen = set()
    for record in info["lesions"]:
        i, j, k = np.rint(world_to_index(label, [record["centre_lps"]])[0]).astype(int)
        number = parts[k, j, i]
        assert number > 0 and number not in seen
        seen.add(number)
        lesion = parts == number
        assert record["volume_ml"] == pytest.approx(np.count_nonzero(lesion) * pet.voxel_volume_ml, abs=1e-4)
        where = np.argwhere(lesion)
        assert record["box_ijk"] == [where.min(axis=0)[::-1].tolist(), where.max(axis=0)[::-1].tolist()]
        assert float(pet.array[lesion].max()) == pytest.approx(record["suv_max_true"], abs=1e-4)
        assert 1.8 <= record["suv_max_true"] <= 20.0 and 2.5 <= record["diameter_mm"] <= 40.0
        assert record["kind"] in ("lymph_node", "metastasis")
        assert (record["kind"] == "lymph_node") == record["organ"].startswith("node_")


def test_psf_keeps_activity_and_noise_grows_with_signal(clean):
    blurred, *_ = wholebody_petct(3, n_lesions=4, noise=0.0)
    np.testing.assert_allclose(blurred.array.sum(dtype=np.float64), clean[0].array.sum(dtype=np.float64), rtol=1e-3)
    lesions = clean[2].array > 0  # small, so partial volume lowers their maximum; a big bladder keeps it
    assert blurred.array[lesions].max() < 0.9 * clean[0].array[lesions].max()
    noisy, *_ = wholebody_petct(3, n_lesions=4, noise=0.3)
    diff = noisy.array.astype(np.float64) - blurred.array
    inner = ndimage.binary_erosion(blurred.array > 0.05, iterations=3)
    for level in (0.7, 2.0, 8.0):
        near = inner & (np.abs(blurred.array - level) < 0.1 * level)
        assert np.count_nonzero(near) > 200
        assert float(diff[near].std()) == pytest.approx(0.3 * np.sqrt(level), rel=0.15)


def test_oblique_grid_places_the_body(clean):
    tilt = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pet, ct, label, info = wholebody_petct(3, n_lesions=2, shape=(120, 40, 64), spacing=(6.5, 6.5, 8.0),
                                           origin=(10.0, -20.0, -900.0), direction=tilt)
    np.testing.assert_allclose(pet.origin, (10.0, -20.0, -900.0))
    np.testing.assert_allclose(pet.direction, tilt)
    assert pet.same_grid(ct) and pet.same_grid(label)
    for record in info["lesions"]:
        i, j, k = np.rint(world_to_index(label, [record["centre_lps"]])[0]).astype(int)
        assert label.array[k, j, i] == 1


def test_with_lesions_drawn_from_the_seed_and_cohort():
    flags = {seed: wholebody_petct(seed, shape=(64, 32, 40), spacing=(10, 10, 16))[3]["positive"] for seed in range(8)}
    assert set(flags.values()) == {True, False}
    specs = wholebody_cohort(9, seed=2)
    assert specs == wholebody_cohort(9, seed=2) and specs != wholebody_cohort(9, seed=3)
    assert sum(s["with_lesions"] for s in specs) == 5 and len({s["seed"] for s in specs}) == 9
    assert [s["case"] for s in specs] == [f"wb_{i:03d}" for i in range(9)]


@pytest.mark.parametrize("kwargs", [dict(seed=-1), dict(seed=1.5), dict(with_lesions="yes"), dict(n_lesions=21),
                                    dict(with_lesions=False, n_lesions=2), dict(with_lesions=True, n_lesions=0),
                                    dict(fwhm_mm=-1.0), dict(noise=float("nan")), dict(noise_hu=True),
                                    dict(shape=(64, 16, 40))])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(InputError):
        wholebody_petct(**kwargs)


@pytest.mark.parametrize("args", [(0, 0), (True, 0), (4, -1)])
def test_bad_cohort_raises(args):
    with pytest.raises(InputError):
        wholebody_cohort(*args)


def test_a_short_field_places_lesions_only_where_it_reaches():
    """A 33 cm field (110 slices of 3 mm, as in the benchmark) does not reach the liver: lesions go to sites it
    shows (this raised a KeyError before)."""
    pet, ct, label, info = wholebody_petct(3, shape=(110, 40, 40), spacing=(10.0, 10.0, 3.0), n_lesions=6)
    assert label.shape == (110, 40, 40) and info["positive"]
    assert {lesion["organ"] for lesion in info["lesions"]}.isdisjoint({"liver"})
