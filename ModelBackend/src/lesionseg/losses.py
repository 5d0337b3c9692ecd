"""Training losses shared by the methods: soft Dice, multi-class soft Dice, generalized Dice, weighted BCE.

Written here because MONAI (whose ``DiceLoss`` and ``GeneralizedDiceLoss`` these follow) is not a dependency;
cross-entropy is torch's own :func:`torch.nn.functional.cross_entropy` (no wrapper). Each function reproduces,
with its keyword arguments, what a method computed with its private copy, to the last bit (tested). ``S``
sums over every voxel of the batch (``S_l``: of class ``l``); ``p`` are probabilities, ``g`` targets, ``w``
voxel weights, ``w_y`` the class weight of a voxel's label.

================================  ====================================  =====================  =====================
function                          loss                                  empty target gives     used by (arguments)
================================  ====================================  =====================  =====================
:func:`soft_dice_loss`            ``1 - (2 S(w p g) + eps) / (S(w p)    ``empty="zero"``: 0    autopet-l2snet, loc
                                  + S(w g) + eps)``; with               (a sample: left out    and seg nets:
                                  ``reduce_over="sample"`` per          of the mean);          ``eps=1e-5``
                                  sample, then the mean                 ``"eps"``: ``1 - eps   (``--dice-smooth``),
                                                                        / (S(w p) + eps)``     seg ``weight=1+P_loc``
:func:`multiclass_soft_dice_loss` ``softmax``; per class ``(2 S(p g)    absent classes left    s4c: ``eps=1``,
                                  + eps) / (S(p) + S(g) + eps)``,       out, none present: 0   ``ignore_index=255``,
                                  ``1 -`` their mean; ignored voxels    (``"eps"``: all        classes 1..3
                                  count for nothing                     classes count)
:func:`generalized_dice_loss`     Sudre 2017, ``w_l = 1 / S_l(g)^2``:   an absent class gets   small-lesion-il:
                                  ``1 - (2 sum_l w_l S_l(p g) + s) /    the largest other      ``smooth=1e-5``, one
                                  (sum_l w_l S_l(p + g) + s)`` per      weight                 sigmoid channel
                                  sample, mean over the batch
:func:`weighted_bce_with_logits`  ``S(w bce) / S(w)``                   the BCE alone          autopet-l2snet seg,
                                                                                               ``w = 1 + P_loc``
torch ``F.cross_entropy``         ``S(w_y ce) / S(w_y)`` over the       every voxel ignored:   tsfcn (class weights),
                                  voxels not ignored                    NaN                    s4c (weights, ignore
                                                                                               255), recist (plain)
================================  ====================================  =====================  =====================

The empty-target rules matter for lesions: with a small ``eps`` an empty batch's soft Dice ``1 - eps / (S(p) +
eps)`` only reaches 0 when every output is exactly 0, which drove autopet's 3D net to kill its features; with
``eps = 1`` predicting nothing costs only ``1 - 1 / (S(g) + 1)`` on small lesions (see autopet's ``train``).
s4c leaves absent classes out for the same reason (their Dice punishes any probability mass anywhere).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.nn import functional as F

from .errors import InputError

EMPTY = ("zero", "eps")
REDUCTIONS = ("batch", "sample")


def _check_shapes(prob: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> None:
    if target.shape != prob.shape or (weight is not None and weight.shape != prob.shape):
        raise InputError(f"prediction {tuple(prob.shape)}, target {tuple(target.shape)} and weight "
                         f"{None if weight is None else tuple(weight.shape)} must have one shape")


def _check_options(eps: float, empty: str = "zero") -> None:
    if not eps > 0:
        raise InputError(f"eps must be > 0, not {eps}")
    if empty not in EMPTY:
        raise InputError(f"empty must be one of {EMPTY}, not {empty!r}")


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                   eps: float = 1e-5, empty: str = "zero", reduce_over: str = "batch") -> torch.Tensor:
    """Binary soft Dice loss ``1 - (2 sum(w p g) + eps) / (sum(w p) + sum(w g) + eps)``; ``w`` = 1 without ``weight``.

    Args:
        prob: probabilities, any shape ``(B, ...)`` (e.g. ``sigmoid(logits)``).
        target: 0/1 (or soft) targets, the shape of ``prob``.
        weight: per-voxel weights, the shape of ``prob`` (``None``: 1).
        eps: smoothing, > 0; keep it small against the lesion volume of a batch (module docstring).
        empty: a target with ``sum(w g) == 0`` gives ``"zero"`` loss (and in ``"sample"`` mode is left out of
            the mean; 0 when every sample is empty) or the formula's ``1 - eps / (sum(w p) + eps)`` (``"eps"``).
        reduce_over: ``"batch"``: sums over the whole batch; ``"sample"``: over each sample, then the mean.

    Returns:
        a scalar tensor (differentiable; 0 with zero gradients for an empty target under ``"zero"``).
    """
    _check_shapes(prob, target, weight)
    _check_options(eps, empty)
    if reduce_over not in REDUCTIONS:
        raise InputError(f"reduce_over must be one of {REDUCTIONS}, not {reduce_over!r}")
    w = torch.ones_like(prob) if weight is None else weight
    if reduce_over == "batch":
        truth = (w * target).sum()
        loss = 1.0 - (2.0 * (w * prob * target).sum() + eps) / ((w * prob).sum() + truth + eps)
        return loss if empty == "eps" else torch.where(truth > 0, loss, torch.zeros_like(loss))
    dims = tuple(range(1, prob.ndim))
    truth = (w * target).sum(dims)
    losses = 1.0 - (2.0 * (w * prob * target).sum(dims) + eps) / ((w * prob).sum(dims) + truth + eps)
    if empty == "eps":
        return losses.mean()
    present = truth > 0
    return torch.where(present, losses, torch.zeros_like(losses)).sum() / present.sum().clamp_min(1)


def multiclass_soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0,
                              ignore_index: Optional[int] = None, classes: Optional[Sequence[int]] = None,
                              empty: str = "zero") -> torch.Tensor:
    """``1 -`` the mean soft Dice of ``classes`` on ``softmax(logits)``, sums over the whole batch.

    Args:
        logits: ``(B, C, *spatial)`` scores (softmax over C inside).
        target: ``(B, *spatial)`` integer labels in ``0..C-1`` or ``ignore_index``.
        eps: smoothing of each class's ``(2 sum(p g) + eps) / (sum(p) + sum(g) + eps)``, > 0.
        ignore_index: label of voxels that count for nothing (probability and target both dropped).
        classes: the channels scored (default ``1..C-1``, the foreground).
        empty: ``"zero"``: classes absent from the (non-ignored) target are left out of the mean, and the loss
            is 0 (zero gradients) when none is present; ``"eps"``: every class counts.

    Returns:
        a scalar tensor.
    """
    if logits.ndim < 3 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise InputError(f"logits (B, C, *spatial) and target (B, *spatial) do not fit: {tuple(logits.shape)}, "
                         f"{tuple(target.shape)}")
    _check_options(eps, empty)
    pick = slice(1, None) if classes is None else list(classes)
    probs = torch.softmax(logits, dim=1)[:, pick]
    if ignore_index is not None:
        keep = (target != ignore_index).unsqueeze(1)
        probs = probs * keep
        target = torch.where(keep[:, 0], target, 0)
    onehot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1)[:, pick].to(probs.dtype)
    dims = (0, *range(2, logits.ndim))
    dice = (2 * (probs * onehot).sum(dims) + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)
    if empty == "eps":
        return 1.0 - dice.mean()
    present = onehot.sum(dims) > 0
    if not present.any():
        return logits.sum() * 0.0
    return 1.0 - dice[present].mean()


def generalized_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5,
                          mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Generalized Dice loss of Sudre et al. 2017, per sample, mean over the batch.

    ``1 - (2 sum_l w_l sum_n g_ln p_ln + s) / (sum_l w_l sum_n (g_ln + p_ln) + s)`` with ``w_l = 1 / (sum_n
    g_ln)^2``; a class absent from a sample's target gets the largest weight of the others (as MONAI's
    ``GeneralizedDiceLoss``). One channel: the two classes background ``1 - sigmoid(x)`` and lesion
    ``sigmoid(x)``, ``target`` ``(B, 1, *spatial)`` in 0..1; ``C >= 2`` channels: ``softmax(x)``, ``target``
    ``(B, *spatial)`` integer labels.

    Args:
        logits: ``(B, C, *spatial)``.
        target: see above.
        smooth: ``s``, > 0.
        mask: optional ``(B, 1, *spatial)`` 0/1 weights: voxels at 0 are left out of every sum (a sample left
            out entirely counts 0); all ones gives the unmasked loss.

    Returns:
        a scalar tensor.
    """
    if logits.ndim < 3:
        raise InputError(f"logits must be (B, C, *spatial), got {tuple(logits.shape)}")
    _check_options(smooth)
    if logits.shape[1] == 1:
        _check_shapes(logits, target)
        p, r = torch.sigmoid(logits), target.to(logits.dtype)
        probs, ref = torch.cat([1 - p, p], dim=1), torch.cat([1 - r, r], dim=1)
    else:
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise InputError(f"with {logits.shape[1]} channels the target must be (B, *spatial) labels, got "
                             f"{tuple(target.shape)} for logits {tuple(logits.shape)}")
        probs = torch.softmax(logits, dim=1)
        ref = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).to(logits.dtype)
    if mask is not None:
        if mask.shape != logits.shape[:1] + (1,) + logits.shape[2:]:
            raise InputError(f"mask must be (B, 1, *spatial) for logits {tuple(logits.shape)}, got {tuple(mask.shape)}")
        probs, ref = probs * mask, ref * mask
    dims = tuple(range(2, logits.ndim))
    weight = 1.0 / ref.sum(dims) ** 2
    absent = torch.isinf(weight)
    weight = torch.where(absent, torch.zeros_like(weight), weight)
    weight = weight + absent * weight.max(dim=1, keepdim=True).values
    numerator = 2.0 * (weight * (probs * ref).sum(dims)).sum(1) + smooth
    denominator = (weight * (probs + ref).sum(dims)).sum(1) + smooth
    return (1.0 - numerator / denominator).mean()


def weighted_bce_with_logits(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``logits`` averaged with per-voxel ``weight``: ``sum(w bce) / sum(w)``.

    Not torch's ``binary_cross_entropy_with_logits(weight=w)``, whose mean divides by the number of voxels,
    not by ``sum(w)``. All three tensors have one shape; ``sum(w) == 0`` gives NaN.
    """
    _check_shapes(logits, target, weight)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (weight * bce).sum() / weight.sum()
