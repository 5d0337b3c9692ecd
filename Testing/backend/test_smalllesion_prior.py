"""The small-lesion intensity prior L(HU) (lesionseg.methods.smalllesion.prior) and ``lesionseg prior``."""
from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pytest

from lesionseg import Image, InputError, LesionSegWarning, OutputExistsError, WeightsError, write_image
from lesionseg.methods.smalllesion import cli_prior
from lesionseg.methods.smalllesion.prior import (DEFAULT_SMOOTHING, IntensityPrior, check_prior_against_image,
                                                  gather_samples, plot_prior)
from lesionseg.modelfolder import sha256_of

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def lesion_case(mean: float = 120.0, sd: float = 10.0, seed: int = 0) -> tuple[Image, Image]:
    """A (12, 40, 40) CT: fat -100 +- 10 HU with a 6 x 12 x 12 block of N(mean, sd) HU, and its mask."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(-100.0, 10.0, (12, 40, 40))
    mask = np.zeros(hu.shape, np.uint8)
    mask[3:9, 14:26, 14:26] = 1
    hu[mask > 0] = rng.normal(mean, sd, int(mask.sum()))
    image = Image(np.rint(hu).astype(np.int16), (0.8, 0.8, 1.5), (10.0, -20.0, 300.0))
    return image, image.with_array(mask)


def test_gaussian_peaks_at_the_mean_with_exactly_one():
    prior = IntensityPrior.gaussian(130.3, 15.0)
    assert prior.likelihood(np.array([130.3]))[0] == 1.0 and prior.values.max() == 1.0
    assert prior.hu[np.argmax(prior.values)] == 130.3
    assert np.allclose(np.diff(prior.hu), 1.0)
    assert prior.hu[0] == pytest.approx(130.3 - 90.0) and prior.hu[-1] == pytest.approx(130.3 + 90.0)
    assert prior.likelihood(np.array([145.3]))[0] == pytest.approx(np.exp(-0.5), rel=1e-6)
    summary = prior.describe()
    assert summary["mean_hu"] == pytest.approx(130.3) and summary["sd_hu"] == pytest.approx(15.0, rel=1e-5)


def test_likelihood_interpolates_exactly_and_is_zero_outside():
    prior = IntensityPrior(np.array([0.0, 10.0, 20.0, 40.0]), np.array([0.0, 1.0, 0.5, 0.25]), "table")
    grid = prior.likelihood(prior.hu)
    assert grid.dtype == np.float32 and np.array_equal(grid, prior.values.astype(np.float32))
    between = prior.likelihood(np.array([[5.0, 15.0], [30.0, 12.5]]))
    assert between.shape == (2, 2) and np.array_equal(between, np.float32([[0.5, 0.75], [0.375, 0.875]]))
    assert np.array_equal(prior.likelihood(np.array([-0.001, 40.001, -1000.0, 3000.0])), np.zeros(4, np.float32))


@pytest.mark.parametrize("mean, sd", [(100.0, 0.0), (100.0, -5.0), (100.0, float("nan")), (float("inf"), 10.0),
                                      (5000.0, 10.0)])
def test_gaussian_refuses_bad_values(mean, sd):
    with pytest.raises(InputError):
        IntensityPrior.gaussian(mean, sd)


@pytest.mark.parametrize("hu, values", [([0.0, 1.0], [0.5, 0.9]), ([0.0, 0.0, 1.0], [1.0, 0.5, 0.5]),
                                        ([0.0, 1.0], [1.0, 1.5]), ([0.0], [1.0]), ([0.0, 1.0], [1.0, -0.1])])
def test_constructor_refuses_bad_tables(hu, values):
    with pytest.raises(InputError):
        IntensityPrior(np.array(hu), np.array(values), "table")


def test_save_load_json_round_trip(tmp_path):
    prior = IntensityPrior.gaussian(97.25, 11.5).shifted(3.0)
    path = tmp_path / "prior.json"
    prior.save(path)
    back = IntensityPrior.load(path)
    assert np.array_equal(back.hu, prior.hu) and np.array_equal(back.values, prior.values)
    assert (back.source, back.info, back.smoothing) == (prior.source, prior.info, prior.smoothing)
    with pytest.raises(OutputExistsError):
        prior.save(path)
    IntensityPrior.gaussian(0.0, 5.0).save(path, overwrite=True)
    assert IntensityPrior.load(path).info["mean_hu"] == 0.0
    with pytest.raises(InputError):
        prior.save(tmp_path / "prior.txt")
    (tmp_path / "other.json").write_text(json.dumps({"hu": [0, 1], "likelihood": [1, 1]}))
    with pytest.raises(InputError, match="not a LesionSeg intensity prior"):
        IntensityPrior.load(tmp_path / "other.json")


@pytest.mark.parametrize("header", ["hu,likelihood\n", "# a comment\n", ""])
def test_csv_table_is_sorted_rescaled_and_exact(tmp_path, header):
    path = tmp_path / "table.csv"
    path.write_text(header + "120, 4\n100,2\n140,1\n")
    prior = IntensityPrior.load(path)
    assert prior.source == "table" and prior.hu.tolist() == [100.0, 120.0, 140.0]
    assert prior.values.tolist() == [0.5, 1.0, 0.25]
    assert prior.likelihood(np.array([110.0, 120.0, 141.0])).tolist() == [0.75, 1.0, 0.0]
    assert prior.smoothing == DEFAULT_SMOOTHING


@pytest.mark.parametrize("text", ["hu,likelihood\n100,1\n", "100,1\n100,2\n", "100,1\nx,2\n", "100,1,3\n120,1,3\n",
                                  "100,0\n120,0\n", "100,-1\n120,1\n"])
def test_bad_csv_tables_raise(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError):
        IntensityPrior.load(path)


def test_shifted_moves_the_peak_by_exactly_the_shift():
    prior = IntensityPrior.gaussian(120.0, 12.0)
    moved = prior.shifted(100.0)
    assert moved.describe()["peak_hu"] == 220.0 and moved.source == "shifted:gaussian"
    h = np.linspace(60.0, 180.0, 41)
    assert np.array_equal(moved.likelihood(h + 100.0), prior.likelihood(h))
    twice = moved.shifted(-30.0)
    assert twice.source == "shifted:gaussian" and twice.info["shift_hu"] == 70.0
    assert twice.describe()["peak_hu"] == 190.0


def test_fit_recovers_the_lesion_mean():
    image, mask = lesion_case(mean=120.0, sd=10.0)
    prior = IntensityPrior.fit([image], [mask], names=["case"])
    assert prior.source == "kde" and prior.values.max() == 1.0
    assert prior.info["n_voxels"] == prior.info["n_samples"] == int(mask.array.sum())
    assert abs(prior.info["mean_hu"] - 120.0) < 5.0  # the smoothing mixes edge voxels with the fat a little
    assert abs(prior.describe()["peak_hu"] - 120.0) < 5.0
    assert prior.info["cases"] == ["case"] and prior.info["bandwidth_hu"] > 0
    samples, _ = gather_samples([image], [mask])
    assert np.all(np.diff(prior.hu) == 1.0) and prior.hu[0] == prior.hu[0] // 1
    margin = 5.0 * prior.info["bandwidth_hu"]
    assert samples.min() - margin - 1 < prior.hu[0] <= samples.min() - margin
    assert samples.max() + margin <= prior.hu[-1] < samples.max() + margin + 1


def test_fit_subsamples_with_a_seed_and_resamples_a_mask_on_another_grid():
    image, mask = lesion_case()
    a = IntensityPrior.fit([image], [mask], max_samples=200, seed=3)
    b = IntensityPrior.fit([image], [mask], max_samples=200, seed=3)
    assert a.info["n_samples"] == 200 and a.info["n_voxels"] == int(mask.array.sum())
    assert np.array_equal(a.values, b.values)
    shifted_grid = Image(mask.array, mask.spacing, mask.origin + [0.8, 0.0, 0.0])  # one voxel along i
    with pytest.warns(LesionSegWarning, match="resampled onto the image's grid"):
        _, n_voxels = gather_samples([image], [shifted_grid])
    assert n_voxels == int(mask.array.sum())


def test_fit_refuses_empty_masks_and_mismatched_inputs():
    image, mask = lesion_case()
    empty = mask.with_array(np.zeros(mask.shape, np.uint8))
    with pytest.raises(InputError, match="empty"):
        IntensityPrior.fit([image, image], [empty, empty])
    with pytest.raises(InputError):
        IntensityPrior.fit([image], [mask, mask])
    flat = image.with_array(np.full(image.shape, 50, np.int16))
    with pytest.raises(InputError, match="equal"):
        IntensityPrior.fit([flat], [mask])


def test_smooth_keeps_the_grid_reduces_noise_and_keeps_an_edge():
    rng = np.random.default_rng(1)
    arr = np.where(np.arange(40)[None, None, :] < 20, -100.0, 150.0) + rng.normal(0.0, 15.0, (10, 30, 40))
    image = Image(arr.astype(np.int16), (0.7, 0.9, 2.0), (1.0, 2.0, 3.0), np.diag([-1.0, -1.0, 1.0]))
    prior = IntensityPrior.gaussian(100.0, 10.0)
    smooth = prior.smooth(image)
    assert smooth.same_grid(image) and smooth.array.dtype == np.float32
    assert smooth.array[:, :, 2:16].std() < 0.6 * image.array[:, :, 2:16].std()
    assert smooth.array[:, :, 25:38].mean() - smooth.array[:, :, 2:16].mean() > 240.0
    none = IntensityPrior(prior.hu, prior.values, "gaussian", smoothing={**DEFAULT_SMOOTHING, "iterations": 0})
    assert np.array_equal(none.smooth(image).array, image.array.astype(np.float32))
    with pytest.raises(InputError):
        IntensityPrior(prior.hu, prior.values, "gaussian", smoothing={**DEFAULT_SMOOTHING, "time_step": 0.2})


def test_warns_for_a_prior_far_from_the_image_range():
    image, _ = lesion_case()
    with pytest.warns(LesionSegWarning, match="outside"):
        check_prior_against_image(IntensityPrior.gaussian(1500.0, 20.0), image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_prior_against_image(IntensityPrior.gaussian(-90.0, 20.0), image)


def test_plot_writes_a_png_and_refuses_to_overwrite(tmp_path):
    image, mask = lesion_case()
    samples, _ = gather_samples([image], [mask])
    prior = IntensityPrior.from_samples(samples)
    path = plot_prior(prior, tmp_path / "prior.png", samples)
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(OutputExistsError):
        plot_prior(prior, path)
    plot_prior(IntensityPrior.gaussian(100.0, 10.0), path, overwrite=True)
    with pytest.raises(InputError):
        plot_prior(prior, tmp_path / "prior.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prior.png"]


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli_prior.add_parser(parser.add_subparsers(dest="command"))
    return cli_prior.run(parser.parse_args(["prior", *map(str, argv)]))


def test_cli_gaussian_and_table_modes(tmp_path, capsys):
    assert run_cli("--mean", "130", "--sd", "15", "-o", tmp_path / "g.json") == 0
    assert "peak 130.0 HU" in capsys.readouterr().out
    assert np.array_equal(IntensityPrior.load(tmp_path / "g.json").values, IntensityPrior.gaussian(130, 15).values)
    (tmp_path / "t.csv").write_text("hu,likelihood\n100,0.5\n110,1\n120,0.5\n")
    assert run_cli("--table", tmp_path / "t.csv", "--plot", tmp_path / "t.png", "-o", tmp_path / "t.json") == 0
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG_MAGIC
    assert IntensityPrior.load(tmp_path / "t.json").source == "table"


def test_cli_image_mask_and_data_modes(tmp_path, capsys):
    image, mask = lesion_case(mean=110.0)
    write_image(image, tmp_path / "ct.nii.gz")
    write_image(mask.with_array(mask.array * 3), tmp_path / "mask.nii.gz")
    assert run_cli("--image", tmp_path / "ct.nii.gz", "--mask", tmp_path / "mask.nii.gz", "--label", "3",
                   "-o", tmp_path / "one.json", "--plot", tmp_path / "one.png") == 0
    assert "KDE bandwidth" in capsys.readouterr().out
    one = IntensityPrior.load(tmp_path / "one.json")
    assert abs(one.info["mean_hu"] - 110.0) < 5.0
    from lesionseg.data import DatasetWriter

    data = tmp_path / "data"
    with DatasetWriter(data, ("CT",), {"background": 0, "bowel": 1, "tumour": 2}) as writer:
        for n, mean in enumerate((100.0, 140.0)):
            ct, lab = lesion_case(mean=mean, seed=n)
            bowel = np.zeros_like(lab.array)
            bowel[:2] = 1                                           # fat at -100 HU, labelled 'bowel'
            writer.add(f"c{n}", [ct], lab.with_array(np.where(lab.array > 0, 2, bowel).astype(np.uint8)))
    assert run_cli("--data", data, "-o", tmp_path / "both.json", "--bandwidth", "4") == 0
    both = IntensityPrior.load(tmp_path / "both.json")
    assert both.info["cases"] == ["c0", "c1"] and both.info["bandwidth_hu"] == pytest.approx(4.0)
    assert abs(both.info["mean_hu"] - 120.0) < 5.0                   # 'tumour' is the lesion, by name
    assert both.info["n_voxels"] == 2 * 6 * 12 * 12
    assert run_cli("--data", data, "--labels", "lesion=1+2", "-o", tmp_path / "all.json") == 0
    assert IntensityPrior.load(tmp_path / "all.json").info["n_voxels"] == 2 * (6 * 12 * 12 + 2 * 40 * 40)


def test_cli_weights_mode_reads_the_model_prior(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "small-lesion-il"
    folder.mkdir(parents=True)
    IntensityPrior.gaussian(125.0, 20.0).save(folder / "prior.json")
    card = {"method": "small-lesion-il", "files": {"weights.pt": "0" * 64},
            "prior": {"file": "prior.json", "sha256": sha256_of(folder / "prior.json")}}
    (folder / "model.json").write_text(json.dumps(card))
    assert run_cli("--weights", folder, "-o", tmp_path / "a.json") == 0
    monkeypatch.setenv("LESIONSEG_WEIGHTS", str(tmp_path / "models"))
    assert run_cli("--weights", "-o", tmp_path / "b.json") == 0
    assert IntensityPrior.load(tmp_path / "b.json").info["mean_hu"] == 125.0
    (folder / "model.json").write_text(json.dumps({**card, "prior": None,
                                                   "files": {"prior.json": sha256_of(folder / "prior.json")}}))
    assert run_cli("--weights", folder, "-o", tmp_path / "c.json") == 0
    (folder / "prior.json").write_text("{}")
    with pytest.raises(WeightsError, match="sha256"):
        run_cli("--weights", folder, "-o", tmp_path / "d.json")
    (folder / "model.json").write_text(json.dumps({**card, "prior": None}))
    with pytest.raises(WeightsError, match="no intensity prior"):
        run_cli("--weights", folder, "-o", tmp_path / "d.json")


@pytest.mark.parametrize("argv, error", [
    (("--mean", "100", "--sd", "10"), InputError),
    (("--mean", "100", "-o", "p.json"), InputError),
    (("--mean", "100", "--sd", "0", "-o", "p.json"), InputError),
    (("--image", "ct.nii.gz", "-o", "p.json"), InputError),
    (("--mean", "100", "--sd", "10", "-o", "p.png"), InputError),
    (("--mean", "100", "--sd", "10", "--bandwidth", "3", "-o", "p.json"), InputError),
    (("--mean", "100", "--sd", "10", "-o", "exists.json"), OutputExistsError),
    (("--data", "missing", "-o", "p.json"), InputError),
    (("--mean", "100", "--sd", "10", "--labels", "lesion=1", "-o", "p.json"), InputError),
])
def test_cli_bad_input_fails_before_writing(tmp_path, monkeypatch, argv, error):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.json").write_text("keep")
    with pytest.raises(error):
        run_cli(*argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.json"]
    assert (tmp_path / "exists.json").read_text() == "keep"


@pytest.mark.parametrize("mean, sd, message", [
    (50.0, 1e9, "sd_hu (the prior SD) must be > 0 and <= 1000 HU, got 1000000000"),
    (50.0, 0.0, "sd_hu (the prior SD) must be > 0 and <= 1000 HU, got 0"),
    (5000.0, 10.0, "mean_hu (the prior mean) must lie in the CT range -1024..3071 HU, got 5000"),
    (np.float64(np.nan), 10.0, "mean_hu (the prior mean, HU) must be a finite number, got nan"),
])
def test_gaussian_parameters_are_bounded(mean, sd, message):
    with pytest.raises(InputError) as caught:
        IntensityPrior.gaussian(mean, sd)
    assert str(caught.value) == message


def test_the_widest_gaussian_grid_stays_within_the_ct_range():
    wide = IntensityPrior.gaussian(50.0, 1000.0)            # +- 6000 HU, clipped without building it
    assert wide.hu[0] == -1024.0 and wide.hu[-1] == 3071.0 and wide.hu.size == 4096
    assert wide.likelihood(np.array([50.0]))[0] == 1.0
    edge = IntensityPrior.gaussian(3071.0, 0.01)
    assert edge.hu.tolist() == [3070.0, 3071.0]


def test_kde_bandwidth_is_bounded():
    samples = np.random.default_rng(0).normal(100.0, 10.0, 500)
    for bad in (0.0, 0.1, 2000.0):
        with pytest.raises(InputError, match=r"bandwidth_hu \(the KDE bandwidth\) must lie in 0\.5\.\.1000 HU"):
            IntensityPrior.from_samples(samples, bandwidth_hu=bad)
    assert IntensityPrior.from_samples(samples, bandwidth_hu=0.5).values.max() == 1.0


def test_a_mask_off_its_image_is_reported_as_on_another_grid_not_empty():
    image, mask = lesion_case()
    far = Image(mask.array, mask.spacing, mask.origin + [100.0, 0.0, 0.0])      # off the image altogether
    with pytest.raises(InputError) as caught:
        gather_samples([image], [far], mask_names=["the mask m.nii.gz"], image_names=["the image ct.nii.gz"])
    assert str(caught.value) == ("the mask m.nii.gz is on another grid than the image ct.nii.gz (origin "
                                 "(110, -20, 300) vs (10, -20, 300) mm) and none of its voxels lies inside that "
                                 "image: is it the mask of this image?")
    near = Image(mask.array, mask.spacing, mask.origin + [0.8, 0.0, 0.0])     # one voxel along i: resampled
    with pytest.warns(LesionSegWarning, match=r"mask 1 is on another grid than image 1 \(origin .*\); resampled"):
        _, n_voxels = gather_samples([image], [near])
    assert n_voxels == int(mask.array.sum())
    with pytest.raises(InputError, match="^mask 1 is empty: nothing to fit"):
        gather_samples([image], [mask.with_array(np.zeros(mask.shape, np.uint8))])


def _cli_main(*argv) -> int:
    from lesionseg import cli

    return cli.main(["--progress", "none", "prior", *map(str, argv)])


@pytest.mark.parametrize("argv, message", [
    (("--mean", "50", "--sd", "1e9"), "--sd (the prior SD) must be > 0 and <= 1000 HU, got 1000000000"),
    (("--mean", "-2000", "--sd", "10"), "--mean (the prior mean) must lie in the CT range -1024..3071 HU, got -2000"),
    (("--image", "ct.nii.gz", "--mask", "m.nii.gz", "--bandwidth", "0"),
     "--bandwidth (the KDE bandwidth) must lie in 0.5..1000 HU, got 0"),
    (("--image", "ct.nii.gz", "--mask", "m.nii.gz", "--seed", "-1"), "--seed must be >= 0, got -1"),
    (("--image", "ct.nii.gz", "--mask", "far.nii.gz"),
     "the mask far.nii.gz is on another grid than the image ct.nii.gz (origin (110, -20, 300) vs (10, -20, 300) mm) "
     "and none of its voxels lies inside that image: is it the mask of this image?"),
    (("--image", "ct.nii.gz", "--mask", "m.nii.gz", "--label", "2"),
     "the mask m.nii.gz holds no voxel of --label 2 (its labels: 1)"),
])
def test_cli_errors_name_the_flags(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    image, mask = lesion_case()
    write_image(image, tmp_path / "ct.nii.gz")
    write_image(mask, tmp_path / "m.nii.gz")
    write_image(Image(mask.array, mask.spacing, mask.origin + [100.0, 0.0, 0.0]), tmp_path / "far.nii.gz")
    code = _cli_main(*argv, "-o", "p.json")
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stderr == f"error: {message}\n" and not (tmp_path / "p.json").exists()
