"""Dataset importers (``lesionseg.data.importers``): each kind on a tiny source written here in its public
layout, read back with :class:`lesionseg.data.Dataset` (check, channels, labels, patients, case names, values
and geometry), its refusal of a wrong source, and (where ../shared/data is present) a few real cases."""
from __future__ import annotations

import csv
import filecmp
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lesionseg import Image, InputError, OutputExistsError, read_image, write_image
from lesionseg.data import Dataset, DatasetWriter
from lesionseg.data.importers import IMPORTERS, import_dataset
from lesionseg.data.importers._common import OPTION_TYPES, sanitise
from lesionseg.pet import pair_pet_ct

SPACING, ORIGIN = (4.0, 4.0, 3.0), (-10.0, 20.0, 30.0)


def _img(array, spacing=SPACING, origin=ORIGIN, direction=np.eye(3)) -> Image:
    return Image(np.asarray(array), spacing, origin, direction)


def _save(image: Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(image, path)


def _pet(rng, shape=(8, 10, 12)) -> np.ndarray:
    return rng.gamma(2.0, 1.0, size=shape).astype(np.float32)


def _ct(rng, shape=(8, 10, 12)) -> np.ndarray:
    return rng.integers(-1000, 1000, size=shape).astype(np.int16)


def _mask(shape=(8, 10, 12)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[2:5, 3:6, 4:8] = 1
    return mask


def _same_geometry(a: Image, b: Image) -> None:
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-6)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-6)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-6)
    assert a.shape == b.shape


def test_registry_lists_every_kind_with_typed_options():
    assert set(IMPORTERS) == {"autopet", "msd", "nnunet", "ibsi-sts", "lidc-vois", "deeplesion-3d", "deeplesion"}
    for name, importer in IMPORTERS.items():
        assert importer.name == name and importer.help and "\n" not in importer.help
        for option, (typ, default, text) in importer.options.items():
            assert typ in OPTION_TYPES and text
            assert default is None or isinstance(default, typ)
        params = list(inspect.signature(importer.function).parameters)
        assert params == ["source", "output", "overwrite", "progress", *importer.options]
    with pytest.raises(InputError, match="unknown dataset kind 'dicom'.*autopet"):
        import_dataset("dicom", ".", "out")
    with pytest.raises(InputError, match="no option --speed.*--limit"):
        import_dataset("lidc-vois", ".", "out", speed=2)
    with pytest.raises(InputError, match="--limit must be a whole number"):
        import_dataset("lidc-vois", ".", "out", limit="many")


def test_sanitise_keeps_safe_characters():
    assert sanitise("PETCT_0a1b_03-23-2003-NA-PET-CT Ganzkoerper  primaer mit KM-10445") == \
        "PETCT_0a1b_03-23-2003-NA-PET-CT_Ganzkoerper_primaer_mit_KM-10445"
    assert sanitise("._a/b") == "a_b"


# --- autopet ---------------------------------------------------------------------------------------------------

STUDY = "03-23-2003-NA-PET-CT Ganzkoerper  primaer mit KM-10445"


