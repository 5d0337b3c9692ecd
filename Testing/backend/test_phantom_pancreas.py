from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import InputError
from lesionseg.geometry import world_to_index
from lesionseg.phantoms.pancreas import KINDS, LABELS, cohort, pancreas_ct

SMALL = {"shape": (30, 100, 120), "spacing": (1.8, 1.8, 4.0)}  # the default field of view, 1/8 of the voxels
EXPECTED_LABELS = {"normal": {0, 1}, "tumour": {0, 1, 2}, "duct": {0, 1, 3}, "tumour+duct": {0, 1, 2, 3}}
IN_PLANE = np.zeros((3, 3, 3), bool)
IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


@pytest.fixture(scope="module")
def cases():
    return {kind: pancreas_ct(seed=7, kind=kind, **SMALL) for kind in KINDS}


def tumour_masks(label, info) -> list[np.ndarray]:
    """The 26-connected tumour component holding each tumour's ``centre_lps``; each tumour is one component."""
    parts, n = ndimage.label(label.array == LABELS["tumour"], ndimage.generate_binary_structure(3, 3))
    numbers = []
    for record in info["tumours"]:
        i, j, k = np.rint(world_to_index(label, [record["centre_lps"]])[0]).astype(int)
        numbers.append(parts[k, j, i])
    assert sorted(numbers) == list(range(1, n + 1))
    return [parts == number for number in numbers]


def test_same_arguments_identical_arrays():
    first, again = pancreas_ct(seed=4, **SMALL), pancreas_ct(seed=4, **SMALL)
    for a, b in zip(first[:3], again[:3]):
        np.testing.assert_array_equal(a.array, b.array)
    assert first[3] == again[3]
    explicit = pancreas_ct(seed=4, kind=first[3]["kind"], **SMALL)  # None draws the same kind from the seed
    np.testing.assert_array_equal(explicit[0].array, first[0].array)
    other = pancreas_ct(seed=5, **SMALL)
    assert not np.array_equal(other[0].array, first[0].array)
    assert not np.array_equal(other[2].array, first[2].array)


def test_lesions_leave_the_rest_of_the_anatomy_alone():
    normal = pancreas_ct(seed=3, kind="normal", **SMALL)
    tumour = pancreas_ct(seed=3, kind="tumour", **SMALL)
    changed = (normal[0].array != tumour[0].array) | (normal[2].array != tumour[2].array)
    distance = ndimage.distance_transform_edt(tumour[2].array != LABELS["tumour"], sampling=(4.0, 1.8, 1.8))
    assert changed.any() and distance[changed].max() < 15.0


@pytest.mark.parametrize("kind", KINDS)
def test_labels_present_per_kind(cases, kind):
    arterial, venous, label, info = cases[kind]
    assert set(np.unique(label.array)) == EXPECTED_LABELS[kind]
    assert info["kind"] == kind and info["positive"] == (kind != "normal")
    assert (info["duct"] is not None) == ("duct" in kind) and bool(info["tumours"]) == ("tumour" in kind)
    json.dumps(info, allow_nan=False)


def test_phases_share_one_grid(cases):
    arterial, venous, label, _ = cases["tumour+duct"]
    assert arterial.array.dtype == venous.array.dtype == np.int16 and label.array.dtype == np.uint8
    assert arterial.same_grid(venous) and label.same_grid(arterial) and arterial.shape == (30, 100, 120)
    assert (arterial.meta["phase"], venous.meta["phase"]) == ("arterial", "venous")
    assert not np.array_equal(arterial.array, venous.array)


def test_aorta_brighter_in_arterial_phase(cases):
    arterial, venous, _, info = cases["normal"]
    # the aorta sits about 8 mm left of and 23 mm behind the grid centre
    i, j = int(round(59.5 + 8 / 1.8)), int(round(49.5 + 23 / 1.8))
    patch = np.s_[:, j - 1:j + 2, i - 1:i + 2]
    assert arterial.array[patch].mean() > 220 and venous.array[patch].mean() < 200
    assert arterial.array[patch].mean() - venous.array[patch].mean() > 80
    assert info["hu"]["arterial"]["artery"] > info["hu"]["venous"]["artery"]


def test_tumour_more_conspicuous_in_its_phase():
    phases = set()
    for seed in range(10):
        arterial, venous, label, info = pancreas_ct(seed=seed, kind="tumour", **SMALL)
        parenchyma = ndimage.binary_erosion(label.array == LABELS["pancreas"], IN_PLANE)  # away from fat
        for tumour, record in zip(tumour_masks(label, info), info["tumours"]):
            contrast = {phase: abs(image.array[tumour].mean() - image.array[parenchyma].mean())
                        for phase, image in (("arterial", arterial), ("venous", venous))}
            phase = record["conspicuous_phase"]
            other = "venous" if phase == "arterial" else "arterial"
            assert contrast[phase] > contrast[other], (seed, record, contrast)
            phases.add(phase)
    assert phases == {"arterial", "venous"}


