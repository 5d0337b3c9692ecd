"""The shared losses (:mod:`lesionseg.losses`): bit-for-bit equal to each method's own copy on random inputs
(empty targets and ignored voxels included), exact values on hand-computed inputs, gradients, bad input."""
from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch.testing import assert_close

from lesionseg import losses
from lesionseg.errors import InputError
from lesionseg.losses import (generalized_dice_loss, multiclass_soft_dice_loss, soft_dice_loss,
                              weighted_bce_with_logits)

S4C_IGNORE = 255


def method_function(module: str, name: str, ours):
    """The method's own copy, or a skip once the method has switched to :mod:`lesionseg.losses` (the
    comparison would then compare a function with itself)."""
    found = getattr(importlib.import_module(module), name, None)
    if found is None or found is ours or getattr(found, "__module__", "") == losses.__name__:
        pytest.skip(f"{module}.{name} is gone or is lesionseg.losses' own")
    return found


def exactly(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert_close(ours, theirs, rtol=0, atol=0)


def grads(fn, prediction: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Value of ``fn(prediction, *others)`` and its gradient with respect to ``prediction``."""
    leaf = prediction.detach().clone().requires_grad_(True)
    value = fn(leaf, *others)
    value.backward()
    return [value.detach(), leaf.grad]


# --- soft Dice (autopet-l2snet) -----------------------------------------------------------------------

def _autopet_soft_dice(prob, target, weight=None, eps=1e-5):
    """autopet-l2snet's own copy as it was before it moved to :mod:`lesionseg.losses` (the reference)."""
    w = torch.ones_like(prob) if weight is None else weight
    truth = (w * target).sum()
    if truth.item() == 0.0:
        return 0.0 * prob.sum()
    return 1.0 - (2.0 * (w * prob * target).sum() + eps) / ((w * prob).sum() + truth + eps)


@pytest.mark.parametrize("eps", [1e-5, 1.0])
@pytest.mark.parametrize("case", ["lesion", "empty", "unweighted"])
def test_soft_dice_equals_autopets_copy(eps, case):
    autopet = _autopet_soft_dice
    gen = torch.Generator().manual_seed(0)
    prob = torch.sigmoid(torch.randn(2, 12, 10, generator=gen))
    target = (torch.rand(2, 12, 10, generator=gen) < 0.1).float() * (case != "empty")
    weight = None if case == "unweighted" else 1.0 + torch.rand(2, 12, 10, generator=gen)
    inputs = (prob, target) if weight is None else (prob, target, weight)
    ours = grads(lambda *t: soft_dice_loss(*t, eps=eps), *inputs)
    theirs = grads(lambda *t: autopet(*t, eps=eps), *inputs)
    for a, b in zip(ours, theirs):
        exactly(a, b)
    if case == "empty":
        assert float(ours[0]) == 0.0 and not ours[1].any()
    else:
        assert ours[1].abs().sum() > 0


def test_soft_dice_hand_values():
    prob, target = torch.tensor([1.0, 0.5, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert_close(soft_dice_loss(prob, target, eps=1.0), torch.tensor(1 - 4 / 4.5))
    weight = torch.tensor([2.0, 1.0, 1.0, 1.0])  # S(wpg) = 2.5, S(wp) = 2.5, S(wg) = 3
    assert_close(soft_dice_loss(prob, target, weight, eps=1.0), torch.tensor(1 - 6 / 6.5))
    empty = torch.zeros(4)
    assert float(soft_dice_loss(prob, empty, eps=1.0)) == 0.0
    assert_close(soft_dice_loss(prob, empty, eps=1.0, empty="eps"), torch.tensor(1 - 1 / 2.5))
    both = torch.stack([prob, prob]), torch.stack([target, empty])  # sample 0 as above, sample 1 empty
    assert_close(soft_dice_loss(*both, eps=1.0, reduce_over="sample"), torch.tensor(1 - 4 / 4.5))
    assert_close(soft_dice_loss(*both, eps=1.0, reduce_over="sample", empty="eps"),
                 torch.tensor(((1 - 4 / 4.5) + (1 - 1 / 2.5)) / 2))
    assert float(soft_dice_loss(*(torch.stack([prob, prob]), torch.zeros(2, 4)), reduce_over="sample")) == 0.0
    # over the batch the two samples pool: S(pg) = 1.5, S(p) = 3, S(g) = 2
    assert_close(soft_dice_loss(*both, eps=1.0), torch.tensor(1 - 4 / 6))


# --- weighted BCE (autopet-l2snet) --------------------------------------------------------------------

def test_weighted_bce_equals_autopets_copy_and_hand_values():
    def autopet(logits, target, weight):  # autopet-l2snet's own copy before it moved to lesionseg.losses
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return (weight * bce).sum() / weight.sum()

    gen = torch.Generator().manual_seed(1)
    logits, weight = torch.randn(2, 8, 8, 8, generator=gen), 1.0 + torch.rand(2, 8, 8, 8, generator=gen)
    target = (torch.rand(2, 8, 8, 8, generator=gen) < 0.2).float()
    for a, b in zip(grads(weighted_bce_with_logits, logits, target, weight), grads(autopet, logits, target, weight)):
        exactly(a, b)
    value = weighted_bce_with_logits(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0]))
    assert_close(value, torch.tensor((math.log(2) + 3 * math.log(1 + math.exp(-2))) / 4))


# --- multi-class soft Dice (s4c) ----------------------------------------------------------------------

def _s4c_soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """s4c's ``soft_dice_loss`` as it was before #16 (``lesionseg.methods.s4c.train``), word for word."""
    from torch.nn import functional as F

    keep = (target != S4C_IGNORE).unsqueeze(1)
    probs = torch.softmax(logits, dim=1)[:, 1:] * keep
    onehot = F.one_hot(torch.where(keep[:, 0], target, 0), logits.shape[1]).permute(0, 4, 1, 2, 3)[:, 1:]
    onehot = onehot.to(probs.dtype)
    dims = (0, 2, 3, 4)
    present = onehot.sum(dims) > 0
    if not present.any():
        return logits.sum() * 0.0
    inter = (probs * onehot).sum(dims)
    dice = (2 * inter + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)
    return 1.0 - dice[present].mean()


@pytest.mark.parametrize("case", ["all classes", "ignored voxels", "one class absent", "background only",
                                  "all ignored"])
def test_multiclass_soft_dice_equals_s4cs_copy(case):
    s4c = _s4c_soft_dice_loss  # s4c's own copy, deleted from lesionseg.methods.s4c.train in #16, kept here
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 6, 6, 6, generator=gen)
    target = torch.randint(0, 4, (2, 6, 6, 6), generator=gen)
    if case == "ignored voxels":
        target[torch.rand(target.shape, generator=gen) < 0.2] = S4C_IGNORE
    if case == "one class absent":
        target[target == 3] = 0
    if case == "background only":
        target[:] = 0
    if case == "all ignored":
        target[:] = S4C_IGNORE
    ours = grads(lambda x: multiclass_soft_dice_loss(x, target, eps=1.0, ignore_index=S4C_IGNORE), logits)
    theirs = grads(lambda x: s4c(x, target), logits)
    for a, b in zip(ours, theirs):
        exactly(a, b)
    if case in ("background only", "all ignored"):
        assert float(ours[0]) == 0.0 and not ours[1].any()
    else:
        assert ours[1].abs().sum() > 0


def test_multiclass_soft_dice_hand_values():
    probs = torch.tensor([[0.2, 0.6], [0.5, 0.2], [0.3, 0.2]])  # (C=3, 2 voxels)
    logits = probs.log()[None]  # (1, 3, 2): softmax gives probs back
    target = torch.tensor([[1, 0]])
    class1 = 2 / 2.7  # (2 * 0.5 + 1) / (0.7 + 1 + 1)
    assert_close(multiclass_soft_dice_loss(logits, target), torch.tensor(1 - class1))  # class 2 absent: left out
    assert_close(multiclass_soft_dice_loss(logits, target, empty="eps"), torch.tensor(1 - (class1 + 1 / 1.5) / 2))
    ignored = torch.tensor([[1, S4C_IGNORE]])  # voxel 1 counts for nothing: class 1 (2*0.5+1) / (0.5+1+1)
    assert_close(multiclass_soft_dice_loss(logits, ignored, ignore_index=S4C_IGNORE), torch.tensor(1 - 2 / 2.5))
    assert_close(multiclass_soft_dice_loss(logits, target, classes=[0], eps=1e-6),
                 torch.tensor(1 - (2 * 0.6 + 1e-6) / (0.8 + 1 + 1e-6)))


# --- generalized Dice (small-lesion-il) ---------------------------------------------------------------

def test_generalized_dice_values_of_small_lesions_former_copy():
    """small-lesion-il's copy is gone (it trains with this function); these are the exact values its own test
    asked of that copy."""
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 1, 1, 4)
    half = torch.zeros_like(target)                   # p = 0.5 everywhere
    # lesion: w = 1/4, sum p*r = 1, sum p+r = 4; background the same -> 1 - (2*0.5 + s) / (2 + s)
    assert generalized_dice_loss(half, target).item() == pytest.approx(1 - (1 + 1e-5) / (2 + 1e-5), abs=1e-7)
    perfect = (target * 2 - 1) * 100.0
    assert generalized_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # no lesion in the target: its weight becomes the background's (1/16) instead of infinity
    empty = torch.zeros_like(target)
    assert generalized_dice_loss(half, empty).item() == pytest.approx(1 - (0.25 + 1e-5) / (0.5 + 1e-5), abs=1e-6)
    # a batch is the mean of its samples
    both = generalized_dice_loss(torch.cat([half, perfect]), torch.cat([target, target])).item()
    assert both == pytest.approx(0.5 * (1 - (1 + 1e-5) / (2 + 1e-5)), abs=1e-6)


