"""small-lesion-il data: the synthetic cohort as a dataset (the same arrays as before the dataset convention),
lesions inserted into a real CT, the generator's settings and ``lesionseg data synthetic small-lesion-il``."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import Image, InputError, OutputExistsError, read_image
from lesionseg.data import Dataset, fold_split
from lesionseg.geometry import world_to_index
from lesionseg.methods.smalllesion import data
from lesionseg.methods.smalllesion.data import SmallLesionDataSettings, insert_lesions, write_dataset

LESION_KEYS = {"id", "centre_lps", "diameter_mm", "volume_mm3", "mean_hu", "hu", "shape"}
BEFORE = {
    "sb_000": "45a6d4c5a7622d2639e2ff52c0c29cd2ef2ba9d58a560d56bb6bd0bbd5c080f0",
    "sb_001": "88823e1cb7a0ca7b87490e38c4b2b11d25ba8a7c4b3ebc897b0747bfbe22e8cb",
    "ins_000": "85920076dab04c0338cac25bd35df2c7577dc3d76cc7c08476aaab32eb9f9ace",
    "ins_001": "6c63f687ff2f52b499cd651b6a6903ec16c935dd14d234d02eccd04934941ea1",
}
"""sha256 of CT array + label array + spacing + origin of the cases the method's own writers (``write_cohort(DIR,
2, seed=0)`` and ``write_inserted(DIR, totalseg, 2, seed=0)``) wrote at commit e0320ce, before the dataset
convention (``DIR/<case>_ct.nii.gz`` + ``<case>_label.nii.gz``)."""
TINY = {"shape": (24, 48, 48), "spacing": (1.2, 1.2, 1.6)}


def components(array: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(array, ndimage.generate_binary_structure(3, 3))


def digest(ct: Image, label: Image) -> str:
    return hashlib.sha256(ct.array.tobytes() + label.array.tobytes() + np.asarray(ct.spacing, np.float64).tobytes()
                          + np.asarray(ct.origin, np.float64).tobytes()).hexdigest()


def totalseg(shared_data: Path) -> Path:
    source = shared_data / "totalseg-example-ct"
    if not (source / data.TOTALSEG_CT).is_file():
        pytest.skip("totalseg-example-ct is not in ../shared/data")
    return source


def test_the_cohort_holds_the_same_arrays_as_before(tmp_path):
    out = write_dataset(tmp_path / "D", SmallLesionDataSettings(cases=2, seed=0))
    dataset = Dataset(out)
    assert [c.name for c in dataset.cases()] == ["sb_000", "sb_001"]
    for case in dataset.cases():
        ct, label = case.read_images()[0], case.read_label()
        assert ct.array.dtype == np.int16 and label.array.dtype == np.uint8 and label.same_grid(ct)
        assert digest(ct, label) == BEFORE[case.name], case.name


def test_inserted_cases_hold_the_same_arrays_as_before_and_share_one_patient(shared_data, tmp_path):
    source = totalseg(shared_data)
    out = write_dataset(tmp_path / "D", SmallLesionDataSettings(cases=0, inserted=2, totalseg=source, seed=0))
    dataset = Dataset(out)
    assert [(c.name, c.patient) for c in dataset.cases()] == [("ins_000", data.PATIENT_INSERTED),
                                                              ("ins_001", data.PATIENT_INSERTED)]
    for case in dataset.cases():
        assert digest(case.read_images()[0], case.read_label()) == BEFORE[case.name], case.name
    assert "synthetic lesions" in dataset.meta["description"] and dataset.synthetic


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("sl") / "cohort", SmallLesionDataSettings(cases=3, seed=5, **TINY))


def test_dataset_layout_and_provenance(cohort):
    dataset = Dataset(cohort)
    dataset.check()
    assert dataset.channel_names == ("CT",) and dataset.labels == {"background": 0, "lesion": 1}
    assert dataset.synthetic and dataset.meta["seed"] == 5 and "no real data" in dataset.meta["description"]
    assert sorted(p.name for p in (cohort / "imagesTr").iterdir()) == [f"sb_00{i}_0000.nii.gz" for i in range(3)]
    assert [c.patient for c in dataset.cases()] == ["sb_000", "sb_001", "sb_002"]  # every phantom its own patient
    records = dataset.meta["cases"]
    for case in dataset.cases():
        label = case.read_label()
        assert label.shape == TINY["shape"] and np.allclose(label.spacing, TINY["spacing"])
        record = records[case.name]
        assert record["source"] == "phantom" and record["seed"] == data._case_seed(5, int(case.name[-3:]), 0)
        parts, n = components(label.array)
        assert n == len(record["lesions"]) >= 1
        for lesion in record["lesions"]:
            assert set(lesion) == LESION_KEYS
            i, j, k = np.rint(world_to_index(label, [lesion["centre_lps"]])[0]).astype(int)
            assert parts[k, j, i] > 0
            inside = parts == parts[k, j, i]
            assert lesion["volume_mm3"] == round(float(inside.sum() * np.prod(label.spacing)), 3)
    assert sorted(p.name for p in cohort.parent.iterdir()) == ["cohort"]  # no temporary sibling left


def test_writing_refuses_a_folder_it_did_not_write(tmp_path, cohort):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not a LesionSeg output"):
        write_dataset(tmp_path / "mine", SmallLesionDataSettings(cases=1, **TINY), overwrite=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    before = sorted(p.name for p in (cohort / "imagesTr").iterdir())
    with pytest.raises(OutputExistsError):
        write_dataset(cohort, SmallLesionDataSettings(cases=1, **TINY))
    assert sorted(p.name for p in (cohort / "imagesTr").iterdir()) == before


@pytest.mark.parametrize("values, flag", [
    ({"cases": 0}, "nothing to write"), ({"cases": -1}, "--cases"), ({"inserted": 1}, "--totalseg"),
    ({"seed": -2}, "--seed"),
])
def test_settings_are_checked(values, flag):
    with pytest.raises(InputError, match=flag):
        SmallLesionDataSettings(**values)


def test_inserted_cases_need_the_example_ct_and_nothing_is_written(tmp_path):
    with pytest.raises(InputError, match="example_ct_sm"):
        write_dataset(tmp_path / "out", SmallLesionDataSettings(cases=1, inserted=2, totalseg=tmp_path / "nope"))
    assert not (tmp_path / "out").exists()


def test_inserted_cases_keep_together_in_folds(shared_data, tmp_path):
    source = totalseg(shared_data)
    out = write_dataset(tmp_path / "D", SmallLesionDataSettings(cases=3, inserted=2, totalseg=source, seed=3, **TINY))
    dataset = Dataset(out)
    for fold in range(2):
        held = set(fold_split(dataset, 2, fold).held_out)
        assert {"ins_000", "ins_001"} <= held or not {"ins_000", "ins_001"} & held
    original = read_image(source / data.TOTALSEG_CT)
    bowel = read_image(source / data.TOTALSEG_SEG).array == data.SMALL_BOWEL_LABEL
    spacing = original.spacing[::-1]
    distance = ndimage.distance_transform_edt(~bowel, sampling=spacing) + \
        ndimage.distance_transform_edt(bowel, sampling=spacing)
    for name in ("ins_000", "ins_001"):
        case, record = dataset.case(name), dataset.meta["cases"][name]
        ct, label = case.read_images()[0], case.read_label()
        assert ct.same_grid(original) and "real CT" in record["source"]
        assert components(label.array)[1] == len(record["lesions"]) >= 1
        for lesion in record["lesions"]:
            i, j, k = np.rint(world_to_index(ct, [lesion["centre_lps"]])[0]).astype(int)
            assert label.array[k, j, i] == 1 and distance[k, j, i] <= data.NEAR_BOWEL_MM
        far = ndimage.distance_transform_edt(label.array == 0, sampling=spacing) > 20.0
        assert np.array_equal(ct.array[far], original.array[far])


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


def test_command_line(tmp_path, capsys):
    from lesionseg import cli

    base = ["--progress", "none", "data", "synthetic", "small-lesion-il"]
    assert cli.main([*base, "-o", str(tmp_path / "D"), "--cases", "1", "--seed", "2", "--shape", "24", "48", "48",
                     "--spacing", "1.2", "1.2", "1.6"]) == 0
    assert "1 training and 0 test cases" in capsys.readouterr().out
    assert json.loads((tmp_path / "D" / "dataset.json").read_text())["seed"] == 2
    assert cli.main([*base, "-o", str(tmp_path / "E"), "--cases", "0", "--inserted", "1"]) == 2
    assert "--inserted needs --totalseg" in capsys.readouterr().err and not (tmp_path / "E").exists()


def test_the_shipped_models_split_is_the_common_fold_0_of_3():
    """The shipped model was trained with the method's own ``folds`` (before the dataset convention); the common
    patient-wise split deals 24 phantoms (each its own patient) into the same folds."""
    from lesionseg.data import Case
    from lesionseg.modelfolder import PACKAGE_WEIGHTS

    card_path = PACKAGE_WEIGHTS / "small-lesion-il" / "model.json"
    if not card_path.is_file():
        pytest.skip("the small-lesion-il model is not installed")
    training = json.loads(card_path.read_text())["training"]
    cases = [Case(f"sb_{i:03d}", (Path(f"sb_{i:03d}_0000.nii.gz"),), Path(f"sb_{i:03d}.nii.gz"), f"sb_{i:03d}")
             for i in range(24)]
    split = fold_split(cases, training["folds"], training["fold"], training["seed"])
    assert list(split.held_out) == training["held_out_cases"] and list(split.train) == training["train_cases"]
