"""TS-FCN: network layout, the liberal-box pipeline and its inverse, the segmenter, data, evaluation, training.

Geometry tests use a *tiny randomly initialised* TS-FCN or a fake network (all tumour), never the
shipped weights; ``test_shipped_weights_*`` run the shipped model (skipped when it is not installed).
Data, evaluation and training: ``test_tsfcn_data.py``.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lesionseg
from lesionseg import Box, Image, InputError, LesionSegWarning
from lesionseg.geometry import IndexBox, index_box_to_world
from lesionseg.metrics import dice
from lesionseg.methods.tsfcn import TSFCN
from lesionseg.methods.tsfcn.network import TSFCNNet, bilinear_kernel, count_parameters, shrink_state
from lesionseg.methods.tsfcn.preprocess import (PAPER_WINDOW, Preprocessing, crop_slices, liberal_box,
                                                mask_to_network, paste_probability, to_network)
from lesionseg.modelfolder import find_model_folder
from lesionseg.training import Trainer, TrainConfig, lr_factor

TINY = {"fc_channels": 8, "widths": (4, 4, 8)}


class AllTumour(nn.Module):
    """Fake network: tumour logit 1, background 0 at every pixel of a ``(B, 3, H, W)`` input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 2, *x.shape[2:])
        out[:, 1] = 1.0
        return out


def _ct(shape=(5, 60, 80), spacing=(0.7, 0.7, 2.0), origin=(-30.0, 12.0, -200.0)) -> Image:
    """Lung-like CT: -850 HU with noise and a 0 HU sphere of radius 8 voxels in-plane at (40, 30, 2)."""
    rng = np.random.default_rng(1)
    k, j, i = np.ogrid[:shape[0], :shape[1], :shape[2]]
    arr = -850.0 + 20.0 * rng.standard_normal(shape)
    ball = ((i - 40) ** 2 + (j - 30) ** 2 + ((k - 2) * spacing[2] / spacing[0]) ** 2) <= 8 ** 2
    arr[ball] = rng.normal(20.0, 15.0, int(ball.sum()))
    return Image(arr.astype(np.int16), spacing, origin)


def _box(image: Image, lo, hi) -> Box:
    return index_box_to_world(image, np.array(lo), np.array(hi))


# --- network -------------------------------------------------------------------------------------------

def test_parameter_counts_of_the_configs():
    with torch.device("meta"):
        assert count_parameters(TSFCNNet.from_config("slim")) == 7_832_130
        assert count_parameters(TSFCNNet.from_config("fast")) == 7_832_130
        assert count_parameters(TSFCNNet.from_config("lite")) == 1_959_202
        assert count_parameters(TSFCNNet.from_config("paper")) == 69_319_234
    with pytest.raises(InputError, match="unknown TS-FCN config"):
        TSFCNNet.from_config("huge")


def test_fast_config_takes_slim_weights_and_keeps_the_input_size():
    slim, fast = TSFCNNet(**TINY).eval(), TSFCNNet(**TINY, same_padding=True).eval()
    fast.load_state_dict(slim.state_dict())  # same layers, only the padding differs
    assert fast.features[0].padding == (1, 1) and slim.features[0].padding == (32, 32)
    for shape in ((100, 100), (37, 53), (8, 8)):
        assert fast(torch.zeros(2, 3, *shape)).shape == (2, 2, *shape)
    x = torch.randn(1, 3, 100, 100)
    assert not torch.allclose(fast(x), slim(x))  # a different computation, not the same net under two names


