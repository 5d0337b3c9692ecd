"""small-lesion-il segmenter: exact labels through fake networks, priors, variants, ROI, options, lesion table,
CLI."""
from __future__ import annotations

import hashlib

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lesionseg import Image
from lesionseg.errors import InputError, LesionSegWarning, OutputExistsError, WeightsError
from lesionseg.lesions import read_lesion_table, write_lesion_table
from lesionseg.methods.smalllesion.options import SmallLesionOptions
from lesionseg.methods.smalllesion.prior import IntensityPrior
from lesionseg.methods.smalllesion.segmenter import (TABLE_COLUMNS, SmallLesionPreprocessing,
                                                     SmallLesionSegmenter, body_box, normalise, write_table)
from lesionseg.modelfolder import load_model_folder, save_model_folder
from lesionseg.nets.unet import UNet
from lesionseg.prompts import Box

LESION = (slice(8, 16), slice(10, 18), slice(12, 20))  # 8x8x8 voxels of 150 HU
SMALL = (slice(3, 5), slice(3, 5), slice(24, 26))      # 2x2x2 voxels of 150 HU
PREP = SmallLesionPreprocessing(patch=(16, 16, 16), overlap=0.5)


def _ct(spacing=(1.0, 1.0, 1.0)) -> Image:
    """(24, 28, 32) CT: air, a body block of 40 HU, an 8^3 and a 2^3 lesion of 150 HU."""
    arr = np.full((24, 28, 32), -1000, np.int16)
    arr[1:23, 2:26, 2:30] = 40
    arr[LESION] = 150
    arr[SMALL] = 150
    return Image(arr, spacing, (-30.0, 12.5, 400.0))


class Threshold(nn.Module):
    """Fake network: output channel c = ``gain * (input channel min(c + first, C_in - 1) - level)`` (logits), or
    ``constant`` everywhere."""

    def __init__(self, out_channels: int = 1, level: float = 0.5, gain: float = 50.0, constant=None,
                 first: int = 0) -> None:
        super().__init__()
        self.out_channels, self.level, self.gain, self.constant, self.first = out_channels, level, gain, constant, first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.constant is not None:
            return torch.full((x.shape[0], self.out_channels, *x.shape[2:]), float(self.constant))
        picks = [x[:, min(c + self.first, x.shape[1] - 1)] for c in range(self.out_channels)]
        return self.gain * (torch.stack(picks, dim=1) - self.level)


def _segmenter(net=None, variant="seg+il", prior=None, prep=PREP, options=None) -> SmallLesionSegmenter:
    net = net if net is not None else Threshold(2 if variant in ("seg+il", "seg+il-shifted") else 1)
    return SmallLesionSegmenter(options=options, net=net, preprocessing=prep, variant=variant, prior=prior)


def test_preprocessing_round_trip_and_validation():
    prep = SmallLesionPreprocessing(spacing_mm=0.8, patch=(32, 48, 64), overlap=0.4)
    assert SmallLesionPreprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))) == prep
    with pytest.raises(WeightsError, match="unknown"):
        SmallLesionPreprocessing.from_dict({"spacing": 1.0})
    with pytest.raises(WeightsError, match="invalid"):
        SmallLesionPreprocessing.from_dict({"window_hu": [400, -200]})
    with pytest.raises(InputError):
        SmallLesionPreprocessing(patch=(4, 16, 16))


def test_normalise_and_body_box():
    assert np.array_equal(normalise(np.array([-1000, -200, 100, 400, 900]), (-200.0, 400.0)),
                          np.array([0, 0, 0.5, 1, 1], np.float32))
    lo, hi = body_box(_ct(), -500.0, np.array([1, 1, 1]))
    assert lo.tolist() == [1, 1, 0] and hi.tolist() == [30, 26, 23]          # (i, j, k), grown by 1, clipped
    air = Image(np.full((4, 4, 4), -1000, np.int16))
    assert body_box(air, -500.0, np.zeros(3, int)) is None


