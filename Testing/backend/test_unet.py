from __future__ import annotations

import json

import pytest
import torch

from lesionseg import WeightsError
from lesionseg.nets.unet import NETWORKS, UNet, build_network, register_network

TINY = (4, 8, 16)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("norm", ["group", "batch", "instance", "layer"])
def test_output_shape_any_input_size(dims, norm):
    torch.manual_seed(0)
    net = UNet(dims, in_channels=2, out_channels=3, channels=TINY, norm=norm).eval()
    size = (5, 9, 7)[:dims]  # none a multiple of 4: padded inside and cropped back
    with torch.no_grad():
        out = net(torch.randn(2, 2, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("upsample", ["transpose", "linear"])
def test_upsample_modes_and_gradients(upsample):
    net = UNet(3, 1, 2, TINY, upsample=upsample)
    x = torch.randn(1, 1, 8, 8, 8, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    assert all(p.grad is not None for p in net.parameters())


def test_odd_input_equals_zero_padded_input_cropped():
    """The documented behaviour: pad with zeros at the far end to a multiple of 4, crop back."""
    torch.manual_seed(0)
    net = UNet(2, 1, 1, TINY).eval()
    assert net.divisor == 4
    x = torch.randn(1, 1, 7, 11)
    with torch.no_grad():
        direct = net(x)
        padded = net(torch.nn.functional.pad(x, (0, 1, 0, 1)))[..., :7, :11]
        shifted = net(torch.nn.functional.pad(x, (1, 0, 1, 0)))[..., 1:, 1:]
    torch.testing.assert_close(direct, padded, rtol=0, atol=1e-6)
    assert not torch.allclose(direct, shifted, atol=1e-3)  # padding elsewhere would change the answer


def test_deep_supervision_outputs():
    net = UNet(3, 1, 2, (4, 8, 16, 32), deep_supervision=True)
    outs = net(torch.randn(1, 1, 16, 16, 10))
    assert [tuple(o.shape) for o in outs] == [(1, 2, 16, 16, 10), (1, 2, 8, 8, 5), (1, 2, 4, 4, 3)]
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 16, 10)).shape == (1, 2, 16, 16, 10)


def test_config_round_trips_through_json_card():
    net = UNet(2, 1, 2, (4, 8), norm="instance", upsample="linear", deep_supervision=False, groups=4)
    card = json.loads(json.dumps({"class": "UNet", "kwargs": net.config}))
    rebuilt = build_network(card["class"], card["kwargs"])
    assert isinstance(rebuilt, UNet)
    rebuilt.load_state_dict(net.state_dict())  # identical architecture: strict load succeeds
    assert rebuilt.config == net.config


def test_build_network_errors():
    with pytest.raises(WeightsError, match="unknown network"):
        build_network("NoSuchNet", {})
    with pytest.raises(WeightsError, match="unknown network"):
        build_network("lesionseg.nets.unet.make_norm", {})  # not an nn.Module class
    with pytest.raises(WeightsError, match="invalid"):
        build_network("UNet", {"norm": "weird"})
    with pytest.raises(WeightsError, match="invalid"):
        build_network("UNet", {"no_such_argument": 1})


def test_build_network_by_dotted_path():
    net = build_network("lesionseg.nets.unet.UNet", {"spatial_dims": 2, "channels": [4, 8]})
    assert isinstance(net, UNet) and net.spatial_dims == 2


def test_register_network_refuses_a_second_class_under_one_name():
    assert NETWORKS["UNet"] is UNet
    with pytest.raises(ValueError, match="twice"):
        register_network("UNet")(type("Other", (torch.nn.Module,), {}))


@pytest.mark.parametrize("kwargs", [{"spatial_dims": 1}, {"channels": (8,)}, {"channels": (0, 4)},
                                    {"norm": "weird"}, {"upsample": "nearest"}, {"in_channels": 0}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match="spatial"):
        UNet(3, 1, 2, TINY)(torch.randn(1, 1, 8, 8))


def test_set_prior_probability_sets_the_starting_output():
    from lesionseg.nets.unet import set_prior_probability

    net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8))
    set_prior_probability(net.head, 0.01, channel=1)
    with torch.no_grad():
        net.head.weight.zero_()
        out = torch.sigmoid(net(torch.randn(1, 1, 8, 8, 8)))
    assert torch.allclose(out[:, 1], torch.full_like(out[:, 1], 0.01), atol=1e-6)
    with pytest.raises(ValueError):
        set_prior_probability(net.head, 1.0)