def test_shrink_state_keeps_the_strongest_filters_of_a_wider_net():
    wide = TSFCNNet(fc_channels=8, widths=(4, 4, 8), same_padding=True).eval()
    narrow = TSFCNNet(fc_channels=4, widths=(2, 2, 4), same_padding=True).eval()
    state = wide.state_dict()
    state["features.0.weight"][1] *= 100  # filter 1 of the first layer is by far the strongest
    state["features.0.weight"][3] *= 50
    narrow.load_state_dict(shrink_state(state, narrow))
    kept = narrow.state_dict()
    assert torch.equal(kept["features.0.weight"], state["features.0.weight"][[1, 3]])
    assert torch.equal(kept["features.0.bias"], state["features.0.bias"][[1, 3]])
    assert kept["features.2.weight"].shape == (2, 2, 3, 3)  # inputs follow the previous layer's kept filters
    assert kept["head.6.weight"].shape == (2, 4, 1, 1)  # the classifier keeps both classes
    assert narrow(torch.zeros(1, 3, 40, 40)).shape == (1, 2, 40, 40)
    with pytest.raises(InputError, match="layers differ"):
        shrink_state(narrow.state_dict(), wide)  # cannot widen


def test_output_shape_and_frozen_bilinear_upsampling():
    net = TSFCNNet(**TINY).eval()
    assert net(torch.zeros(2, 3, 100, 100)).shape == (2, 2, 100, 100)
    assert not net.upsample.weight.requires_grad
    up = nn.functional.conv_transpose2d(torch.ones(1, 2, 6, 6), bilinear_kernel(2, 16), stride=8)
    np.testing.assert_allclose(up[0, :, 8:-8, 8:-8].numpy(), 1.0, atol=1e-6)  # interior of a constant stays 1
    assert net(torch.zeros(1, 3, 37, 53)).shape == (1, 2, 37, 53)
    with pytest.raises(InputError, match="B, C, H, W"):
        net(torch.zeros(3, 100, 100))


# --- pre-processing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi, side, start", [((10, 20, 0), (19, 29, 2), 100, (-35, -25)),
                                                 ((0, 0, 1), (63, 40, 1), 128, (-32, -43))])
def test_liberal_box_is_twice_the_box_and_at_least_100(lo, hi, side, start):
    prep = Preprocessing()
    lb = liberal_box(IndexBox(np.array(lo), np.array(hi)), prep)
    assert lb.side == side and (lb.i0, lb.j0) == start and (lb.k0, lb.k1) == (lo[2], hi[2])
    centre = (np.array(lo[:2]) + np.array(hi[:2])) / 2
    np.testing.assert_allclose(np.array([lb.i0, lb.j0]) + (side - 1) / 2, centre, atol=0.5)


def test_crop_pads_with_air_and_paste_is_the_exact_inverse_at_100_px():
    arr = np.arange(3 * 50 * 60, dtype=np.float32).reshape(3, 50, 60)
    lb = liberal_box(IndexBox(np.array([20, 10, 0]), np.array([29, 19, 2])), Preprocessing())
    crops = crop_slices(arr, lb, -1000.0)
    assert crops.shape == (3, 100, 100)
    assert crops[0, 0, 0] == -1000.0 and crops[0, -1, -1] == -1000.0
    np.testing.assert_array_equal(crops[:, -lb.j0:-lb.j0 + 50, -lb.i0:-lb.i0 + 60], arr)
    values, region = paste_probability(torch.from_numpy(crops), lb, arr.shape)
    np.testing.assert_array_equal(values, arr[region])
    assert region == (slice(0, 3), slice(0, 50), slice(0, 60))


def test_resize_round_trip_of_a_large_box_keeps_the_mask():
    prep = Preprocessing()
    k, j, i = np.ogrid[:1, :120, :120]
    mask = ((i - 60) ** 2 + (j - 58) ** 2 <= 25 ** 2).astype(np.float32)
    lb = liberal_box(IndexBox(np.array([35, 33, 0]), np.array([85, 83, 0])), prep)
    assert lb.side == 102
    small = mask_to_network(crop_slices(mask, lb, 0.0), prep.size)
    assert small.shape == (1, 100, 100)
    values, region = paste_probability(small.float(), lb, mask.shape)
    back = np.zeros(mask.shape, bool)
    back[region] = values >= 0.5
    assert dice(Image(back.astype(np.uint8)), Image(mask.astype(np.uint8))) > 0.98