def test_label_is_exact_on_an_isotropic_grid_and_keeps_geometry():
    ct = _ct()
    seg = _segmenter()                                  # lesion where HU > 100 (normalised 0.5)
    seg.set_image(ct)
    label = seg.predict()
    truth = np.zeros(ct.shape, np.uint8)
    truth[LESION] = truth[SMALL] = 1
    assert label.same_grid(ct) and label.array.dtype == np.uint8
    assert np.array_equal(label.array, truth)
    # the second output channel is the predicted likelihood (seg+il without a prior)
    inside = 1.0 / (1.0 + np.exp(-50.0 * (350.0 / 600.0 - 0.5)))      # sigmoid of the fake's logit at 150 HU
    assert np.allclose(seg.likelihood().array[LESION], inside, atol=1e-5) and seg.likelihood().array[0, 0, 0] == 0
    with pytest.raises(InputError, match="no prompt"):
        seg.predict(Box((0, 0, 0), (1, 1, 1)))


def test_windows_shrink_to_a_small_working_grid():
    shapes = []

    class Recorder(Threshold):
        def forward(self, x):
            shapes.append(tuple(x.shape))
            return super().forward(x)

    seg = _segmenter(Recorder(2), prep=SmallLesionPreprocessing(patch=(64, 64, 16)))
    seg.set_image(_ct())
    assert seg._work.shape == (24, 26, 30)                 # the body box grown by one voxel
    assert set(shapes) == {(1, 1, 24, 32, 16)} and len(shapes) == 3      # 26 -> 32 (multiple of 8); 30 = 3 x 16


def test_anisotropic_ct_goes_through_the_working_grid_and_back():
    ct = _ct(spacing=(0.8, 0.8, 1.5))
    seg = _segmenter()
    seg.set_image(ct)
    label = seg.predict()
    assert label.same_grid(ct) and seg._work.spacing.tolist() == [1.0, 1.0, 1.0]
    inner = (slice(9, 15), slice(11, 17), slice(13, 19))
    assert label.array[inner].all() and label.array.sum() <= (ct.array == 150).sum() * 1.3
    assert not label.array[:, :, :10].any()


def test_user_prior_multiplies_the_probability():
    ct = _ct()
    seg = _segmenter(Threshold(2, constant=np.log(4.0)))            # P = 0.8 everywhere
    seg.set_image(ct)
    lo, hi = body_box(ct, -500.0, np.array([1, 1, 1]))
    body = (slice(lo[2], hi[2] + 1), slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1))
    assert seg.predict().array[body].all() and seg.predict().array.sum() == seg.predict().array[body].size
    prior = IntensityPrior.gaussian(150.0, 10.0)
    seg.set_prior(prior)
    # smoothing runs on the worked region (the body box; its conductance depends on that region's gradients)
    expected = 0.8 * prior.likelihood(prior.smooth(ct.crop(lo, hi)).array)
    assert np.allclose(seg.probability().array[body], expected, atol=1e-6)
    assert np.allclose(seg.likelihood().array[body], expected / 0.8, atol=1e-6) and expected.max() > 0.79
    label = seg.predict().array
    assert label[9:15, 11:17, 13:19].all() and label.sum() <= 8 ** 3 + 2 ** 3 and not label[1:8].any()
    seg.set_prior(None)
    assert seg.predict().array.sum() == seg.predict().array[body].size


def test_seg_pp_seg_il_in_and_variant_checks():
    ct = _ct()
    prior = IntensityPrior.gaussian(150.0, 10.0)
    seg = _segmenter(Threshold(1, constant=np.log(4.0)), variant="seg", prior=prior)
    seg.set_image(ct)
    everywhere = int(seg.predict().array.sum())
    seg.set_variant("seg+pp")
    assert seg.predict().array[9:15, 11:17, 13:19].all() and seg.predict().array.sum() < everywhere
    seg.set_variant("seg")
    assert seg.predict().array.sum() == everywhere
    with pytest.raises(InputError, match="runs as"):
        seg.set_variant("seg+il")
    with pytest.raises(WeightsError, match="prior"):
        _segmenter(Threshold(1), variant="seg").set_variant("seg+pp")
    with pytest.raises(WeightsError, match="prior"):
        _segmenter(Threshold(1), variant="seg+il-in")
    with pytest.raises(WeightsError, match="channels"):
        _segmenter(UNet(3, 1, 1, (4, 8)), variant="seg+il")
    # seg+il-in: channel 1 of the input is L(smoothed HU); this fake thresholds it at 0.5
    il_in = _segmenter(Threshold(1, first=1), variant="seg+il-in", prior=prior)
    il_in.set_image(ct)
    lo, hi = body_box(ct, -500.0, np.array([1, 1, 1]))
    likelihood = prior.likelihood(prior.smooth(ct.crop(lo, hi)).array)
    inside = il_in.predict().array[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]
    assert inside.sum() == il_in.predict().array.sum() > 0 and np.array_equal(inside > 0, likelihood > 0.5)


