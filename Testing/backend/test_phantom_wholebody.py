from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import InputError
from lesionseg.geometry import world_to_index
from lesionseg.phantoms.wholebody import TISSUES, wholebody_cohort, wholebody_petct
from lesionseg.phantoms.wholebody_parts import LIMBS

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
    assert pet.shape == (256, 64, 160) and pet.same_grid(ct) and pet.same_grid(label)
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
    scale = info["suv_scale"]
    assert 0.7 <= scale <= 1.4
    for name, (_, (low, high)) in TISSUES.items():
        assert low * scale <= suv[name] <= high * scale, name
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
        assert 1.8 <= record["suv_max_true"] <= 22.0 * 1.4 and 2.5 <= record["diameter_mm"] <= 150.0
        assert record["kind"] in ("sarcoma", "lymph_node", "metastasis")
        assert (record["kind"] == "lymph_node") == record["organ"].startswith("node_")
        assert (record["kind"] == "sarcoma") == (record["organ"] in LIMBS)


def test_psf_keeps_activity_and_noise_grows_with_signal(clean):
    blurred, *_ = wholebody_petct(3, n_lesions=4, noise=0.0, fwhm_mm=6.0)
    np.testing.assert_allclose(blurred.array.sum(dtype=np.float64), clean[0].array.sum(dtype=np.float64), rtol=1e-3)
    lesions = clean[2].array > 0  # small, so partial volume lowers their maximum; a big bladder keeps it
    assert blurred.array[lesions].max() < 0.9 * clean[0].array[lesions].max()
    noisy, *_ = wholebody_petct(3, n_lesions=4, noise=0.3, fwhm_mm=6.0)
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
                                    dict(suv_scale=0.0), dict(suv_scale=float("inf")),
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


@pytest.fixture(scope="module")
def limbs():
    """Seed 12 with three lesions (a 103 mm thigh and an 89 mm arm sarcoma, both necrotic), no PSF, no noise."""
    return wholebody_petct(12, n_lesions=3, fwhm_mm=0.0, noise=0.0, noise_hu=0.0)


def test_acquisition_is_drawn_per_case_unless_given():
    infos = [wholebody_petct(seed, shape=(64, 32, 40), spacing=(16, 16, 16), with_lesions=False)[3]
             for seed in range(6)]
    for name, (low, high) in (("fwhm_mm", (4.0, 9.0)), ("noise", (0.08, 0.3)), ("suv_scale", (0.7, 1.4))):
        drawn = [info[name] for info in infos]
        assert all(low <= v <= high for v in drawn) and len(set(drawn)) == 6, name
    myocardium = [info["tissues"]["myocardium"]["suv"] / info["suv_scale"] for info in infos]
    assert len(set(myocardium)) == 6
    given = wholebody_petct(0, shape=(64, 32, 40), spacing=(16, 16, 16), fwhm_mm=5.0, noise=0.1, suv_scale=1.2)[3]
    assert (given["fwhm_mm"], given["noise"], given["suv_scale"]) == (5.0, 0.1, 1.2)


def test_cohort_spans_lesion_sizes_and_sites():
    lesions = [lesion for seed in range(12) for lesion in
               wholebody_petct(seed, n_lesions=6, shape=(128, 32, 80), spacing=(8.0, 8.0, 8.0))[3]["lesions"]]
    diameters = np.array([lesion["diameter_mm"] for lesion in lesions])
    assert diameters.min() < 8.0 and diameters.max() > 120.0 and diameters.max() <= 150.0
    assert np.count_nonzero(diameters > 40.0) >= 10
    organs = {lesion["organ"] for lesion in lesions}
    assert {"liver", "marrow"} <= organs and {"thigh_left", "thigh_right"} & organs
    assert {"arm_left", "arm_right"} & organs
    assert {"lung_left", "lung_right"} & organs and any(o.startswith("node_") for o in organs)
    necrotic = [lesion for lesion in lesions if lesion["necrotic"]]
    assert necrotic and all(lesion["diameter_mm"] > 40.0 and 0.2 <= lesion["necrotic_fraction"] <= 0.7
                            for lesion in necrotic)
    assert max(lesion["volume_ml"] for lesion in lesions) > 300.0


def test_necrotic_core_is_cold_and_inside_the_label(limbs):
    pet, ct, label, info = limbs
    parts, _ = ndimage.label(label.array > 0, EIGHTEEN)
    necrotic = [lesion for lesion in info["lesions"] if lesion["necrotic"]]
    assert len(necrotic) == 2
    for record in necrotic:
        i, j, k = np.rint(world_to_index(label, [record["centre_lps"]])[0]).astype(int)
        lesion = parts == parts[k, j, i]
        np.testing.assert_array_equal(ndimage.binary_fill_holes(lesion), lesion)
        assert 0.26 * record["suv_max_true"] > 1.2 * 1.2 * info["suv_scale"]  # the texture never dips this low
        core = ndimage.binary_erosion(lesion, iterations=2) & (pet.array < 1.2 * 1.2 * info["suv_scale"])
        rim = lesion & ~ndimage.binary_erosion(lesion)
        assert np.count_nonzero(core) * pet.voxel_volume_ml > 0.05 * record["volume_ml"]
        assert float(pet.array[rim].mean()) > 2.0 * float(pet.array[core].mean())
        inside = ndimage.binary_erosion(core)  # clear of the CT's half-voxel blur
        assert inside.any() and np.all((ct.array[inside] >= 10) & (ct.array[inside] <= 25))
        inner = ndimage.binary_erosion(lesion, iterations=2) & ~ndimage.binary_dilation(core, iterations=2)
        assert float(pet.array[inner].std()) > 0.05 * record["suv_max_true"]  # textured, not a smooth profile


def test_arms_beside_the_trunk_and_limb_lesions_clear_of_bone(limbs):
    pet, ct, label, info = limbs
    body = ct.array > -400
    three = [k for k in range(body.shape[0]) if ndimage.label(body[k].any(axis=0))[1] >= 3]
    assert len(three) * ct.spacing[2] > 250  # arm, trunk, arm side by side over > 25 cm
    k = three[len(three) // 2]
    runs, n = ndimage.label(body[k].any(axis=0))
    for part in (1, n):  # the outer runs along i are the arms: each holds bone
        assert (ct.array[k][:, runs == part] > 300).any()
    for record in info["lesions"]:
        if record["kind"] == "sarcoma":
            i, j, kk = np.rint(world_to_index(label, [record["centre_lps"]])[0]).astype(int)
            lesion = ndimage.label(label.array > 0, EIGHTEEN)[0]
            lesion = lesion == lesion[kk, j, i]
            assert ct.array[lesion].max() < 200
            assert pet.array[lesion].max() == pytest.approx(record["suv_max_true"], abs=1e-4)
            assert (record["organ"].endswith("left")) == (world_to_index(label, [record["centre_lps"]])[0][0]
                                                          > (label.shape[2] - 1) / 2)


def test_physiological_ranges_and_ct_values(limbs):
    pet, ct, _, info = limbs
    suv = {name: entry["suv"] / info["suv_scale"] for name, entry in info["tissues"].items()}
    assert 5.0 <= suv["grey"] <= 14.0 and 1.0 <= suv["myocardium"] <= 15.0 and 10.0 <= suv["urine"] <= 60.0
    assert 1.5 <= suv["liver"] <= 3.0
    assert pet.array.max() <= 60.0 * 1.4 and pet.array.min() >= 0.0
    assert ct.array.min() >= -1024 and ct.array.max() <= 1000