def test_info_matches_arrays(cases):
    for kind in KINDS:
        _, _, label, info = cases[kind]
        voxel = float(np.prod(label.spacing))
        for tumour, record in zip(tumour_masks(label, info), info["tumours"]):
            assert record["volume_mm3"] == pytest.approx(tumour.sum() * voxel, abs=1e-3)
            (i0, j0, k0), (i1, j1, k1) = record["box_ijk"]
            where = np.argwhere(tumour)
            assert where.min(axis=0).tolist() == [k0, j0, i0] and where.max(axis=0).tolist() == [k1, j1, i1]
            assert 5.0 <= record["diameter_mm"] <= 20.0
            hu = (record["hu_arterial"], record["hu_venous"])
            assert record["conspicuous_phase"] in ("arterial", "venous") and hu[0] != hu[1]
        duct_voxels = np.count_nonzero(label.array == LABELS["duct"])
        if info["duct"] is not None:
            assert info["duct"]["volume_mm3"] == pytest.approx(duct_voxels * voxel, abs=1e-3)
            assert 4.0 <= info["duct"]["diameter_mm"] <= 8.0 and 0.0 <= info["duct"]["hu"] <= 20.0
        count = np.count_nonzero(label.array == LABELS["pancreas"])
        assert info["pancreas_mm3"] == pytest.approx(count * voxel, abs=1e-3)
        assert info["organ_mm3"] == pytest.approx(np.count_nonzero(label.array) * voxel, abs=1e-3)


def test_duct_stays_inside_the_pancreas(cases):
    label = cases["duct"][2].array
    duct = label == LABELS["duct"]
    rim = ndimage.binary_dilation(duct, IN_PLANE) & ~duct
    assert np.all(label[rim] > 0)  # the duct is wrapped in parenchyma, never touches the fat


@pytest.mark.parametrize("seed", [0, 1])
def test_pancreas_size_at_default_shape(seed):
    arterial, _, label, info = pancreas_ct(seed=seed)
    assert arterial.shape == (60, 200, 240)
    assert 30_000 <= info["pancreas_mm3"] <= 120_000
    assert 120.0 <= info["pancreas_length_mm"] <= 180.0
    hu = arterial.array[label.array == LABELS["pancreas"]]
    assert 80 < np.median(hu) < 160  # enhancing parenchyma, not fat or vessel


def test_direction_and_origin_place_the_same_anatomy():
    t = np.deg2rad(15.0)
    direction = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    plain = pancreas_ct(seed=2, kind="tumour", **SMALL)
    turned = pancreas_ct(seed=2, kind="tumour", origin=(10.0, -20.0, 30.0), direction=direction, **SMALL)
    np.testing.assert_array_equal(plain[1].array, turned[1].array)
    np.testing.assert_allclose(turned[2].direction, direction)
    assert turned[3]["origin"] == [10.0, -20.0, 30.0]
    assert len(tumour_masks(turned[2], turned[3])) == len(turned[3]["tumours"]) >= 1


def test_cohort_proportions_and_determinism():
    for n, expected in ((10, (5, 3, 1, 1)), (20, (10, 6, 2, 2)), (13, (7, 4, 1, 1))):
        cases = cohort(n, seed=1)
        assert tuple(sum(c["kind"] == kind for c in cases) for kind in KINDS) == expected
        assert [c["case"] for c in cases] == [f"s4c_{i:03d}" for i in range(n)]
        assert len({c["seed"] for c in cases}) == n
    assert cohort(20, seed=1) == cohort(20, seed=1)
    assert [c["kind"] for c in cohort(20, seed=1)] != [c["kind"] for c in cohort(20, seed=2)]
    assert cohort(1000)[-1]["case"] == "s4c_999" and cohort(1001)[0]["case"] == "s4c_0000"


def test_bad_arguments_raise():
    with pytest.raises(InputError, match="kind"):
        pancreas_ct(kind="cyst")
    with pytest.raises(InputError, match="seed"):
        pancreas_ct(seed=-1)
    with pytest.raises(InputError, match="noise"):
        pancreas_ct(noise_hu=-1.0)
    with pytest.raises(InputError, match="shape"):
        pancreas_ct(shape=(10, 16, 240))
    with pytest.raises(InputError):
        cohort(0)