def test_roi_crops_the_work_and_bad_rois_raise():
    ct = _ct()
    seg = _segmenter()
    seg.set_roi(Box(ct.origin + [0, 0, 0], ct.origin + [20.0, 27.0, 23.0]))     # i 0..20 holds the 8^3 lesion
    seg.set_image(ct)
    label = seg.predict().array
    assert label[LESION].all() and not label[SMALL].any()
    roi = seg.roi
    with pytest.raises(InputError, match="outside"):
        seg.set_roi(Box(ct.origin - 500.0, ct.origin - 400.0))
    assert seg.roi is roi and np.array_equal(seg.predict().array, label)       # nothing changed
    with pytest.warns(LesionSegWarning, match="partly outside"):
        seg.set_roi(Box(ct.origin - 5.0, ct.origin + [20.0, 27.0, 23.0]))
    with pytest.warns(LesionSegWarning, match="nothing to segment"):    # re-runs the image already set
        seg.set_roi(Box(ct.origin + [0, 0, 0], ct.origin + [31.0, 27.0, 0.0]))  # one slice of air only
    assert not seg.predict().array.any() and not seg.probability().array.any()


@pytest.mark.parametrize("values, message", [
    ({"prior_mean": 150.0}, "--prior-mean and --prior-sd go together"),
    ({"prior_sd": 10.0}, "--prior-mean and --prior-sd go together"),
    ({"prior_mean": 150.0, "prior_sd": 10.0, "prior_table": "p.json"},
     "give either --prior-table or --prior-mean/--prior-sd, not both"),
    ({"prior_mean": 150.0, "prior_sd": 2000.0}, "--prior-sd (the prior SD) must be > 0 and <= 1000 HU, got 2000"),
    ({"roi": (0, 0, 0, 1, 1, float("nan"))}, "--roi takes 6 finite numbers"),
    ({"variant": "seg+il"}, "--variant takes seg+pp"),
])
def test_options_are_checked_naming_their_flags(values, message):
    with pytest.raises(InputError) as info:
        SmallLesionOptions.from_dict(values)
    assert str(info.value).startswith(message)


def test_options_drive_the_prior_the_variant_and_the_roi():
    ct = _ct()
    prior = IntensityPrior.gaussian(150.0, 10.0)
    seg = _segmenter(Threshold(1, constant=np.log(4.0)), variant="seg", prior=prior,
                     options=SmallLesionOptions(prior_mean=150.0, prior_sd=10.0))
    assert np.array_equal(seg.user_prior.values, prior.values)
    seg.set_image(ct)
    gated = seg.predict().array.copy()
    seg.set_options(SmallLesionOptions())                                  # no prior: P = 0.8 everywhere
    everywhere = seg.predict().array.copy()
    assert seg.user_prior is None and everywhere.sum() > gated.sum()
    seg.set_variant("seg+pp")                                              # the model's own prior, through options
    assert seg.options.variant == "seg+pp" and np.array_equal(seg.predict().array, gated)
    seg.set_variant("seg")
    assert seg.options.variant is None and np.array_equal(seg.predict().array, everywhere)
    typed = IntensityPrior.gaussian(150.0, 10.0)
    seg.set_prior(typed)                                                   # a prior object stays ...
    seg.set_roi(Box(ct.origin, ct.origin + [31.0, 27.0, 23.0]))
    seg.set_variant("seg")
    assert seg.user_prior is typed and np.array_equal(seg.predict().array, gated)
    with pytest.raises(InputError, match="outside"):                        # an error changes nothing
        seg.set_options(SmallLesionOptions(prior_mean=0.0, prior_sd=5.0, roi=(-900, -900, -900, -800, -800, -800)))
    assert seg.user_prior is typed and seg.options.prior_mean is None and np.array_equal(seg.predict().array, gated)
    seg.set_options(SmallLesionOptions())                                  # ... until options name no ROI
    assert seg.roi is None and seg.user_prior is typed
    seg.set_prior(None)
    assert np.array_equal(seg.predict().array, everywhere)
    with pytest.raises(InputError, match="runs as"):                       # checked when the options arrive
        _segmenter(options=SmallLesionOptions(variant="seg+pp"))