def _autopet(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for patient, study, off_grid in (("PETCT_0a1b", STUDY, False), ("PETCT_0a1b", "07-01-2004-NA-x", False),
                                     ("PETCT_ff", "01-01-2001-NA-y", True)):
        folder = root / patient / study
        _save(_img(_pet(rng)), folder / "SUV.nii.gz")
        _save(_img(_pet(rng) * 1000), folder / "PET.nii.gz")
        ct = _img(_ct(rng), (2.0, 2.0, 3.0), (-11.0, 19.0, 30.0)) if off_grid else _img(_ct(rng))
        _save(ct, folder / "CTres.nii.gz")
        _save(_img(_mask()), folder / "SEG.nii.gz")
    return root


def test_autopet_copies_studies_and_keeps_patients(tmp_path):
    src = _autopet(tmp_path / "FDG-PET-CT-Lesions")
    out = import_dataset("autopet", src, tmp_path / "Dataset001_autoPET")
    ds = Dataset(out)
    ds.check()
    assert ds.channel_names == ("PET", "CT") and ds.labels == {"background": 0, "lesion": 1}
    first = "PETCT_0a1b_03-23-2003-NA-PET-CT_Ganzkoerper_primaer_mit_KM-10445"
    assert [c.name for c in ds.cases()] == [first, "PETCT_0a1b_07-01-2004-NA-x", "PETCT_ff_01-01-2001-NA-y"]
    assert {c.name: c.patient for c in ds.cases()}[first] == "PETCT_0a1b"
    assert ds.meta["source"] == str(src.resolve()) and ds.meta["synthetic"] is False and ds.meta["licence"]
    case = ds.case(first)
    study = src / "PETCT_0a1b" / STUDY
    assert filecmp.cmp(case.images[0], study / "SUV.nii.gz", shallow=False)
    assert filecmp.cmp(case.images[1], study / "CTres.nii.gz", shallow=False)
    assert filecmp.cmp(case.label, study / "SEG.nii.gz", shallow=False)
    off = ds.case("PETCT_ff_01-01-2001-NA-y")
    suv, ctres = (read_image(src / "PETCT_ff" / "01-01-2001-NA-y" / f) for f in ("SUV.nii.gz", "CTres.nii.gz"))
    pet, ct = off.read_images()
    expected = pair_pet_ct(suv, ctres)
    np.testing.assert_array_equal(ct.array, expected.array)
    _same_geometry(ct, suv)
    np.testing.assert_array_equal(pet.array, suv.array)
    np.testing.assert_array_equal(off.read_label().array, _mask())
    with pytest.raises(OutputExistsError):
        import_dataset("autopet", src, out)
    assert len(Dataset(import_dataset("autopet", src, out, overwrite=True, limit=1)).cases()) == 1


def test_autopet_refuses_other_layouts(tmp_path):
    (tmp_path / "flat").mkdir()
    _save(_img(_mask()), tmp_path / "flat" / "SUV.nii.gz")
    with pytest.raises(InputError, match=r"not a autopet source: expected .*<patient>/<study>/SUV.nii.gz"):
        import_dataset("autopet", tmp_path / "flat", tmp_path / "out")
    src = _autopet(tmp_path / "src")
    (src / "PETCT_ff" / "01-01-2001-NA-y" / "SEG.nii.gz").unlink()
    with pytest.raises(InputError, match="lacks SEG.nii.gz"):
        import_dataset("autopet", src, tmp_path / "out")
    with pytest.raises(InputError, match="no such folder"):
        import_dataset("autopet", tmp_path / "missing", tmp_path / "out")
    with pytest.raises(InputError, match="is inside the source"):
        import_dataset("autopet", src, src / "Dataset001_autoPET")
    assert not (tmp_path / "out").exists()


# --- msd -------------------------------------------------------------------------------------------------------

def _msd(root: Path, modalities: dict, four_d: bool) -> Path:
    rng = np.random.default_rng(2)
    label = _img(_mask() * 2)
    training, test = [], []
    for case, is_test in (("task_001", False), ("task_002", False), ("task_003", True)):
        folder = "imagesTs" if is_test else "imagesTr"
        path = root / folder / f"{case}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        if four_d:
            arr = np.stack([_ct(rng) + 10 * t for t in range(len(modalities))])
            vol = sitk.GetImageFromArray(arr, isVector=False)
            vol.SetSpacing(SPACING + (1.0,))
            vol.SetOrigin(ORIGIN + (0.0,))
            sitk.WriteImage(vol, str(path))
        else:
            _save(_img(_ct(rng)), path)
        (root / folder / f"._{case}.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS junk")
        if is_test:
            test.append(f"./imagesTs/{case}.nii.gz")
        else:
            _save(label, root / "labelsTr" / f"{case}.nii.gz")
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    training.append({"image": "./imagesTr/._task_001.nii.gz", "label": "./labelsTr/._task_001.nii.gz"})
    meta = {"name": "Pancreas", "description": "Pancreas and tumour", "reference": "MSKCC", "licence": "CC-BY-SA 4.0",
            "release": "1.0 04/05/2018", "tensorImageSize": "4D" if four_d else "3D", "modality": modalities,
            "labels": {"0": "background", "1": "pancreas", "2": "cancer"}, "numTraining": 2, "numTest": 1,
            "training": training, "test": test}
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def test_msd_3d_task_is_copied_byte_for_byte(tmp_path):
    src = _msd(tmp_path / "Task07_Pancreas", {"0": "CT"}, four_d=False)
    ds = Dataset(import_dataset("msd", src, tmp_path / "Dataset007_Pancreas"))
    ds.check()
    assert ds.channel_names == ("CT",)
    assert ds.labels == {"background": 0, "pancreas": 1, "cancer": 2}
    assert [c.name for c in ds.cases()] == ["task_001", "task_002"]
    assert [(c.name, c.label) for c in ds.cases("test")] == [("task_003", None)]
    assert filecmp.cmp(ds.case("task_001").images[0], src / "imagesTr" / "task_001.nii.gz", shallow=False)
    assert filecmp.cmp(ds.case("task_001").label, src / "labelsTr" / "task_001.nii.gz", shallow=False)
    assert ds.name == "Pancreas" and ds.meta["licence"] == "CC-BY-SA 4.0" and "Antonelli" in ds.meta["reference"]


def test_msd_4d_task_is_split_into_channels(tmp_path):
    src = _msd(tmp_path / "Task05_Prostate", {"0": "T2", "1": "ADC"}, four_d=True)
    ds = Dataset(import_dataset("msd", src, tmp_path / "Dataset005_Prostate"))
    ds.check()
    assert ds.channel_names == ("T2", "ADC")
    four = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "imagesTr" / "task_002.nii.gz")))
    t2, adc = ds.case("task_002").read_images()
    np.testing.assert_array_equal(t2.array, four[0])
    np.testing.assert_array_equal(adc.array, four[1])
    _same_geometry(t2, ds.case("task_002").read_label())
    np.testing.assert_allclose(t2.origin, ORIGIN)
    assert len(ds.case("task_003").images) == 2 and ds.case("task_003").test


