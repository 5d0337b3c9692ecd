"""Sliding-window inference decided by majority vote, as S4C does (Zhu et al.).

Every window is labelled on its own (arg-max of its logits) and each voxel takes the class that most windows
covering it voted for. Only a ``(classes, D, H, W)`` vote counter is kept -- never the windows themselves --
so memory is ``classes x volume`` counters whatever the stride. Ties go to the lower class index
(background first), the conservative choice for screening.

Windows whose input holds no body voxel (everything below ``skip_below``) are counted as background votes
without running the network: outside the body there is nothing to segment, and on a whole abdominal CT this
skips about a third of the windows. ``skip_below=None`` runs every window.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Optional, Sequence

import numpy as np

from ... import progress
from ...errors import InputError

LabelPredictor = Callable[[np.ndarray], np.ndarray]
"""``(B, C, *patch)`` float32 windows -> ``(B, *patch)`` integer labels."""


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis: ``0, stride, 2*stride, ...`` and a last window flush with the end."""
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def count_windows(shape: Sequence[int], patch: int, stride: int) -> int:
    """Number of windows :func:`majority_vote` visits on a ``(D, H, W)`` volume."""
    return math.prod(len(window_starts(max(s, patch), patch, stride)) for s in shape)


def majority_vote(predict: LabelPredictor, volume: np.ndarray, n_classes: int, patch: int = 64, stride: int = 20,
                  batch_size: int = 4, pad_value: float = 0.0, skip_below: Optional[float] = None,
                  label: str = "sliding window") -> np.ndarray:
    """Label ``volume`` by majority vote over overlapping cubic windows.

    Args:
        predict: labels a batch of windows (see :data:`LabelPredictor`).
        volume: ``(C, D, H, W)`` float32 network input (already normalised).
        n_classes: number of classes the predictor returns (votes outside ``0..n_classes-1`` are an error).
        patch: window edge in voxels (the paper: 64).
        stride: step between windows in voxels (the paper: 20); must be 1..patch.
        batch_size: windows per ``predict`` call.
        pad_value: input value used to pad a volume smaller than ``patch`` (the result is cropped back).
        skip_below: windows whose every input value is below this vote background without ``predict``.
        label: progress message.

    Returns:
        ``(D, H, W)`` uint8 labels.
    """
    if volume.ndim != 4:
        raise InputError(f"majority_vote expects a (C, D, H, W) volume, got shape {volume.shape}")
    if not 1 <= stride <= patch:
        raise InputError(f"stride must be between 1 and the patch size {patch}, got {stride}")
    size = volume.shape[1:]
    pad = [max(patch - s, 0) for s in size]
    if any(pad):
        volume = np.pad(volume, [(0, 0)] + [(0, p) for p in pad], constant_values=pad_value)
    full = volume.shape[1:]
    starts = [window_starts(s, patch, stride) for s in full]
    most = math.prod(math.ceil(patch / stride) + 1 for _ in full)
    votes = np.zeros((n_classes, *full), np.uint8 if most < 255 else np.uint16)
    corners = list(itertools.product(*starts))
    with progress.task(label, total=len(corners)) as tick:
        for first in range(0, len(corners), batch_size):
            chunk = corners[first:first + batch_size]
            windows = [volume[(slice(None), *(slice(c, c + patch) for c in corner))] for corner in chunk]
            run = [i for i, w in enumerate(windows) if skip_below is None or w.max() >= skip_below]
            labels = np.zeros((len(chunk), patch, patch, patch), np.int64)
            if run:
                labels[run] = predict(np.stack([windows[i] for i in run]).astype(np.float32))
            if labels.min() < 0 or labels.max() >= n_classes:
                raise InputError(f"the predictor returned labels outside 0..{n_classes - 1}")
            for corner, lab in zip(chunk, labels):
                region = tuple(slice(c, c + patch) for c in corner)
                for cls in range(n_classes):
                    votes[(cls, *region)] += lab == cls
            tick(first + len(chunk), len(corners))
    result = np.argmax(votes, axis=0).astype(np.uint8)
    return result[tuple(slice(0, s) for s in size)]
