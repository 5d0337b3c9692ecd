"""recist-coseg: crop frame, GrabCut seeding, network, pairs, segmenter (shipped weights) and its options, bad
input, refine CLI. Training, evaluation and the dataset samples: ``test_recist_train.py``."""
from __future__ import annotations

import argparse
import warnings

import cv2
import numpy as np
import pytest
import torch

from lesionseg import Image, InputError, LesionSegWarning, OutputExistsError, RecistLine, build
from lesionseg.geometry import RecistIndex, index_to_world
from lesionseg.io import read_image, write_image
from lesionseg.metrics import dice, recist_axes
from lesionseg.modelfolder import find_model_folder
from lesionseg.methods.recist import cli_refine
from lesionseg.methods.recist.initial_mask import (crop_frame, grabcut_from_recist, network_input, recist_classes,
                                                  slice_axes)
from lesionseg.methods.recist.network import RecistCoSeg
from lesionseg.methods.recist.pairs import cluster_lesions, partners, stratified_split
from lesionseg.methods.recist.segmenter import RecistCoSegSegmenter, RecistOptions
from lesionseg.nets.unet import build_network


def nodule_case(seed: int = 0, radius_mm: float = 6.0) -> tuple[Image, Image]:
    """A lung-like (5, 64, 64) CT, 0.7 x 0.7 x 1.5 mm, with a solid nodule and its truth."""
    rng = np.random.default_rng(seed)
    spacing = np.array([0.7, 0.7, 1.5])
    k, j, i = np.indices((5, 64, 64)).astype(float)
    r = np.sqrt(((i - 30) * spacing[0]) ** 2 + ((j - 33) * spacing[1] / 0.8) ** 2 + ((k - 2) * spacing[2]) ** 2)
    truth = (r <= radius_mm).astype(np.uint8)
    arr = np.where(truth > 0, 30.0, -850.0) + rng.normal(0, 25, truth.shape)
    origin = (-20.0, 15.0, 100.0)
    return Image(arr.astype(np.float32), spacing, origin), Image(truth, spacing, origin)


def recist_of(truth: Image) -> RecistLine:
    axes = recist_axes(truth)
    return RecistLine(*axes.long_endpoints_lps, *axes.short_endpoints_lps)


def slice_dice(pred: Image, truth: Image, k: int) -> float:
    """Dice of slice ``k`` of two label images on one grid."""
    return dice(Image(pred.array[k], pred.spacing), Image(truth.array[k], truth.spacing))


def shipped() -> RecistCoSegSegmenter:
    folder = find_model_folder("recist-coseg")
    if folder is None:
        pytest.skip("no recist-coseg weights shipped in this installation")
    return RecistCoSegSegmenter(model=folder)


def test_crop_frame_maps_both_ways():
    recist = RecistIndex(0, np.array([[10.0, 20.0], [30.0, 20.0]]), None)
    frame = crop_frame(recist, np.array([0.5, 1.0, 2.0]), (40, 50), size=64, context=2.0, min_side_mm=1.0)
    assert frame.pixel_mm == pytest.approx(2.0 * 10.0 / 64)  # long axis 20 px * 0.5 mm = 10 mm
    np.testing.assert_allclose(frame.to_crop(np.array([[20.0, 20.0]])), [[31.5, 31.5]])
    np.testing.assert_allclose(frame.to_crop(recist.long)[:, 1], [31.5, 31.5])
    crop = frame.sample(np.full((40, 50), 7.0))
    assert crop.shape == (1, 64, 64) and np.all(crop == 7.0)
    back = frame.paste(np.ones((64, 64)))
    assert back.shape == (40, 50) and back[20, 20] == 1.0 and back[0, 0] == 0.0


def test_recist_classes_seeds():
    long_uv, short_uv = np.array([[30.0, 64.0], [98.0, 64.0]]), np.array([[64.0, 40.0], [64.0, 88.0]])
    classes = recist_classes(128, long_uv, short_uv)
    assert classes[64, 64] == cv2.GC_FGD and classes[64, 40] == cv2.GC_FGD
    assert classes[0, 0] == cv2.GC_BGD and classes[127, 127] == cv2.GC_BGD
    assert classes[40, 40] in (cv2.GC_PR_FGD, cv2.GC_PR_BGD) and classes[64, 26] == cv2.GC_PR_BGD
    only_long = recist_classes(128, long_uv, None)
    assert only_long[64, 64] == cv2.GC_FGD and only_long[30, 64] != cv2.GC_BGD  # box from the long axis
    with pytest.raises(InputError, match="zero length"):
        recist_classes(128, np.array([[5.0, 5.0], [5.0, 5.0]]), None)