def test_msd_refuses_other_layouts(tmp_path):
    src = _msd(tmp_path / "Task07", {"0": "CT"}, four_d=False)
    meta = json.loads((src / "dataset.json").read_text())
    del meta["training"]
    (src / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="expected a Medical Segmentation Decathlon task folder"):
        import_dataset("msd", src, tmp_path / "out")
    (src / "dataset.json").unlink()
    with pytest.raises(InputError, match="not a msd source"):
        import_dataset("msd", src, tmp_path / "out")
    nn = _nnunet(tmp_path / "nn")
    with pytest.raises(InputError, match="import nnunet"):
        import_dataset("msd", nn, tmp_path / "out")


# --- nnunet ----------------------------------------------------------------------------------------------------

def _nnunet(root: Path) -> Path:
    rng = np.random.default_rng(3)
    with DatasetWriter(root, ("PET", "CT"), {"background": 0, "lesion": 1},
                       {"name": "Demo", "reference": "ours", "synthetic": True}) as ds:
        for case, patient, test in (("a1", "A", False), ("a2", "A", False), ("b1", "B", False), ("t1", None, True)):
            ds.add(case, [_img(_pet(rng)), _img(_ct(rng))], _img(_mask()), patient=patient, test=test,
                   prompts=[{"kind": "box", "corner_a": [0, 0, 0], "corner_b": [1, 2, 3]}] if case == "a1" else None)
        ds.set_splits([{"train": ["a1", "a2"], "val": ["b1"]}, {"train": ["b1"], "val": ["a1", "a2"]}])
    return root


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_nnunet_copies_everything_and_leaves_the_source(tmp_path):
    src = _nnunet(tmp_path / "Dataset100_Demo")
    before = _tree(src)
    ds = Dataset(import_dataset("nnunet", src, tmp_path / "Dataset101_Copy", check=True))
    ds.check()
    assert _tree(src) == before
    assert ds.channel_names == ("PET", "CT") and ds.synthetic and ds.meta["reference"] == "ours"
    assert ds.meta["source"] == str(src.resolve()) and ds.meta["numTraining"] == 3
    assert {c.name: c.patient for c in ds.cases("all")} == {"a1": "A", "a2": "A", "b1": "B", "t1": "t1"}
    assert ds.splits() == Dataset(src).splits()
    assert ds.prompts("a1")[0].corner_b.tolist() == [1, 2, 3] and ds.prompts("a2") == []
    for case in Dataset(src).cases("all"):
        copy = ds.case(case.name)
        assert copy.test == case.test
        assert (case.label is None) == (copy.label is None)
        pairs = list(zip(case.images, copy.images)) + ([(case.label, copy.label)] if case.label else [])
        for a, b in pairs:
            assert filecmp.cmp(a, b, shallow=False)


