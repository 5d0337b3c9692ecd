from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionseg import InputError
from lesionseg.inference import (importance_map, inference_context, prepare_for_inference, slice_wise,
                                 sliding_window, window_starts)
from lesionseg.nets.unet import UNet


def plus_one(batch: torch.Tensor) -> torch.Tensor:
    return batch + 1


def integer_volume(shape, seed=0) -> np.ndarray:
    """Integer-valued float32 volume: sums of a few copies are exact in float32."""
    return np.random.default_rng(seed).integers(-50, 50, size=shape).astype(np.float32)


@pytest.mark.parametrize("shape,patch", [
    ((2, 13, 17, 9), (8, 8, 8)),      # odd sizes, several windows per axis
    ((1, 5, 6, 3), (8, 8, 8)),        # smaller than the patch on every axis: padded
    ((1, 20, 7, 16), (8, 8, 8)),      # mixed: one axis padded, others tiled
    ((3, 31, 18), (16, 16)),          # 2D
])
def test_plus_one_constant_mode_is_exact(shape, patch):
    vol = integer_volume(shape)
    out = sliding_window(plus_one, vol, patch, overlap=0.5, mode="constant", batch_size=3)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, vol + 1)


@pytest.mark.parametrize("shape,patch", [((2, 13, 17, 9), (8, 8, 8)), ((1, 5, 6, 3), (8, 8, 8)),
                                         ((3, 31, 18), (16, 16))])
def test_plus_one_gaussian_mode(shape, patch):
    vol = integer_volume(shape)
    out = sliding_window(plus_one, vol, patch, overlap=0.25, mode="gaussian")
    np.testing.assert_allclose(out, vol + 1, rtol=0, atol=1e-4)


def test_tensor_in_tensor_out_and_channel_change():
    vol = torch.from_numpy(integer_volume((2, 10, 12, 14)))

    def two_to_three(batch):
        return torch.cat([batch, batch.sum(1, keepdim=True)], dim=1)

    out = sliding_window(two_to_three, vol, (6, 6, 6), mode="constant", batch_size=4)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 10, 12, 14)
    torch.testing.assert_close(out[:2], vol, rtol=0, atol=0)
    torch.testing.assert_close(out[2], vol.sum(0), rtol=0, atol=0)


def test_position_dependent_predictor_blends_windows():
    """A predictor that returns each window's start offset shows that overlapping windows are averaged."""
    vol = np.zeros((1, 12), np.float32)
    calls = []

    def window_index(batch):
        calls.append(len(calls))
        return torch.full_like(batch, float(len(calls) - 1))

    out = sliding_window(window_index, vol, (8,), overlap=0.5, mode="constant")
    assert window_starts(12, 8, 0.5) == [0, 4]
    np.testing.assert_array_equal(out[0], [0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1])