def test_grabcut_from_recist_finds_a_disk():
    yy, xx = np.indices((128, 128))
    disk = (xx - 64) ** 2 + (yy - 60) ** 2 <= 30 ** 2
    crop = np.where(disk, 40.0, -800.0) + np.random.default_rng(1).normal(0, 20, (3, 128, 128))
    mask = grabcut_from_recist(crop, np.array([[35.0, 60.0], [93.0, 60.0]]), np.array([[64.0, 31.0], [64.0, 89.0]]))
    assert 2 * (mask & disk).sum() / (mask.sum() + disk.sum()) > 0.9
    with pytest.raises(InputError):
        grabcut_from_recist(crop[0], np.array([[35.0, 60.0], [93.0, 60.0]]), None)


@pytest.mark.parametrize("attention", ["none", "ca", "csa"])
def test_network_shapes_and_self_pairing(attention):
    torch.manual_seed(0)
    net = build_network("RecistCoSeg", {"channels": [4, 8], "blocks": [1, 1], "attention": attention}).eval()
    a, b = torch.rand(2, 2, 32, 32), torch.rand(2, 2, 32, 32)
    with torch.inference_mode():
        out_a, out_b = net(a, b)
        self_a, self_again = net(a)
        explicit, _ = net(a, a)
    assert out_a.shape == out_b.shape == (2, 2, 32, 32)
    torch.testing.assert_close(self_a, explicit)
    torch.testing.assert_close(self_a, self_again)
    assert net.embed(a).shape == (2, 8)


@pytest.mark.parametrize("encoder", ["resnet", "drn", "vgg"])
def test_paper_encoder_configurations_build(encoder):
    net = RecistCoSeg(encoder=encoder, channels=(4, 4, 4, 4), blocks=(1, 1, 1, 1)).eval()
    with torch.inference_mode():
        out, _ = net(torch.rand(1, 2, 64, 64))
    assert out.shape == (1, 2, 64, 64)
    strides = [64 // f.shape[-1] for f in net.encoder(torch.rand(1, 2, 64, 64))]
    assert strides == {"resnet": [4, 8, 16, 32], "drn": [4, 8, 8, 8], "vgg": [1, 2, 4, 8]}[encoder]
    with pytest.raises(ValueError):
        RecistCoSeg(encoder="alexnet")


def test_pairs_within_clusters():
    rng = np.random.default_rng(0)
    emb = np.r_[rng.normal(0, 0.1, (6, 4)), rng.normal(5, 0.1, (6, 4))]
    ids = ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "f", "f"]
    clusters = cluster_lesions(emb, ids, k=2, seed=0)
    assert clusters["a"] == clusters["b"] == clusters["c"] != clusters["d"] == clusters["e"] == clusters["f"]
    mates = partners(ids, clusters, np.random.default_rng(1))
    for i, j in enumerate(mates):
        assert ids[i] != ids[j] and clusters[ids[i]] == clusters[ids[j]]
    chosen = stratified_split(ids, clusters, 0.3, np.random.default_rng(2))
    assert {clusters[n] for n in chosen} == {0, 1}


def test_slice_axes_and_network_input():
    mask = np.zeros((1, 20, 30), np.uint8)
    mask[0, 5:9, 4:24] = 1
    long_ij, short_ij = slice_axes(Image(mask, (0.5, 0.5, 1.0)), 0)
    assert np.linalg.norm(long_ij[1] - long_ij[0]) == pytest.approx(np.hypot(20, 4), abs=0.5)
    assert np.linalg.norm(short_ij[1] - short_ij[0]) == pytest.approx(4.0, abs=0.6)
    x = network_input(np.array([[-1000.0, -175.0, 275.0, 400.0]]))
    np.testing.assert_allclose(x[:, 0], [[0, 825 / 1400, 1275 / 1400, 1], [0, 0, 1, 1]])


def test_shipped_weights_segment_a_nodule():
    seg = shipped()
    image, truth = nodule_case()
    seg.set_image(image)
    line = recist_of(truth)
    out = seg.predict(line)
    assert out.same_grid(image, tol=0) and out.array.dtype == np.uint8
    k = recist_axes(truth).k
    assert out.array[k].any() and not np.delete(out.array, k, axis=0).any()  # 2D: RECIST slice only
    assert slice_dice(out, truth, k) > 0.8
    assert slice_dice(seg.grabcut(line), truth, k) > 0.8
    seg.set_partner(line)
    np.testing.assert_array_equal(seg.predict(line).array, out.array)  # partner = itself, explicitly