def test_nnunet_reads_other_endings_and_refuses_broken_folders(tmp_path):
    src = tmp_path / "Dataset102_Nrrd"
    (src / "imagesTr").mkdir(parents=True)
    image = _img(_ct(np.random.default_rng(4)))
    _save(image, src / "imagesTr" / "c_0000.nrrd")
    _save(_img(_mask()), src / "labelsTr" / "c.nrrd")
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "x": 1},
                                                  "numTraining": 1, "file_ending": ".nrrd"}))
    ds = Dataset(import_dataset("nnunet", src, tmp_path / "out"))
    assert ds.file_ending == ".nii.gz" and ds.case("c").images[0].name == "c_0000.nii.gz"
    np.testing.assert_array_equal(ds.case("c").read_images()[0].array, image.array)
    (src / "labelsTr" / "c.nrrd").unlink()
    _save(_img(_mask(), spacing=(1.0, 1.0, 1.0)), src / "labelsTr" / "c.nrrd")
    with pytest.raises(InputError, match="case c: the label is on another grid"):
        import_dataset("nnunet", src, tmp_path / "out2", check=True)
    msd = _msd(tmp_path / "Task07", {"0": "CT"}, four_d=False)
    with pytest.raises(InputError, match="import msd"):
        import_dataset("nnunet", msd, tmp_path / "out3")
    with pytest.raises(InputError, match="not a nnunet source: expected an nnU-Net v2 raw dataset"):
        import_dataset("nnunet", src / "imagesTr", tmp_path / "out4")


# --- ibsi-sts --------------------------------------------------------------------------------------------------

def _sts(root: Path) -> Path:
    rng = np.random.default_rng(5)
    for case in ("STS_001", "STS_002"):
        _save(_img(_pet(rng)), root / case / "PET_image.nii.gz")
        _save(_img(_mask()), root / case / "PET_mask.nii.gz")
        ct = _img(_ct(rng, (12, 30, 36)), (1.5, 1.5, 2.0), (-11.0, 19.0, 31.0))
        _save(ct, root / case / "CT_image.nii.gz")
        _save(ct.with_array(_mask((12, 30, 36))), root / case / "CT_mask.nii.gz")
    (root / "cases_more.csv").write_text("case\n")
    return root


def _check_sts(ds: Dataset, src: Path, names: list[str]) -> None:
    ds.check()
    assert ds.channel_names == ("PET", "CT") and [c.name for c in ds.cases()] == names
    assert ds.patients == {} and ds.meta["licence"] == "CC BY 3.0" and "Vallieres" in ds.meta["reference"]
    for name in names:
        pet, ct = read_image(src / name / "PET_image.nii.gz"), read_image(src / name / "CT_image.nii.gz")
        got_pet, got_ct = ds.case(name).read_images()
        np.testing.assert_array_equal(got_pet.array, pet.array)
        expected = pair_pet_ct(pet, ct)
        np.testing.assert_array_equal(got_ct.array, expected.array)
        assert got_ct.array.dtype == expected.array.dtype
        _same_geometry(got_ct, pet)
        label = ds.case(name).read_label()
        np.testing.assert_array_equal(label.array, read_image(src / name / "PET_mask.nii.gz").array > 0)
        assert label.array.dtype == np.uint8