def test_progress_and_batching():
    seen = []
    vol = integer_volume((1, 20, 20, 20))
    out1 = sliding_window(plus_one, vol, (8, 8, 8), batch_size=1, progress=lambda d, t: seen.append((d, t)))
    total = len(window_starts(20, 8, 0.5)) ** 3
    assert seen == [(i, total) for i in range(1, total + 1)]
    seen.clear()
    out5 = sliding_window(plus_one, vol, (8, 8, 8), batch_size=5, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (total, total) and len(seen) == -(-total // 5)
    np.testing.assert_allclose(out1, out5, atol=1e-5)


def test_window_starts_cover_and_overlap():
    for size, patch, overlap in [(100, 32, 0.5), (33, 32, 0.5), (97, 10, 0.0), (10, 10, 0.9)]:
        starts = window_starts(size, patch, overlap)
        assert starts[0] == 0 and starts[-1] == size - patch
        assert all(b - a <= patch * (1 - overlap) + 1 for a, b in zip(starts, starts[1:]))


def test_importance_map_properties():
    w = importance_map((9, 16), "gaussian")
    assert w.shape == (9, 16) and w.dtype == torch.float32
    assert float(w.max()) == pytest.approx(1.0, abs=1e-6) and float(w.min()) >= 1e-3
    torch.testing.assert_close(w, w.flip(0).flip(1))  # symmetric about the patch centre
    assert w[4, 7] > w[0, 7] and w[4, 7] > w[4, 0]
    assert torch.equal(importance_map((3, 4), "constant"), torch.ones(3, 4))


@pytest.mark.parametrize("kwargs,match", [
    ({"patch": (8, 8)}, "spatial axes"),
    ({"overlap": 1.0}, "overlap"),
    ({"overlap": -0.1}, "overlap"),
    ({"mode": "median"}, "mode"),
    ({"batch_size": 0}, "batch_size"),
    ({"patch": (0, 8, 8)}, "patch"),
])
def test_bad_arguments_raise(kwargs, match):
    args = {"patch": (8, 8, 8), **kwargs}
    with pytest.raises(InputError, match=match):
        sliding_window(plus_one, np.zeros((1, 10, 10, 10), np.float32), **args)


def test_bad_predictor_output_raises():
    with pytest.raises(InputError, match="predictor must return"):
        sliding_window(lambda b: b[:, :, :4], np.zeros((1, 10, 10, 10), np.float32), (8, 8, 8))
    with pytest.raises(InputError, match="predictor must return"):
        sliding_window(lambda b: b.numpy(), np.zeros((1, 10, 10, 10), np.float32), (8, 8, 8))


def test_real_unet_through_sliding_window():
    torch.manual_seed(0)
    net = prepare_for_inference(UNet(3, 1, 2, (4, 8)), "cpu")
    vol = torch.randn(1, 12, 10, 9)
    with inference_context():
        out = sliding_window(net, vol, (8, 8, 8), overlap=0.5)
    assert out.shape == (2, 12, 10, 9) and torch.isfinite(out).all()


def test_prepare_for_inference():
    net3 = UNet(3, 1, 2, (4, 8)).train()
    assert prepare_for_inference(net3, "cpu") is net3 and not net3.training
    weight = net3.encoders[0][3].weight  # 4 -> 4 channels (with C=1 both layouts coincide)
    assert weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()
    net2 = prepare_for_inference(UNet(2, 1, 2, (4, 8)), "cpu")
    assert net2.encoders[0][3].weight.is_contiguous()  # 2D nets keep the default layout
    with inference_context():
        assert torch.is_inference_mode_enabled()
        out = net3(torch.randn(1, 1, 8, 8, 8))
    assert out.is_inference() and not torch.is_inference_mode_enabled()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_wise_numpy_each_axis(axis):
    vol = integer_volume((4, 5, 6))
    shapes = []

    def double(slice_2d):
        shapes.append(slice_2d.shape)
        return slice_2d * 2

    out = slice_wise(double, vol, axis=axis)
    np.testing.assert_array_equal(out, vol * 2)
    expected = tuple(s for a, s in enumerate(vol.shape) if a != axis)
    assert shapes == [expected] * vol.shape[axis]


def test_slice_wise_channels_and_torch():
    vol = torch.from_numpy(integer_volume((2, 3, 4, 5)))
    seen = []

    def to_two_channels(x):  # (C, J, I) -> (C_out=3, J, I)
        return torch.stack([x[0], x[1], x[0] + x[1]])

    out = slice_wise(to_two_channels, vol, axis=0, progress=lambda d, t: seen.append((d, t)))
    assert out.shape == (3, 3, 4, 5)
    torch.testing.assert_close(out[2], vol[0] + vol[1], rtol=0, atol=0)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    out_axis2 = slice_wise(lambda x: x[0], vol, axis=2)  # (C, K, J) -> (K, J)
    torch.testing.assert_close(out_axis2, vol[0], rtol=0, atol=0)


def test_slice_wise_bad_input():
    with pytest.raises(InputError, match="volume"):
        slice_wise(lambda s: s, np.zeros((4, 4)))
    with pytest.raises(InputError, match="axis"):
        slice_wise(lambda s: s, np.zeros((4, 4, 4)), axis=3)
    with pytest.raises(InputError, match="predict_2d"):
        slice_wise(lambda s: s.ravel(), np.zeros((4, 4, 4)))


def test_fuse_batchnorm_keeps_the_outputs_of_a_trained_network():
    from lesionseg.inference import fuse_batchnorm
    from lesionseg.methods.s4c.network import S4CNet

    torch.manual_seed(0)
    net = S4CNet(channels=(4, 8, 8), norm="batch")
    net.train()
    with torch.no_grad():  # a few training-mode passes give the BatchNorms non-trivial running statistics
        for _ in range(3):
            net(torch.randn(2, 1, 16, 16, 16) * 2 + 0.5)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        before = net.eval()(x)
        fused = fuse_batchnorm(net)
        after = fused(x)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
