"""The dataset convention (issue #16): reading, checking, splits by patient, label maps, writing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lesionseg import Image, write_image
from lesionseg.data import Dataset, DatasetWriter, deal_patients, fold_split, holdout_split
from lesionseg.data.labels import apply, describe, parse, resolve
from lesionseg.errors import InputError, OutputExistsError


def _image(value: int = 0, shape=(3, 4, 5), origin=(0.0, 0.0, 0.0)) -> Image:
    return Image(np.full(shape, value, np.int16), (1.0, 1.0, 2.0), origin)


def _dataset(tmp_path, n: int = 6, patients=None, channels=("CT",), labels=None, **meta):
    out = tmp_path / "Dataset001_Test"
    labels = labels or {"background": 0, "lesion": 1}
    with DatasetWriter(out, channels, labels, meta=meta) as ds:
        for i in range(n):
            lab = np.zeros((3, 4, 5), np.uint8)
            lab[1, 1:3, 1:3] = 1 if i % 2 else 0
            ds.add(f"case_{i:02d}", [_image(i)] * len(channels), _image().with_array(lab),
                   patient=None if patients is None else patients[i])
    return out


def test_written_dataset_is_nnunet_v2_raw_and_reads_back(tmp_path):
    out = _dataset(tmp_path, patients=["p0", "p0", "p1", "p2", "p2", "p3"], channels=("PET", "CT"),
                   name="test set", synthetic=True)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "PET", "1": "CT"} and meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["numTraining"] == 6 and meta["file_ending"] == ".nii.gz" and meta["synthetic"] is True
    assert sorted(p.name for p in (out / "imagesTr").iterdir())[:2] == ["case_00_0000.nii.gz", "case_00_0001.nii.gz"]
    ds = Dataset(out)
    cases = ds.cases()
    assert [c.name for c in cases] == [f"case_{i:02d}" for i in range(6)] and ds.synthetic
    assert [c.patient for c in cases] == ["p0", "p0", "p1", "p2", "p2", "p3"]
    assert cases[3].image("ct").name == "case_03_0001.nii.gz" and int(cases[3].read_images()[1].array[0, 0, 0]) == 3
    ds.check()
    assert ds.cases("test") == []


def test_check_names_the_broken_case(tmp_path):
    out = _dataset(tmp_path, channels=("PET", "CT"))
    (out / "imagesTr" / "case_02_0001.nii.gz").unlink()
    with pytest.raises(InputError, match="case case_02 .* lacks channel 0001 \\(CT\\)"):
        Dataset(out).cases()
    write_image(_image(origin=(5.0, 0, 0)), out / "imagesTr" / "case_02_0001.nii.gz")
    with pytest.raises(InputError, match="case case_02: channel CT is on another grid .*origin"):
        Dataset(out).check()
    write_image(_image(), out / "imagesTr" / "case_02_0001.nii.gz", overwrite=True)
    write_image(_image().with_array(np.full((3, 4, 5), 7, np.uint8)), out / "labelsTr" / "case_04.nii.gz", overwrite=True)
    with pytest.raises(InputError, match=r"case case_04: label values \[7\] are not in"):
        Dataset(out).check()
    (out / "labelsTr" / "case_05.nii.gz").unlink()
    with pytest.raises(InputError, match="case case_05 .* has no label"):
        Dataset(out).cases()


def test_not_a_dataset(tmp_path):
    with pytest.raises(InputError, match="no such dataset folder"):
        Dataset(tmp_path / "nope")
    with pytest.raises(InputError, match="not a dataset folder .*lesionseg data import"):
        Dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"a": [1, 2]}}))
    with pytest.raises(InputError, match="region labels"):
        Dataset(tmp_path)


def test_folds_never_split_a_patient_and_are_seeded(tmp_path):
    patients = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g"]
    ds = Dataset(_dataset(tmp_path, n=10, patients=patients))
    folds = deal_patients(ds.cases(), 3, seed=1)
    assert sorted(n for f in folds for n in f) == [c.name for c in ds.cases()]
    of = {c.name: c.patient for c in ds.cases()}
    for fold in folds:
        for other in folds:
            if fold is not other:
                assert not {of[n] for n in fold} & {of[n] for n in other}
    assert folds == deal_patients(ds.cases(), 3, seed=1) and folds != deal_patients(ds.cases(), 3, seed=2)
    split = fold_split(ds, 3, 2, seed=1)
    assert split.held_out == tuple(folds[2]) and set(split.train) == {n for f in folds[:2] for n in f}
    with pytest.raises(InputError, match="2 <= folds <= 7"):
        deal_patients(ds.cases(), 8)
    hold = holdout_split(ds, 0.3, seed=0)
    assert len({of[n] for n in hold.held_out}) == 2 and not {of[n] for n in hold.held_out} & {of[n] for n in hold.train}


def test_stratified_folds_share_out_each_group(tmp_path):
    ds = Dataset(_dataset(tmp_path, n=8))
    positive = lambda case: bool(case.read_label().array.any())  # noqa: E731
    folds = deal_patients(ds.cases(), 2, seed=0, stratify=positive)
    for fold in folds:
        assert sum(positive(ds.case(n)) for n in fold) == 2


def test_splits_json_overrides_dealt_folds(tmp_path):
    out = _dataset(tmp_path, n=4)
    (out / "splits.json").write_text(json.dumps([{"train": ["case_00", "case_01"], "val": ["case_02", "case_03"]},
                                                 {"train": ["case_02", "case_03"], "val": ["case_00", "case_01"]}]))
    assert fold_split(Dataset(out), 2, 1).held_out == ("case_00", "case_01")
    (out / "splits.json").write_text(json.dumps([{"train": [], "val": ["case_09"]}]))
    with pytest.raises(InputError, match="no case case_09"):
        fold_split(Dataset(out), 1 + 1, 0)


def test_label_maps():
    s4c = ("background", "pancreas", "tumour", "duct")
    msd = {"background": 0, "pancreas": 1, "cancer": 2}
    assert resolve(s4c, msd) == {1: [1], 2: [2]}                            # by name, 'cancer' is a tumour
    assert resolve(s4c, {"background": 0, "organ": 4, "t": 1, "d": 5}, "pancreas=4,tumour=1,duct=5") == \
        {1: [4], 2: [1], 3: [5]}
    assert resolve(("background", "lesion"), {"background": 0, "GTV": 3}) == {1: [3]}
    assert resolve(("background", "lesion"), {"background": 0, "x": 1}) == {1: [1]}   # the one foreground label
    with pytest.raises(InputError, match="--labels pancreas=1,tumour=2"):
        resolve(s4c, {"background": 0, "organ": 1, "thing": 2})
    with pytest.raises(InputError, match="not a label of the dataset"):
        resolve(s4c, msd, "pancreas=9")
    with pytest.raises(InputError, match="not a class of this method"):
        resolve(s4c, msd, "liver=1")
    mapping = resolve(("background", "lesion"), {"background": 0, "a": 1, "b": 2}, "lesion=1+2")
    assert mapping == {1: [1, 2]} and describe(("background", "lesion"), mapping) == "lesion=1+2"
    np.testing.assert_array_equal(apply(np.array([0, 1, 2, 3]), {1: [1, 2]}), [0, 1, 1, 0])
    assert parse({"Pancreas": 1}) == {"pancreas": [1]}


def test_writer_leaves_nothing_on_error_and_refuses_existing(tmp_path):
    out = tmp_path / "D"
    with pytest.raises(InputError, match="needs a label"):
        with DatasetWriter(out, ("CT",), {"background": 0, "lesion": 1}) as ds:
            ds.add("a", [_image()], _image().with_array(np.zeros((3, 4, 5), np.uint8)))
            ds.add("b", [_image()], None)
    assert list(tmp_path.iterdir()) == []
    _dataset(tmp_path)
    with pytest.raises(OutputExistsError):
        _dataset(tmp_path)