def test_ibsi_sts_pet_grid_and_ct_grid(tmp_path):
    src = _sts(tmp_path / "ibsi-sts-petct")
    _check_sts(Dataset(import_dataset("ibsi-sts", src, tmp_path / "pet")), src, ["STS_001", "STS_002"])
    ds = Dataset(import_dataset("ibsi-sts", src, tmp_path / "ct", grid="ct", names=["STS_002"]))
    ds.check()
    assert ds.channel_names == ("CT",) and [c.name for c in ds.cases()] == ["STS_002"]
    ct = read_image(src / "STS_002" / "CT_image.nii.gz")
    got = ds.case("STS_002").read_images()[0]
    np.testing.assert_array_equal(got.array, ct.array)
    _same_geometry(got, ct)
    np.testing.assert_array_equal(ds.case("STS_002").read_label().array, _mask((12, 30, 36)))
    with pytest.raises(InputError, match="has no case STS_003"):
        import_dataset("ibsi-sts", src, tmp_path / "x", names="STS_001,STS_003")
    with pytest.raises(InputError, match="--grid must be pet or ct"):
        import_dataset("ibsi-sts", src, tmp_path / "x", grid="mr")
    with pytest.raises(InputError, match="expected the IBSI soft-tissue-sarcoma layout"):
        import_dataset("ibsi-sts", src / "STS_001", tmp_path / "x")


def test_ibsi_sts_real_cases(tmp_path, shared_data):
    src = shared_data / "ibsi-sts-petct"
    names = ["STS_001", "STS_009"]
    _check_sts(Dataset(import_dataset("ibsi-sts", src, tmp_path / "sts", names=names)), src, names)


# --- lidc-vois -------------------------------------------------------------------------------------------------

def _lidc(root: Path) -> Path:
    rng = np.random.default_rng(6)
    for voi in ("LIDC-IDRI-0001_R_1", "LIDC-IDRI-0001_R_2", "LIDC-IDRI-0002_R_1"):
        _save(_img(_ct(rng), (0.7, 0.7, 2.5)), root / "image" / f"{voi}.nii.gz")
        _save(_img(_mask(), (0.7, 0.7, 2.5)), root / "nodule_mask" / f"{voi}.nii.gz")
    (root / "nodules.csv").write_text("patient_id,voi_name\n")
    return root


def _check_lidc(ds: Dataset, src: Path, names: list[str]) -> None:
    ds.check()
    assert ds.channel_names == ("CT",) and ds.labels == {"background": 0, "nodule": 1}
    assert [c.name for c in ds.cases()] == names
    for case in ds.cases():
        assert case.patient == case.name.split("_R_")[0]
        assert filecmp.cmp(case.images[0], src / "image" / f"{case.name}.nii.gz", shallow=False)
        assert filecmp.cmp(case.label, src / "nodule_mask" / f"{case.name}.nii.gz", shallow=False)


def test_lidc_vois_keep_names_and_patients(tmp_path):
    from lesionseg.data.importers.lidc import patient_of

    src = _lidc(tmp_path / "lidc")
    names = ["LIDC-IDRI-0001_R_1", "LIDC-IDRI-0001_R_2", "LIDC-IDRI-0002_R_1"]
    _check_lidc(Dataset(import_dataset("lidc-vois", src, tmp_path / "out")), src, names)
    assert Dataset(tmp_path / "out").patients == {n: n[:14] for n in names}
    ticks = []
    out = import_dataset("lidc-vois", src, tmp_path / "two", limit=2, progress=lambda d, t: ticks.append((d, t)))
    _check_lidc(Dataset(out), src, names[:2])
    assert ticks == [(1, 2), (2, 2)]
    expected = ["LIDC-IDRI-0001", "LIDC-IDRI-0001", "LIDC-IDRI-0002", "other", "plain"]
    assert [patient_of(name) for name in names + ["other_R_3", "plain"]] == expected
    (src / "nodule_mask" / f"{names[2]}.nii.gz").unlink()
    with pytest.raises(InputError, match="has no mask for LIDC-IDRI-0002_R_1"):
        import_dataset("lidc-vois", src, tmp_path / "x")
    with pytest.raises(InputError, match=r"expected SRC/image/<voi>.nii.gz"):
        import_dataset("lidc-vois", src / "image", tmp_path / "x")


def test_lidc_vois_real_cases_are_byte_identical(tmp_path, shared_data):
    src = shared_data / "lidc-nodule-vois"
    names = sorted(p.name[:-7] for p in (src / "image").glob("*.nii.gz"))[:3]
    _check_lidc(Dataset(import_dataset("lidc-vois", src, tmp_path / "lidc", limit=3)), src, names)


