"""LesionSegSmallLesionLib offline: prior choices (console and panel) and their checks, the backend's arguments, the
ROI from RAS to the CT file's LPS frame, the crop a segment's prior is learnt from, segment names and the self-test's
tiny CT (the sequential run and the prior preview: test_smalllesion_background.py; the lesion table:
test_slicer_lesiontable.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXTENSION
from LesionSegLib import lesiontable, scene

from lesionseg import Box, InputError, LesionSegWarning
from lesionseg.intensity import looks_like_ct
from lesionseg.metrics import lesion_components

sys.path.insert(0, str(EXTENSION / "LesionSegSmallLesion"))
from LesionSegSmallLesionLib import scenarios, smalllesion  # noqa: E402

IJK_TO_RAS = np.array([[-2.0, 0, 0, 40.0], [0, -2.0, 0, 30.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]])
PriorChoice = smalllesion.PriorChoice


def test_prior_choice_from_the_console(tmp_path):
    table = tmp_path / "prior.JSON"
    table.write_text("{}")
    assert smalllesion.prior_choice(None) == PriorChoice("builtin")
    assert smalllesion.prior_choice((130, 15.5)) == PriorChoice("typed", 130.0, 15.5)
    assert smalllesion.prior_choice([np.float32(-20), np.int64(3)]) == PriorChoice("typed", -20.0, 3.0)
    assert smalllesion.prior_choice(table) == PriorChoice("table", path=table)
    assert smalllesion.prior_choice(str(table)) == PriorChoice("table", path=table)
    assert smalllesion.prior_choice("Segment_1") == PriorChoice("segment", segment_id="Segment_1")
    choice = PriorChoice("typed", 1.0, 2.0)
    assert smalllesion.prior_choice(choice) is choice
    for sd in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="the prior SD must be more than 0 HU, got"):
            smalllesion.prior_choice((130.0, sd))
    with pytest.raises(ValueError, match="prior mean must be a finite number"):
        smalllesion.prior_choice((float("nan"), 5.0))
    with pytest.raises(ValueError, match="prior table .*missing.csv does not exist"):
        smalllesion.prior_choice(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="a .json or .csv file, not prior.txt"):
        smalllesion.prior_choice(tmp_path / "prior.txt")
    with pytest.raises(ValueError, match="no segment given"):
        smalllesion.prior_choice("  ")
    for bad in (42, (1.0, 2.0, 3.0), ("Segment_1", 2.0), (130.0, "15")):
        with pytest.raises(ValueError, match="prior must be None"):
            smalllesion.prior_choice(bad)


def test_panel_prior_and_input_problem():
    assert list(smalllesion.PRIOR_MODES.values()) == ["builtin", "typed", "segment"]
    assert smalllesion.panel_prior("Built-in (from the model)", 0.0, -5.0) == PriorChoice()  # typed values ignored
    assert smalllesion.panel_prior("Typed mean / SD", 120.0, 10.0) == PriorChoice("typed", 120.0, 10.0)
    assert smalllesion.panel_prior("Learn from a segment", 0, 0, "S1") == PriorChoice("segment", segment_id="S1")
    with pytest.raises(ValueError, match="SD must be more than 0"):
        smalllesion.panel_prior("typed", 120.0, 0.0)
    with pytest.raises(ValueError, match="no segment given"):
        smalllesion.panel_prior("segment", 0, 0, "")
    with pytest.raises(ValueError, match="the prior choice must be one of"):
        smalllesion.mode_kind("KDE")
    assert smalllesion.input_problem(False, "builtin", 1.0, False) == "Select the CT volume."
    assert smalllesion.input_problem(True, "Typed mean / SD", 0.0, False) == "The prior SD must be more than 0 HU."
    assert smalllesion.input_problem(True, "Learn from a segment", 1.0, False).startswith("Select the segment")
    assert smalllesion.input_problem(True, "Learn from a segment", 1.0, True) is None
    assert smalllesion.input_problem(True, "Built-in (from the model)", 0.0, False) is None
    assert smalllesion.DEFAULT_TYPED_PRIOR[1] >= smalllesion.MIN_SD_HU > 0


def test_prior_describe_and_tag(tmp_path):
    assert PriorChoice("typed", 130.0, 15.0).describe() == "typed 130 \u00b1 15 HU"
    assert PriorChoice("table", path=tmp_path / "p.csv").describe() == "table p.csv"
    assert PriorChoice("segment", segment_id="S").describe() == "learnt from segment S"
    assert PriorChoice().describe() == "built-in (the model's prior)"
    assert json.loads(PriorChoice("typed", 130.0, 15.0).tag()) == {"kind": "typed", "mean_hu": 130.0, "sd_hu": 15.0}
    assert json.loads(PriorChoice().tag()) == {"kind": "builtin"}


def test_predict_arguments(tmp_path):
    out = tmp_path / "out"
    box = Box((-12.0, -23.0, 26.0), (-8.0, -17.0, 34.0))
    args = smalllesion.predict_arguments(Path("ct.nrrd"), out, PriorChoice())
    assert args == ["predict", "small-lesion-il", "ct.nrrd", "-o", str(out / "lesions.nii.gz"), "--table",
                    str(out / "lesions.json"), "--device", "auto"]
    args = smalllesion.predict_arguments(Path("ct.nrrd"), out, PriorChoice("typed", 130.0, 15.0), box, tmp_path, "cpu")
    assert args[7:] == ["--device", "cpu", "--roi", "-12.0", "-23.0", "26.0", "-8.0", "-17.0", "34.0",
                        "--prior-mean", "130.0", "--prior-sd", "15.0", "--weights", str(tmp_path)]
    args = smalllesion.predict_arguments(Path("ct.nrrd"), out, PriorChoice("table", path=Path("p.csv")), weights="")
    assert args[-2:] == ["--prior-table", "p.csv"]
    args = smalllesion.predict_arguments(Path("ct.nrrd"), out, PriorChoice("segment", segment_id="S"))
    assert args[-2:] == ["--prior-table", str(out / "prior.json")]
    with pytest.raises(ValueError, match="weights folder .* does not exist"):
        smalllesion.predict_arguments(Path("ct"), out, PriorChoice(), weights=tmp_path / "nope")
    with pytest.raises(ValueError, match="device must be one of"):
        smalllesion.predict_arguments(Path("ct"), out, PriorChoice(), device="tpu")
    with pytest.raises(ValueError, match="needs the file"):
        PriorChoice("segment", segment_id="S").predict_arguments()


def test_prior_arguments(tmp_path):
    png = tmp_path / "p.png"
    assert smalllesion.prior_arguments(PriorChoice("typed", 130.0, 15.0), png) == [
        "prior", "--mean", "130.0", "--sd", "15.0", "--plot", str(png)]
    assert smalllesion.prior_arguments(PriorChoice(), png) == ["prior", "--plot", str(png), "--weights"]
    assert smalllesion.prior_arguments(PriorChoice(), png, weights=tmp_path) == [
        "prior", "--plot", str(png), "--weights", str(tmp_path)]
    assert smalllesion.prior_arguments(PriorChoice("table", path=Path("t.csv")), png) == [
        "prior", "--table", "t.csv", "--plot", str(png)]
    segment = PriorChoice("segment", segment_id="S")
    assert smalllesion.prior_arguments(segment, png, Path("o.json"), Path("c.nrrd"), Path("m.nrrd")) == [
        "prior", "--image", "c.nrrd", "--mask", "m.nrrd", "-o", "o.json", "--plot", str(png)]
    with pytest.raises(ValueError, match="needs the CT and mask files"):
        smalllesion.prior_arguments(segment, png)


def test_roi_goes_from_ras_to_the_ct_files_lps_frame():
    box = scene.roi_to_box(np.array([10.0, 20.0, 30.0]), np.array([4.0, 6.0, 8.0]))
    assert smalllesion.roi_arguments(box) == ["--roi", "-12.0", "-23.0", "26.0", "-8.0", "-17.0", "34.0"]
    assert smalllesion.roi_arguments(None) == []
    assert smalllesion.box_in_node_frame(box, None) is box
    shift = np.eye(4)
    shift[:3, 3] = (5.0, -7.0, 2.0)  # world = node + (5, -7, 2) RAS, so node = world - shift
    moved = smalllesion.box_in_node_frame(box, np.linalg.inv(shift))
    np.testing.assert_allclose(moved.lo, [-12.0 + 5.0, -23.0 - 7.0, 24.0])
    np.testing.assert_allclose(moved.hi, [-8.0 + 5.0, -17.0 - 7.0, 32.0])
    turn = np.eye(4)
    turn[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]  # 90 degrees about S: node R = world A, node A = -world R
    turned = smalllesion.box_in_node_frame(box, turn.T)
    np.testing.assert_allclose(turned.lo, [-23.0, 8.0, 26.0])
    np.testing.assert_allclose(turned.hi, [-17.0, 12.0, 34.0])


def test_roi_overlap_check():
    shape = (10, 20, 20)  # i: RAS x 40 .. 2 (LPS -40 .. -2), j: LPS -30 .. 8, k: S -20 .. 7
    smalllesion.check_roi_overlap(Box((-30.0, -20.0, -10.0), (-20.0, -10.0, 0.0)), shape, IJK_TO_RAS)
    with pytest.warns(LesionSegWarning, match="partly outside"):
        smalllesion.check_roi_overlap(Box((-50.0, -20.0, -10.0), (-30.0, -10.0, 0.0)), shape, IJK_TO_RAS)
    with pytest.raises(InputError, match="entirely outside"):
        smalllesion.check_roi_overlap(Box((-30.0, -20.0, 100.0), (-20.0, -10.0, 110.0)), shape, IJK_TO_RAS)


def test_prior_crop_keeps_the_geometry():
    ct = scene.image_from_volume_array(np.arange(10 * 20 * 20, dtype=np.int16).reshape(10, 20, 20), IJK_TO_RAS)
    mask = np.zeros(ct.shape, np.uint8)
    mask[5, 6:8, 18] = 1  # i + 3 is clipped at the last voxel (19)
    crop, mask_crop = smalllesion.prior_crop(ct, mask, margin=3)
    assert crop.shape == (7, 8, 5) and mask_crop.shape == crop.shape and mask_crop.array.dtype == np.uint8
    np.testing.assert_array_equal(crop.array, ct.array[2:9, 3:11, 15:20])
    assert int(mask_crop.array.sum()) == 2 and mask_crop.array[3, 3, 3] == 1
    np.testing.assert_allclose(crop.origin, (IJK_TO_RAS @ [15, 3, 2, 1])[:3] * [-1, -1, 1])
    assert crop.same_grid(mask_crop) and np.allclose(crop.spacing, ct.spacing)
    with pytest.raises(ValueError, match="is empty"):
        smalllesion.prior_crop(ct, np.zeros(ct.shape))
    with pytest.raises(ValueError, match="not on the CT grid"):
        smalllesion.prior_crop(ct, np.ones((2, 2, 2)))


def test_segment_names():
    row = lesiontable.LesionRow
    assert smalllesion.segment_name(row(3, 8, 1.9604, 0.0, (0, 0, 0), (0, 0, 0))) == "Lesion 3 (1960 mm\u00b3)"
    assert smalllesion.segment_name(row(1, 8, 0.00996, 0.0, (0, 0, 0), (0, 0, 0))) == "Lesion 1 (10.0 mm\u00b3)"
    assert smalllesion.segment_name(row(2, 8, 0.0055, 0.0, (0, 0, 0), (0, 0, 0))) == "Lesion 2 (5.5 mm\u00b3)"
    assert lesiontable.format_volume(10.0) == "10" and smalllesion.segmentation_name("CT") == "CT small lesions"


def test_tiny_ct_is_a_deterministic_ct_with_three_lesions():
    ct, again = scenarios.tiny_ct(), scenarios.tiny_ct()
    np.testing.assert_array_equal(ct.array, again.array)
    assert ct.array.dtype == np.int16 and ct.array.shape == (24, 56, 64) and looks_like_ct(ct.array)
    components, n = lesion_components(scene.image_from_volume_array(ct.truth, ct.ijk_to_ras), 26)
    assert n == 3 and int(ct.largest.sum()) == np.bincount(components.array.ravel())[1:].max()
    assert abs(float(ct.array[ct.truth > 0].mean()) - 130.0) < 3.0
    np.testing.assert_allclose(ct.largest.sum() * 1.5, 4 / 3 * np.pi * 5.0 ** 3, rtol=0.1)  # 10 mm, 1.5 mm3 voxels
    ijk = np.linalg.solve(ct.ijk_to_ras, np.c_[ct.centres_ras, np.ones(3)].T)[:3].T.round().astype(int)
    assert ct.truth[ijk[:, 2], ijk[:, 1], ijk[:, 0]].tolist() == [1, 1, 1]
    assert not np.array_equal(scenarios.tiny_ct(seed=1).array, ct.array)


def test_arguments_parse_with_the_backends_parsers(tmp_path):
    """The argument lists the panel builds are accepted by the backend's own parsers (skips until they exist)."""
    import argparse

    segmenter = pytest.importorskip("lesionseg.methods.smalllesion.segmenter")  # registers small-lesion-il
    cli_prior = pytest.importorskip("lesionseg.methods.smalllesion.cli_prior")
    from lesionseg import cli

    out, box = tmp_path / "out", Box((-12.0, -23.0, 26.0), (-8.0, -17.0, 34.0))
    argv = ["--progress", "lines", *smalllesion.predict_arguments(
        Path("ct.nrrd"), out, PriorChoice("typed", 130.0, 15.0), box, tmp_path, "cpu")]
    ns = cli.build_parser(argv).parse_args(argv)
    assert (ns.command, ns.method, ns.images, ns.output, ns.table) == (
        "predict", segmenter.METHOD, ["ct.nrrd"], out / "lesions.nii.gz", out / "lesions.json")
    assert (ns.roi, ns.prior_mean, ns.prior_sd, ns.weights, ns.device) == (
        [-12.0, -23.0, 26.0, -8.0, -17.0, 34.0], 130.0, 15.0, tmp_path, "cpu")
    learnt = PriorChoice("segment", segment_id="S")
    argv = ["--progress", "lines", *smalllesion.predict_arguments(Path("ct"), out, learnt)]
    assert cli.build_parser(argv).parse_args(argv).prior_table == out / "prior.json"

    parser = argparse.ArgumentParser()
    cli_prior.add_parser(parser.add_subparsers(dest="command"))
    png = tmp_path / "p.png"
    ns = parser.parse_args(smalllesion.prior_arguments(PriorChoice(), png))
    assert (ns.command, ns.plot, ns.weights, ns.output) == ("prior", png, "", None)
    ns = parser.parse_args(smalllesion.prior_arguments(PriorChoice(), png, weights=tmp_path))
    assert ns.weights == str(tmp_path)
    ns = parser.parse_args(smalllesion.prior_arguments(PriorChoice("typed", 130.0, 15.0), png))
    assert (ns.mean, ns.sd, ns.weights) == (130.0, 15.0, None)
    ns = parser.parse_args(smalllesion.prior_arguments(PriorChoice("table", path=Path("t.csv")), png))
    assert ns.table == Path("t.csv")
    ns = parser.parse_args(smalllesion.prior_arguments(PriorChoice("segment", segment_id="S"), png, Path("o.json"),
                                                       Path("c.nrrd"), Path("m.nrrd")))
    assert (ns.image, ns.mask, ns.output, ns.label) == (Path("c.nrrd"), Path("m.nrrd"), Path("o.json"), None)