def test_generalized_dice_hand_values_and_the_softmax_form():
    logits = torch.tensor([[[math.log(0.8 / 0.2), math.log(0.4 / 0.6)]]])  # (1, 1, 2): p = 0.8, 0.4
    # weights 1 and 1; numerator 2 (0.6 + 0.8), denominator (0.2 + 0.6 + 1) + (0.8 + 0.4 + 1)
    assert_close(generalized_dice_loss(logits, torch.tensor([[[1.0, 0.0]]]), smooth=1e-5),
                 torch.tensor(1 - (2.8 + 1e-5) / (4.0 + 1e-5)))
    # no lesion: background weight 1/4, the lesion's absent weight the same; 1 - 0.4 / 1.0
    assert_close(generalized_dice_loss(logits, torch.zeros(1, 1, 2), smooth=1e-5),
                 torch.tensor(1 - (0.4 + 1e-5) / (1.0 + 1e-5)))
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 5, 5, generator=gen)
    labels = (torch.rand(2, 5, 5, generator=gen) < 0.3).long()
    two = torch.cat([torch.zeros_like(x), x], dim=1)  # softmax over (0, x) = (1 - sigmoid x, sigmoid x)
    assert_close(generalized_dice_loss(two, labels), generalized_dice_loss(x, labels[:, None].float()))


# --- bad input ----------------------------------------------------------------------------------------

def test_bad_input_is_an_input_error():
    p = torch.rand(2, 4)
    with pytest.raises(InputError, match="one shape"):
        soft_dice_loss(p, torch.rand(2, 5))
    with pytest.raises(InputError, match="eps"):
        soft_dice_loss(p, p, eps=0.0)
    with pytest.raises(InputError, match="empty"):
        soft_dice_loss(p, p, empty="none")
    with pytest.raises(InputError, match="reduce_over"):
        soft_dice_loss(p, p, reduce_over="voxel")
    with pytest.raises(InputError, match="do not fit"):
        multiclass_soft_dice_loss(torch.rand(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(InputError, match="labels"):
        generalized_dice_loss(torch.rand(2, 3, 4), torch.zeros(2, 1, 4))
    with pytest.raises(InputError, match="one shape"):
        weighted_bce_with_logits(p, p, torch.ones(4))