def test_bad_prompts():
    seg = shipped()
    image, truth = nodule_case()
    seg.set_image(image)
    p = index_to_world(image, np.array([[20, 33, 2], [40, 33, 2], [30, 26, 2], [30, 40, 2], [30, 26, 4],
                                        [30, 40, 4], [90, 33, 2], [22, 28, 2], [22, 38, 2], [40, 33, 3]]))
    with pytest.raises(InputError, match="zero length"):
        RecistLine(p[0], p[0])
    with pytest.raises(InputError, match="different slices"):
        seg.predict(RecistLine(p[0], p[1], p[4], p[5]))
    with pytest.raises(InputError, match="outside"):
        seg.predict(RecistLine(p[0], p[6]))
    with pytest.raises(InputError, match="RecistLine"):
        seg.predict(None)
    with pytest.warns(LesionSegWarning, match="does not cross"):
        seg.predict(RecistLine(p[0], p[1], p[7] + [-8, 0, 0], p[8] + [-8, 0, 0]))
    with pytest.warns(LesionSegWarning, match="not on an axial slice"):
        out = seg.predict(RecistLine(p[0], p[9]))
    assert np.count_nonzero(out.array.reshape(5, -1).any(axis=1)) == 1


def _refine_args(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_refine.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["refine", str(tmp_path / "ct.nii.gz"), str(tmp_path / "m.nii.gz"),
                              "-o", str(tmp_path / "out.nii.gz"), *extra])


def test_refine_cli(tmp_path):
    image, truth = nodule_case()
    write_image(image, tmp_path / "ct.nii.gz")
    shrunk = truth.array.copy()
    shrunk[:, :, 30:] = 0
    write_image(truth.with_array(shrunk), tmp_path / "m.nii.gz")
    centre = index_to_world(image, np.array([[34, 33, 2]]))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli_refine.run(_refine_args(tmp_path, "--fg-scribble", *map(str, centre))) == 0
    out = read_image(tmp_path / "out.nii.gz")
    assert out.same_grid(image) and out.array[2, 33, 34] == 1
    assert slice_dice(out, truth, 2) > 0.8
    with pytest.raises(OutputExistsError):
        cli_refine.run(_refine_args(tmp_path))
    with pytest.raises(InputError, match="triples"):
        cli_refine.run(_refine_args(tmp_path, "--overwrite", "--bg-scribble", "1", "2"))


@pytest.mark.parametrize("extra, message", [
    (["--iterations", "0"], "--iterations must be a whole number >= 1, got 0"),
    (["--crf-iterations", "0"], "--crf-iterations must be a whole number >= 1, got 0"),
    (["--radius-mm", "nan"], "--radius-mm must be a number >= 0, got nan"),
    (["--band-mm", "-1"], "--band-mm must be a number >= 0, got -1"),
    (["--gaussian-sxy-mm", "0"], "--gaussian-sxy-mm must be a number > 0, got 0"),
    (["--bilateral-compat", "-2"], "--bilateral-compat must be a number >= 0, got -2"),
    (["--label", "-1"], "--label must be a whole number >= 0, got -1"),
    (["--label", "7"], "the mask M holds no voxel of --label 7 (its labels: 1) and no --fg-scribble was given: "
                       "nothing to refine"),
    (["--mask-moved"], "the mask M is on another grid than the image I (origin (-20, 4, 0) vs (-30, 4, 0) mm); "
                       "resample it onto that grid first"),
    (["--mask-empty"], "the mask M is empty and no --fg-scribble was given: nothing to refine"),
])
def test_refine_cli_names_the_flags_and_checks_the_grid_first(tmp_path, capsys, extra, message):
    """``lesionseg refine``: one ``error:`` line naming the flag as typed; a mask on another grid is reported as
    such (also when, moved off the image, it would hold nothing there)."""
    from lesionseg import cli

    image = Image(np.zeros((3, 16, 16), np.int16), (1.0, 1.0, 2.0), (-30.0, 4.0, 0.0))
    label = np.zeros(image.shape, np.uint8)
    label[1, 5:9, 5:9] = 1
    mask = image.with_array(label)
    if "--mask-moved" in extra:
        mask = Image(label, image.spacing, (-20.0, 4.0, 0.0))
    if "--mask-empty" in extra:
        mask = image.with_array(np.zeros(image.shape, np.uint8))
    extra = [e for e in extra if not e.startswith("--mask-")]
    write_image(image, tmp_path / "ct.nii.gz")
    write_image(mask, tmp_path / "m.nii.gz")
    code = cli.main(["--progress", "none", "refine", str(tmp_path / "ct.nii.gz"), str(tmp_path / "m.nii.gz"),
                     "-o", str(tmp_path / "out.nii.gz"), *extra])
    stdout, stderr = capsys.readouterr()
    expected = message.replace("M", str(tmp_path / "m.nii.gz"), 1).replace(" I ", f" {tmp_path / 'ct.nii.gz'} ")
    assert code == 2 and stdout == "" and stderr == f"error: {expected}\n"
    assert not (tmp_path / "out.nii.gz").exists()