def test_table_writer_of_the_spec(tmp_path):
    from lesionseg.registry import get_spec, load_object

    seg = _segmenter()
    seg.set_image(_ct())
    (output,) = get_spec("small-lesion-il").outputs
    assert output.flag == "--table" and load_object(output.writer) is write_table
    path = write_table(seg, seg.predict(), tmp_path / "t.json")
    assert read_lesion_table(path)["lesions"] == seg.lesions()
    with pytest.raises(OutputExistsError):
        write_table(seg, seg.predict(), tmp_path / "t.json")


def test_non_ct_is_refused():
    pet = Image(np.random.default_rng(0).random((10, 20, 20)).astype(np.float32) * 8, (2, 2, 2))
    with pytest.raises(InputError, match="do not look like CT"):
        _segmenter().set_image(pet)


def test_lesions_and_table(tmp_path):
    ct = _ct()
    seg = _segmenter()
    seg.set_image(ct)
    rows = seg.lesions()
    assert [r["id"] for r in rows] == [1, 2] and [r["voxels"] for r in rows] == [512, 8]
    assert rows[0]["volume_ml"] == 0.512 and rows[0]["mean"] == 150.0 and "suv_max" not in rows[0]
    np.testing.assert_allclose(rows[0]["centroid_lps"], [-30.0 + 15.5, 12.5 + 13.5, 400.0 + 11.5], atol=1e-9)
    assert rows[0]["bbox_ijk"] == [[12, 10, 8], [19, 17, 15]] and rows[1]["bbox_ijk"] == [[24, 3, 3], [25, 4, 4]]
    path = write_lesion_table(rows, tmp_path / "l.json", method="small-lesion-il", image="ct.nii.gz")
    assert json.loads(path.read_text())["lesions"] == rows and read_lesion_table(path)["lesions"] == rows
    assert json.loads(path.read_text())["units"] == {"volume_ml": "mL", "mean": "HU", "centroid_lps": "LPS mm",
                                                     "bbox_ijk": "voxel index (i, j, k), inclusive"}
    csv_lines = write_lesion_table(rows, tmp_path / "l.csv").read_text().splitlines()
    assert csv_lines[0] == ",".join(TABLE_COLUMNS) == ("id,voxels,volume_ml,mean_hu,centroid_x_mm,centroid_y_mm,"
                                                       "centroid_z_mm,bbox_i0,bbox_j0,bbox_k0,bbox_i1,bbox_j1,bbox_k1")
    assert csv_lines[2] == "2,8,0.008,150.0,-5.5,16.0,403.5,24,3,3,25,4,4"
    assert read_lesion_table(tmp_path / "l.csv")["lesions"] == rows
    with pytest.raises(OutputExistsError):
        write_lesion_table(rows, tmp_path / "l.csv")
    with pytest.raises(InputError, match=".csv or .json"):
        write_lesion_table(rows, tmp_path / "l.txt")


def _model_folder(path, variant="seg+il", prior=IntensityPrior.gaussian(150.0, 20.0)):
    from lesionseg.methods.smalllesion.train import prior_json_text

    net = UNet(3, *{"seg": (1, 1), "seg+il": (1, 2)}[variant], channels=(4, 8), norm="group")
    text = prior_json_text(prior)
    card = {"method": "small-lesion-il", "variant": variant, "network": {"class": "UNet", "kwargs": net.config},
            "preprocessing": SmallLesionPreprocessing(patch=(32, 32, 32)).to_dict(), "training": {"held_out_cases": []},
            "prior": {"file": "prior.json", "sha256": hashlib.sha256(text.encode()).hexdigest()}}
    return save_model_folder(path, card, {"weights.pt": net.state_dict()}, extra_files={"prior.json": text})