# --- deeplesion-3d ---------------------------------------------------------------------------------------------

def _check_deeplesion_3d(ds: Dataset, src: Path, names: list[str]) -> None:
    ds.check()
    assert ds.channel_names == ("CT",) and ds.labels == {"background": 0, "lesion": 1}
    assert [c.name for c in ds.cases()] == names
    for case in ds.cases():
        raw = read_image(src / f"{case.name}_img_uint8win.nii.gz")
        hu = raw.with_array(-175.0 + raw.array.astype(np.float32) * (275.0 - -175.0) / 255.0)  # recist's old load_case
        truth = read_image(src / f"{case.name}_lesion_mask.nii.gz").array > 0
        got = case.read_images()[0]
        np.testing.assert_array_equal(got.array, hu.array)
        _same_geometry(got, hu)
        np.testing.assert_array_equal(case.read_label().array, truth)
        assert case.patient == "DL" + case.name.split("_")[2]


def test_deeplesion_3d_back_to_hu_as_recist(tmp_path):
    rng = np.random.default_rng(7)
    src = tmp_path / "dl3d"
    for name in ("CT_Lesion_000002_03_01_035-047", "CT_Lesion_000002_04_01_010-022"):
        _save(_img(rng.integers(0, 256, (8, 10, 12)).astype(np.uint8)), src / f"{name}_img_uint8win.nii.gz")
        _save(_img(_mask()), src / f"{name}_lesion_mask.nii.gz")
    ds = Dataset(import_dataset("deeplesion-3d", src, tmp_path / "out"))
    _check_deeplesion_3d(ds, src, ["CT_Lesion_000002_03_01_035-047", "CT_Lesion_000002_04_01_010-022"])
    got = ds.cases()[0].read_images()[0].array
    raw = read_image(src / "CT_Lesion_000002_03_01_035-047_img_uint8win.nii.gz").array
    assert got.dtype == np.float32 and got[raw == 0].max() == -175.0 and got[raw == 255].min() == 275.0
    assert {c.patient for c in ds.cases()} == {"DL000002"}
    with pytest.raises(InputError, match="expected SRC/<name>_img_uint8win.nii.gz"):
        import_dataset("deeplesion-3d", tmp_path / "out", tmp_path / "x")


def test_deeplesion_3d_real_cases(tmp_path, shared_data):
    src = shared_data / "deeplesion-medsam2-3d"
    name = "CT_Lesion_000002_03_01_035-047"
    _check_deeplesion_3d(Dataset(import_dataset("deeplesion-3d", src, tmp_path / "dl", names=[name])), src, [name])


# --- deeplesion ------------------------------------------------------------------------------------------------

DL_ROWS = [  # File_name, patient, key, coordinates (long x1 y1 x2 y2, short x1 y1 x2 y2), type, range, spacing, split
    ("000001_01_01_109.png", 1, 109, "3.5, 2.0, 9.0, 6.5, 5.0, 6.0, 7.0, 3.0", 4, "108, 110", "0.8, 0.7, 5", 1),
    ("000001_01_01_109.png", 1, 109, "1, 1, 4, 1, 2, 0, 2, 2", 5, "108, 110", "0.8, 0.7, 5", 1),
    ("000002_01_01_051.png", 2, 51, "2, 3, 8, 9, 0, 0, 0, 0", 7, "49, 53", "0.6, 0.6, 2.5", 3),
    ("000003_01_01_020.png", 3, 20, "2, 3, 8, 9, 4, 5, 6, 7", 4, "19, 21", "0.6, 0.6, 2.5", 2),
]