def test_cli_predict(tmp_path):
    from lesionseg.cli import main

    shipped()
    image, truth = nodule_case()
    write_image(image, tmp_path / "ct.nii.gz")
    line = recist_of(truth)
    ends = [str(v) for p in (line.long_start, line.long_end) for v in p]
    short = [str(v) for p in (line.short_start, line.short_end) for v in p]
    out = tmp_path / "mask.nii.gz"
    argv = ["--progress", "none", "predict", "recist-coseg", str(tmp_path / "ct.nii.gz"), "-o", str(out),
            "--device", "cpu", "--recist", *ends, "--recist-short", *short]
    assert main(argv + ["--no-crf"]) == 0
    label = read_image(out)
    k = recist_axes(truth).k
    assert label.same_grid(image) and slice_dice(label, truth, k) > 0.8
    assert main(argv) == 2  # the output exists: one clear error, file kept
    assert main(argv[:-7] + ["--overwrite"]) == 0  # without the short axis


def test_propagation_to_neighbouring_slices():
    seg = shipped()
    image, truth = nodule_case(radius_mm=5.0)
    seg.set_image(image)
    line = recist_of(truth)
    flat = seg.predict(line)
    seg.propagate = 10
    grown = seg.predict(line)
    k = recist_axes(truth).k
    np.testing.assert_array_equal(grown.array[k], flat.array[k])
    filled = grown.array.reshape(5, -1).any(axis=1)
    assert filled.sum() >= 3 and filled[k - 1] and filled[k + 1]
    assert dice(grown, truth) > dice(flat, truth) + 0.2
    assert seg.options == RecistOptions(propagate=10)
    with pytest.raises(InputError, match="--propagate must be a whole number >= 0, got -1"):
        seg.propagate = -1
    assert seg.propagate == 10


def test_options_and_the_api_of_before():
    """``RecistOptions`` carries every predict setting; ``use_crf``/``threshold`` keywords and the ``use_crf`` /
    ``propagate`` / ``threshold`` attributes of before read and set them."""
    folder = find_model_folder("recist-coseg")
    if folder is None:
        pytest.skip("no recist-coseg weights shipped in this installation")
    assert RecistOptions() == RecistOptions(use_crf=True, propagate=0, threshold=0.5)
    assert [(d["name"], d["flag"]) for d in RecistOptions.describe()] == [
        ("use_crf", "--crf"), ("propagate", "--propagate"), ("threshold", "--threshold")]
    parser = argparse.ArgumentParser()
    RecistOptions.add_arguments(parser)
    assert RecistOptions.from_namespace(parser.parse_args(["--no-crf", "--propagate", "3"])) == \
        RecistOptions(use_crf=False, propagate=3)
    for bad, message in (({"propagate": -1}, "--propagate must be a whole number >= 0, got -1"),
                         ({"threshold": 1.0}, "--threshold must be a number between 0 and 1, got 1.0")):
        with pytest.raises(InputError, match=message):
            RecistOptions(**bad)
    seg = RecistCoSegSegmenter(model=folder, use_crf=False, threshold=0.4)
    assert seg.options == RecistOptions(use_crf=False, threshold=0.4) and not seg.use_crf
    seg.use_crf, seg.propagate = True, 2
    assert seg.options == RecistOptions(use_crf=True, propagate=2, threshold=0.4)
    assert build("recist-coseg", device="cpu", options=RecistOptions(propagate=1)).propagate == 1