def test_window_normalisation_and_three_channels():
    prep = Preprocessing(mean=(10.0, 10.0, 10.0), std=(2.0, 2.0, 2.0))
    x = to_network(np.array([[[PAPER_WINDOW[0] - 50, PAPER_WINDOW[1] + 50]]], np.float32).repeat(100, 1)
                   .repeat(50, 2), prep)
    assert x.shape == (1, 3, 100, 100)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), (0.0 - 10.0) / 2.0)
    np.testing.assert_allclose(x[0, :, 0, -1].numpy(), (255.0 - 10.0) / 2.0, rtol=1e-6)
    with pytest.raises(InputError, match="hi > lo"):
        Preprocessing(window=(100.0, -100.0))
    assert Preprocessing.from_dict(prep.to_dict()) == prep


# --- segmenter -----------------------------------------------------------------------------------------

def test_prediction_is_on_the_input_grid_and_only_in_the_liberal_square(oblique_image):
    seg = TSFCN(net=AllTumour(), preprocessing=Preprocessing(min_side=10))
    seg.set_image(oblique_image)
    label = seg.predict(_box(oblique_image, (6, 4, 1), (9, 7, 3)))
    assert label.same_grid(oblique_image, tol=0) and label.array.dtype == np.uint8
    image = Image(oblique_image.array, oblique_image.spacing, oblique_image.origin)  # axis-aligned: exact box
    seg.set_image(image)
    label = seg.predict(_box(image, (6, 4, 1), (9, 7, 3)))
    expected = np.zeros(image.shape, np.uint8)
    expected[1:4, 1:11, 3:13] = 1  # 4 px box -> 10 px liberal square centred on (7.5, 5.5)
    np.testing.assert_array_equal(label.array, expected)


def test_tiny_random_net_keeps_geometry_and_is_repeatable():
    torch.manual_seed(0)
    image = _ct()
    seg = TSFCN(net=TSFCNNet(**TINY), preprocessing=Preprocessing())
    seg.set_image(image)
    box = _box(image, (32, 22, 1), (48, 38, 3))
    prob = seg.predict_probability(box)
    assert prob.same_grid(image, tol=0) and prob.array.dtype == np.float32
    assert np.all(prob.array[[0, 4]] == 0) and np.all((prob.array >= 0) & (prob.array <= 1))
    np.testing.assert_array_equal(seg.predict(box).array, seg.predict(box).array)


def test_bad_boxes_and_prompts():
    image = _ct()
    seg = TSFCN(net=AllTumour(), preprocessing=Preprocessing())
    with pytest.raises(InputError, match="set_image"):
        seg.predict(_box(image, (1, 1, 0), (5, 5, 0)))
    seg.set_image(image)
    with pytest.raises(InputError, match="outside"):
        seg.predict(Box((500.0, 500.0, 0.0), (520.0, 520.0, 10.0)))
    with pytest.raises(InputError, match="zero size"):
        seg.predict(Box((0.0, 20.0, -200.0), (0.0, 20.0, -200.0)))
    with pytest.raises(InputError, match="Box prompt"):
        seg.predict(None)
    world = _box(image, (70, 50, 1), (90, 70, 2))
    with pytest.warns(LesionSegWarning, match="partly outside"):
        label = seg.predict(world)
    assert label.array[1:3].any() and not label.array[[0, 3, 4]].any()


def test_tumour_larger_than_the_box_is_clipped_to_the_liberal_square():
    arr = np.full((1, 200, 200), 40, np.int16)  # "tumour" everywhere, air in one corner for the CT check
    arr[0, :30, :30] = -1000                    # 2 % air, outside the liberal square
    image = Image(arr)
    seg = TSFCN(net=AllTumour(), preprocessing=Preprocessing())
    seg.set_image(image)
    label = seg.predict(_box(image, (95, 95, 0), (104, 104, 0)))
    assert label.array.sum() == 100 * 100
    assert label.array[0, 50:150, 50:150].all()


def test_2d_image_works():
    image = Image(_ct().array[2], (0.7, 0.7, 1.0))
    seg = TSFCN(net=TSFCNNet(**TINY), preprocessing=Preprocessing())
    seg.set_image(image)
    label = seg.predict(_box(image, (32, 22, 0), (48, 38, 0)))
    assert label.shape == (1, 60, 80) and label.same_grid(image, tol=0)