def _deeplesion(root: Path) -> Path:
    import cv2

    rng = np.random.default_rng(8)
    for series, slices in (("000001_01_01", range(108, 111)), ("000002_01_01", range(49, 54))):
        (root / "Images_png" / series).mkdir(parents=True)
        for s in slices:
            cv2.imwrite(str(root / "Images_png" / series / f"{s:03d}.png"),
                        rng.integers(31000, 34000, (10, 12)).astype(np.uint16))
    with open(root / "DL_info.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index",
                      "Measurement_coordinates", "Bounding_boxes", "Lesion_diameters_Pixel_",
                      "Normalized_lesion_location", "Coarse_lesion_type", "Possibly_noisy", "Slice_range",
                      "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender", "Patient_age",
                      "Train_Val_Test"])
        for i, (name, patient, key, coords, kind, rng_, spacing, split) in enumerate(DL_ROWS):
            out.writerow([name, patient, 1, 1, key, coords, "0, 0, 9, 9", "7.1, 3.2", "0.4, 0.3, 0.4", kind,
                          int(i == 1), rng_, spacing, "12, 10", "-175, 275", "F", 60, split])
    return root


def test_deeplesion_writes_test_cases_with_recist_prompts(tmp_path):
    import cv2

    src = _deeplesion(tmp_path / "DeepLesion")
    ds = Dataset(import_dataset("deeplesion", src, tmp_path / "out"))
    ds.check()
    assert ds.cases("train") == [] and ds.meta["numTraining"] == 0
    names = ["000001_01_01_109_1", "000001_01_01_109_2", "000002_01_01_051_1"]
    assert [c.name for c in ds.cases("test")] == names and all(c.label is None for c in ds.cases("test"))
    assert {c.name: c.patient for c in ds.cases("test")} == dict(zip(names, ["DL000001", "DL000001", "DL000002"]))
    assert ds.meta["lesion_types"] == dict(zip(names, ["liver", "lung", "soft tissue"]))
    assert ds.meta["official_split"] == dict(zip(names, ["train", "train", "test"]))
    assert ds.meta["possibly_noisy"] == [names[1]] and "RECIST" in ds.meta["description"]
    image = ds.case(names[0]).read_images()[0]
    assert image.array.dtype == np.int16 and image.shape == (3, 10, 12)
    for k, s in enumerate(range(108, 111)):
        png = cv2.imread(str(src / "Images_png" / "000001_01_01" / f"{s:03d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(image.array[k], png.astype(np.int32) - 32768)
    np.testing.assert_allclose(image.spacing, (0.8, 0.7, 5.0))
    np.testing.assert_array_equal(image.origin, 0.0)
    np.testing.assert_array_equal(image.direction, np.eye(3))
    (prompt,) = ds.prompts(names[0])
    np.testing.assert_allclose(prompt.long_start, (3.5 * 0.8, 2.0 * 0.7, 1 * 5.0))
    np.testing.assert_allclose(prompt.long_end, (9.0 * 0.8, 6.5 * 0.7, 5.0))
    np.testing.assert_allclose(prompt.short_start, (5.0 * 0.8, 6.0 * 0.7, 5.0))
    np.testing.assert_allclose(prompt.short_end, (7.0 * 0.8, 3.0 * 0.7, 5.0))
    (no_short,) = ds.prompts(names[2])
    assert no_short.short_start is None and ds.case(names[2]).read_images()[0].shape == (5, 10, 12)
    np.testing.assert_allclose(no_short.long_start, (2 * 0.6, 3 * 0.6, 2 * 2.5))


def test_deeplesion_options_and_refusals(tmp_path):
    src = _deeplesion(tmp_path / "DeepLesion")
    ds = Dataset(import_dataset("deeplesion", src, tmp_path / "lung", types=["lung", "soft_tissue"], slices=1))
    assert [c.name for c in ds.cases("test")] == ["000001_01_01_109_2", "000002_01_01_051_1"]
    assert ds.case("000002_01_01_051_1").read_images()[0].shape == (3, 10, 12)
    assert len(Dataset(import_dataset("deeplesion", src, tmp_path / "one", limit=1)).cases("test")) == 1
    with pytest.raises(InputError, match="unknown lesion type brain"):
        import_dataset("deeplesion", src, tmp_path / "x", types=["brain"])
    with pytest.raises(InputError, match="no lesion of type kidney"):
        import_dataset("deeplesion", src, tmp_path / "x", types=["kidney"])
    with pytest.raises(InputError, match=r"expected the DeepLesion release: SRC/DL_info.csv"):
        import_dataset("deeplesion", src / "Images_png", tmp_path / "x")
    assert not (tmp_path / "x").exists()