def test_model_folder_and_cli(tmp_path):
    from lesionseg import cli
    from lesionseg.io import read_image, write_image

    model = _model_folder(tmp_path / "model")
    seg = SmallLesionSegmenter(load_model_folder(model.path, "small-lesion-il"))
    assert seg.trained_variant == "seg+il" and seg.model_prior.describe()["peak_hu"] == 150.0
    ct_path = write_image(_ct(), tmp_path / "ct.nii.gz")
    base = ["--progress", "none", "predict", "small-lesion-il", str(ct_path), "--weights", str(model.path),
            "--device", "cpu"]
    out, table = tmp_path / "mask.nii.gz", tmp_path / "lesions.csv"
    assert cli.main([*base, "-o", str(out), "--prior-mean", "150", "--prior-sd", "0"]) == 2 and not out.exists()
    assert cli.main([*base, "-o", str(out), "--prior-mean", "150"]) == 2
    assert cli.main([*base, "-o", str(out), "--variant", "seg+pp"]) == 2      # a seg+il model has no seg+pp
    table.write_text("exists")
    assert cli.main([*base, "-o", str(out), "--table", str(table)]) == 2 and not out.exists()
    table.unlink()
    assert cli.main([*base, "-o", str(out), "--table", str(table), "--prior-mean", "150", "--prior-sd", "20",
                     "--roi", "-30", "12.5", "400", "0", "40", "423"]) == 0
    assert read_image(out).same_grid(_ct()) and table.read_text().startswith(",".join(TABLE_COLUMNS))
    (model.path / "prior.json").write_text((model.path / "prior.json").read_text().replace("gaussian", "table"))
    with pytest.raises(WeightsError, match="sha256"):
        SmallLesionSegmenter(load_model_folder(model.path))


@pytest.mark.parametrize("flags, message", [
    (["--prior-mean", "50", "--prior-sd", "1e9"],
     "--prior-sd (the prior SD) must be > 0 and <= 1000 HU, got 1000000000"),
    (["--prior-mean", "50", "--prior-sd", "0"], "--prior-sd (the prior SD) must be > 0 and <= 1000 HU, got 0"),
    (["--prior-mean", "-3000", "--prior-sd", "10"],
     "--prior-mean (the prior mean) must lie in the CT range -1024..3071 HU, got -3000"),
    (["--prior-mean", "inf", "--prior-sd", "10"], "--prior-mean (the prior mean, HU) must be a finite number, got inf"),
])
def test_cli_prior_flags_are_bounded_and_named(tmp_path, capsys, flags, message):
    """``--prior-sd 1e9`` once built an 89 GiB HU grid; it is refused, naming the flag and the allowed range."""
    from lesionseg import cli
    from lesionseg.io import write_image

    model = _model_folder(tmp_path / "model")
    ct_path = write_image(_ct(), tmp_path / "ct.nii.gz")
    code = cli.main(["--progress", "none", "predict", "small-lesion-il", str(ct_path), "--weights", str(model.path),
                     "--device", "cpu", "-o", str(tmp_path / "mask.nii.gz"), *flags])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stdout == "" and stderr == f"error: {message}\n"
    assert not (tmp_path / "mask.nii.gz").exists()


@pytest.mark.parametrize("variant", ["seg", "seg+il-in", "seg+il", "seg+il-shifted"])
def test_real_unet_runs_every_variant(variant):
    from lesionseg.methods.smalllesion.segmenter import CHANNELS

    torch.manual_seed(0)
    seg = _segmenter(UNet(3, *CHANNELS[variant], channels=(4, 8), norm="group"), variant=variant,
                     prior=IntensityPrior.gaussian(150.0, 20.0), prep=SmallLesionPreprocessing(patch=(32, 32, 32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # no spurious warnings on a plain CT
        seg.set_image(_ct(spacing=(0.9, 0.9, 1.2)))
    prob = seg.probability()
    assert prob.same_grid(seg.image) and prob.array.dtype == np.float32
    assert 0 <= prob.array.min() <= prob.array.max() <= 1
    assert np.array_equal(seg.predict().array, (prob.array > 0.5).astype(np.uint8))
