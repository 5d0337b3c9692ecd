"""small-lesion-il data folders: listing, folds, the synthetic cohort and lesions inserted into a real CT."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import Image, InputError, OutputExistsError, read_image
from lesionseg.geometry import world_to_index
from lesionseg.methods.smalllesion import data
from lesionseg.methods.smalllesion.data import Case, folds, insert_lesions, list_cases, write_cohort, write_inserted

LESION_KEYS = {"id", "centre_lps", "diameter_mm", "volume_mm3", "mean_hu", "hu", "shape"}


def components(array: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(array, ndimage.generate_binary_structure(3, 3))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("sl") / "cohort"
    return folder, write_cohort(folder, 2, seed=5)


def test_write_cohort_lists_cases_and_records_provenance(cohort):
    folder, records = cohort
    cases = list_cases(folder)
    assert [c.name for c in cases] == ["sb_000", "sb_001"] == [r["name"] for r in records]
    doc = json.loads((folder / "cohort.json").read_text())
    assert doc["synthetic"] is True and doc["seed"] == 5 and "smallbowel" in doc["generator"]
    for case, record in zip(cases, doc["cases"]):
        ct, label = read_image(case.ct), read_image(case.label)
        assert label.same_grid(ct) and ct.array.dtype == np.int16
        parts, n = components(label.array)
        assert n == len(record["lesions"]) >= 1
        for lesion in record["lesions"]:
            assert set(lesion) == LESION_KEYS
            i, j, k = np.rint(world_to_index(label, [lesion["centre_lps"]])[0]).astype(int)
            inside = parts == parts[k, j, i]
            assert parts[k, j, i] > 0
            assert lesion["volume_mm3"] == round(float(inside.sum() * np.prod(label.spacing)), 3)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["cohort"]  # no temporary sibling left


def test_write_cohort_refuses_a_non_empty_folder(cohort):
    folder, _ = cohort
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(OutputExistsError):
        write_cohort(folder, 1, seed=9)
    assert sorted(p.name for p in folder.iterdir()) == before
    with pytest.raises(InputError):
        write_cohort(folder.parent / "other", 0)


def test_list_cases_errors(tmp_path):
    with pytest.raises(InputError, match="no such"):
        list_cases(tmp_path / "missing")
    with pytest.raises(InputError, match="holds no"):
        list_cases(tmp_path)
    (tmp_path / "a_ct.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="no label"):
        list_cases(tmp_path)


def test_folds_are_deterministic_disjoint_and_balanced():
    cases = [Case(f"c{i:02d}", Path(f"c{i:02d}_ct.nii.gz"), Path(f"c{i:02d}_label.nii.gz")) for i in range(11)]
    split = folds(cases, 3, seed=1)
    assert split == folds(list(reversed(cases)), 3, seed=1)
    assert sorted(sum(split, [])) == sorted(c.name for c in cases)
    assert sorted(len(f) for f in split) == [3, 4, 4] and all(f == sorted(f) for f in split)
    assert split != folds(cases, 3, seed=2)
    for k in (1, 12, 2.0):
        with pytest.raises(InputError):
            folds(cases, k)


def synthetic_ct() -> tuple[Image, np.ndarray]:
    """A noise-free (30, 60, 60) 'CT' at 1 mm: body of 0 HU in air, and a bowel-like block mask."""
    arr = np.full((30, 60, 60), -1000, np.int16)
    arr[2:28, 5:55, 5:55] = 0
    bowel = np.zeros(arr.shape, bool)
    bowel[10:20, 20:40, 20:40] = True
    return Image(arr, (1.0, 1.0, 1.0), (3.0, -4.0, 50.0)), bowel


def test_insert_lesions_mixes_partial_volume_and_labels_half_full_voxels():
    ct, bowel = synthetic_ct()
    out, label, records = insert_lesions(ct, bowel, np.random.default_rng(0), 3, diameter_mm=(8.0, 10.0))
    assert out.same_grid(ct) and label.same_grid(ct) and out.array.dtype == np.int16
    parts, n = components(label.array)
    assert n == len(records) == 3
    distance = ndimage.distance_transform_edt(~bowel) + ndimage.distance_transform_edt(bowel)
    changed = out.array != ct.array
    assert np.all(ct.array[changed] == 0)  # only the body changed
    for record in records:
        i, j, k = np.rint(world_to_index(ct, [record["centre_lps"]])[0]).astype(int)
        inside = parts == parts[k, j, i]
        assert parts[k, j, i] > 0 and distance[k, j, i] <= data.NEAR_BOWEL_MM
        assert out.array[inside].max() == np.rint(record["hu"])  # fully covered voxels hold the lesion HU
        assert record["volume_mm3"] == float(inside.sum())
        assert record["mean_hu"] == round(float(out.array[inside].mean()), 1)
    ball = np.pi / 6 * np.array([r["diameter_mm"] for r in records]) ** 3
    assert np.all(np.array([r["volume_mm3"] for r in records]) <= ball * 1.3)


def test_write_inserted_skips_cleanly_without_the_example_ct(tmp_path):
    with pytest.raises(InputError, match="example_ct_sm"):
        write_inserted(tmp_path / "out", tmp_path / "nope", 2)
    assert not (tmp_path / "out").exists()


def test_write_inserted_puts_lesions_next_to_the_small_bowel(shared_data, tmp_path):
    source = shared_data / "totalseg-example-ct"
    if not (source / data.TOTALSEG_CT).is_file():
        pytest.skip("totalseg-example-ct is not in ../shared/data")
    records = write_inserted(tmp_path / "ins", source, 2, seed=3)
    original = read_image(source / data.TOTALSEG_CT)
    bowel = read_image(source / data.TOTALSEG_SEG).array == data.SMALL_BOWEL_LABEL
    spacing = original.spacing[::-1]
    distance = ndimage.distance_transform_edt(~bowel, sampling=spacing) + \
        ndimage.distance_transform_edt(bowel, sampling=spacing)
    doc = json.loads((tmp_path / "ins" / "cohort.json").read_text())
    assert doc["synthetic"] is True and "real CT" in doc["note"] and len(records) == 2
    for case, record in zip(list_cases(tmp_path / "ins"), records):
        ct, label = read_image(case.ct), read_image(case.label)
        assert ct.same_grid(original) and label.same_grid(original)
        assert components(label.array)[1] == len(record["lesions"]) >= 1
        for lesion in record["lesions"]:
            i, j, k = np.rint(world_to_index(ct, [lesion["centre_lps"]])[0]).astype(int)
            assert label.array[k, j, i] == 1 and distance[k, j, i] <= data.NEAR_BOWEL_MM
        far = ndimage.distance_transform_edt(label.array == 0, sampling=spacing) > 20.0
        assert np.array_equal(ct.array[far], original.array[far])


def test_main_writes_phantoms_and_checks_its_options(tmp_path):
    assert data.main(["-o", str(tmp_path / "one"), "--cases", "1", "--seed", "2"]) == 0
    assert [c.name for c in list_cases(tmp_path / "one")] == ["sb_000"]
    with pytest.raises(InputError, match="--totalseg"):
        data.main(["-o", str(tmp_path / "two"), "--cases", "0", "--inserted", "1"])
    with pytest.raises(InputError, match="nothing"):
        data.main(["-o", str(tmp_path / "two"), "--cases", "0"])
    assert not (tmp_path / "two").exists()