def test_non_ct_intensities_warn():
    seg = TSFCN(net=AllTumour(), preprocessing=Preprocessing())
    with pytest.warns(LesionSegWarning, match="Hounsfield"):
        seg.set_image(Image(np.random.default_rng(0).random((2, 40, 40)).astype(np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LesionSegWarning)
        seg.set_image(_ct())


# --- generic trainer -----------------------------------------------------------------------------------

class _LineTrainer(Trainer):
    """Fit y = 3x with one weight; validation scores are scripted to test best-checkpoint keeping."""

    def __init__(self, config, scores):
        super().__init__(nn.Linear(1, 1, bias=False), config)
        self.scores, self.seen = list(scores), []

    def train_batches(self, epoch):
        x = torch.linspace(-1, 1, 16)[:, None]
        return [(x, 3 * x)]

    def loss(self, batch):
        return nn.functional.mse_loss(self.model(batch[0]), batch[1])

    def validate(self):
        self.seen.append(float(self.model.weight))
        return {"score": self.scores.pop(0)}


def test_trainer_keeps_the_best_epoch_and_learns():
    trainer = _LineTrainer(TrainConfig(epochs=4, lr=0.5, schedule="constant"), [0.1, 0.9, 0.2, 0.3])
    result = trainer.fit()
    assert result.epoch == 2 and result.score == 0.9
    assert float(result.state["weight"]) == pytest.approx(trainer.seen[1])
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    last = _LineTrainer(TrainConfig(epochs=3, lr=0.5, keep="last", max_minutes=0.0), [0.5, 0.1, 0.1]).fit()
    assert len(last.history) == 1 and last.epoch == 1


def test_schedules_and_config_validation():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, schedule="cosine")
    assert lr_factor(cfg, 0) == pytest.approx(0.1) and lr_factor(cfg, 2) == pytest.approx(1.0)
    assert lr_factor(cfg, 6) == pytest.approx(0.5) and lr_factor(cfg, 10) == pytest.approx(0.0)
    with pytest.raises(InputError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")


# --- shipped weights -----------------------------------------------------------------------------------

def _shipped():
    folder = find_model_folder("tsfcn")
    if folder is None:
        pytest.skip("no tsfcn weights installed")
    return lesionseg.build("tsfcn", device="cpu")


def test_shipped_weights_segment_a_synthetic_nodule():
    seg = _shipped()
    image = _ct()
    seg.set_image(image)
    truth = image.with_array((image.array > -400).astype(np.uint8))
    label = seg.predict(_box(image, (31, 21, 0), (49, 39, 4)))
    assert dice(label, truth) > 0.7


def test_shipped_weights_on_real_lidc_nodules(shared_data, tmp_path):
    """The held-out nodules of the shipped card (its ``held_out_cases``, or an old card's
    ``split.validation_patients``), imported and scored by ``lesionseg.evaluation.evaluate``."""
    from lesionseg.data.importers import import_dataset
    from lesionseg.evaluation import evaluate

    seg = _shipped()
    folder = shared_data / "lidc-nodule-vois"
    if not folder.is_dir():
        pytest.skip("lidc-nodule-vois is absent")
    card = seg.model.model_card
    held_out = set(card.held_out_cases) | set(card.held_out_patients)
    names = sorted(p.name[:-7] for p in (folder / "image").glob("*.nii.gz")
                   if p.name[:-7] in held_out or p.name[:14] in held_out)
    assert len(names) >= 5, "the card names no held-out LIDC nodule"
    dataset = import_dataset("lidc-vois", folder, tmp_path / "lidc", names=names)
    result = evaluate("tsfcn", dataset, [seg.model.path], device="cpu")
    assert result["cases"] == len(names) and result["summary"]["tsfcn"]["lesion_dice"]["lesions"] == len(names)
    assert result["summary"]["tsfcn"]["lesion_dice"]["mean"] > 0.8  # 0.819 measured on the 21 (card)
