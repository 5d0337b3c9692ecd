"""The command line, and the bad-input catalogue: each case one clear line, exit != 0, nothing written."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from lesionseg import Image, read_image, write_image
from lesionseg.cli import main
from lesionseg.io import to_sitk


@pytest.fixture
def ct(tmp_path):
    """A 10x40x40 CT with a 40 HU sphere (radius 6 voxels) in -850 HU lung, 0.8 x 0.8 x 2 mm."""
    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[:10, :40, :40]
    sphere = ((i - 20) ** 2 + (j - 20) ** 2 + ((k - 5) * 2.5) ** 2) <= 36
    arr = np.where(sphere, 40, -850) + rng.normal(0, 15, sphere.shape)
    img = Image(arr.astype(np.int16), (0.8, 0.8, 2.0), (-16.0, -16.0, 100.0))
    write_image(img, tmp_path / "ct.nii.gz")
    write_image(img.with_array(sphere.astype(np.uint8)), tmp_path / "gt.nii.gz")
    return tmp_path / "ct.nii.gz"


BOX = ["--box", "-9", "-9", "104", "9", "9", "116"]


def run(capsys, *argv):
    code = main(["--progress", "none", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_and_evaluate(ct, tmp_path, capsys):
    out = tmp_path / "mask.nii.gz"
    code, stdout, err = run(capsys, "predict", "classical-box", ct, "-o", out, *BOX)
    assert code == 0, err
    mask = read_image(out)
    assert mask.same_grid(read_image(ct)) and mask.array.dtype == np.uint8
    code, stdout, _ = run(capsys, "evaluate", out, tmp_path / "gt.nii.gz", "--json")
    assert code == 0 and json.loads(stdout)["dice"] > 0.8


def test_box_ijk_equals_box_mm(ct, tmp_path, capsys):
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    assert run(capsys, "predict", "classical-box", ct, "-o", a, *BOX)[0] == 0
    # the LPS box above covers voxel indices 9..31 (i, j) and 2..8 (k)
    assert run(capsys, "predict", "classical-box", ct, "-o", b, "--box-ijk", 9, 9, 2, 31, 31, 8)[0] == 0
    np.testing.assert_array_equal(read_image(a).array, read_image(b).array)


def test_methods_lists_registry(capsys):
    code, out, _ = run(capsys, "methods")
    assert code == 0 and "classical-box" in out and "not needed" in out


def _four_d(path):
    sitk.WriteImage(sitk.Image([4, 4, 4, 2], sitk.sitkInt16), str(path))


def _nan(path):
    arr = np.zeros((4, 8, 8), np.float32)
    arr[1, 1, 1] = np.nan
    sitk.WriteImage(to_sitk(Image(arr)), str(path))


def _corrupt(path):
    path.write_bytes(b"not an image at all")


def _empty(path):
    path.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 0 4 4\nencoding: raw\n\n")


@pytest.mark.parametrize("name,make,expect", [
    ("missing.nii.gz", None, "no such file"),
    ("corrupt.nii.gz", _corrupt, "cannot read"),
    ("fourd.nii.gz", _four_d, "4D"),
    ("nan.mha", _nan, "NaN"),
    ("empty.nrrd", _empty, ""),
])
def test_bad_images(tmp_path, capsys, name, make, expect):
    path = tmp_path / name
    if make:
        make(path)
    code, _, err = run(capsys, "predict", "classical-box", path, "-o", tmp_path / "o.nii.gz", *BOX)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expect in err
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize("box,expect", [
    (["--box", 0, 0, 100, 0, 0, 110], "zero size"),
    (["--box", 500, 500, 100, 600, 600, 110], "entirely outside"),
])
def test_bad_boxes(ct, tmp_path, capsys, box, expect):
    code, _, err = run(capsys, "predict", "classical-box", ct, "-o", tmp_path / "o.nii.gz", *box)
    assert code == 2 and expect in err and err.count("\n") == 1
    assert not (tmp_path / "o.nii.gz").exists()


def test_box_partly_outside_warns_and_clips(ct, tmp_path, capsys):
    code, _, err = run(capsys, "predict", "classical-box", ct, "-o", tmp_path / "o.nii.gz",
                       "--box", -40, -9, 104, 9, 9, 116)
    assert code == 0 and "warning: the box lies partly outside" in err


def test_output_exists_is_not_overwritten(ct, tmp_path, capsys):
    out = tmp_path / "o.nii.gz"
    out.write_bytes(b"keep me")
    code, _, err = run(capsys, "predict", "classical-box", ct, "-o", out, *BOX)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"keep me"
    assert run(capsys, "predict", "classical-box", ct, "-o", out, *BOX, "--overwrite")[0] == 0
    assert read_image(out).array.dtype == np.uint8


def test_unknown_method_and_missing_prompt(ct, tmp_path, capsys):
    code, _, err = run(capsys, "predict", "no-such-method", ct, "-o", tmp_path / "o.nii.gz")
    assert code == 2 and "invalid choice" in err and err.count("\n") == 1
    code, _, err = run(capsys, "predict", "classical-box", ct, "-o", tmp_path / "o.nii.gz")
    assert code == 2 and "--box" in err


def _methods_with_weights():
    from lesionseg.modelfolder import find_model_folder
    from lesionseg.registry import list_methods

    return [c for c in list_methods() if c.needs_weights and find_model_folder(c.name) is not None]


def test_weights_with_wrong_sha256(ct, tmp_path, capsys):
    from lesionseg.modelfolder import find_model_folder

    prompts = {"box": BOX, "recist": ["--recist", -4, 0, 110, 4, 0, 110]}  # through the sphere's centre
    methods = [c for c in _methods_with_weights() if c.prompt_kind in prompts]
    if not methods:
        pytest.skip("no prompted method with shipped weights")
    cls = methods[0]
    folder = tmp_path / "tampered"
    shutil.copytree(find_model_folder(cls.name).path, folder)
    weights = next(p for p in folder.iterdir() if p.suffix == ".pt")
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    code, _, err = run(capsys, "predict", cls.name, ct, "-o", tmp_path / "o.nii.gz", *prompts[cls.prompt_kind],
                       "--weights", folder)
    assert code == 2 and "sha256" in err and err.count("\n") == 1
    assert not (tmp_path / "o.nii.gz").exists()


def test_recist_zero_length_is_one_line(capsys, tmp_path, ct):
    from lesionseg.registry import method_names

    if "recist-coseg" not in method_names():
        pytest.skip("recist-coseg is not registered yet")
    code, _, err = run(capsys, "predict", "recist-coseg", ct, "-o", tmp_path / "o.nii.gz",
                       "--recist", 0, 0, 105, 0, 0, 105)
    assert code == 2 and "zero length" in err


def test_demo_refuses_non_empty_folder(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("x")
    code, _, err = run(capsys, "demo", "-o", tmp_path / "d")
    assert code == 2 and "--overwrite" in err
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["mine.txt"]


def test_train_logs_its_epochs_by_default_and_other_commands_stay_quiet():
    import logging

    from lesionseg.cli import build_parser, log_level

    def level(argv):
        return log_level(build_parser(argv).parse_args(argv))

    assert level(["train", "tsfcn", "--data", "d", "-o", "m"]) == logging.INFO
    assert level(["--progress", "none", "train", "tsfcn", "--data", "d", "-o", "m"]) == logging.WARNING
    assert level(["methods"]) == logging.WARNING
    assert level(["-v", "methods"]) == logging.INFO


def test_train_refuses_an_unwritable_output_before_training(tmp_path, monkeypatch, capsys):
    import dataclasses

    from lesionseg.methods.tsfcn import train as tsfcn_train

    def must_not_train(args):
        raise AssertionError("training started although the output cannot be written")

    monkeypatch.setattr(tsfcn_train, "TRAINING", dataclasses.replace(tsfcn_train.TRAINING, train=must_not_train))
    data = tmp_path / "data"
    data.mkdir()
    assert main(["train", "tsfcn", "--data", str(data), "-o", str(tmp_path / "missing" / "model")]) == 2
    assert "output folder" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep")
    assert main(["train", "tsfcn", "--data", str(data), "-o", str(tmp_path / "busy")]) == 2
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep"
