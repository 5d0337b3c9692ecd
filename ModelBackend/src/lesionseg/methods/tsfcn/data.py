"""Training and evaluation samples of TS-FCN: one sample per lesion of a dataset in the convention.

A dataset (:class:`lesionseg.data.Dataset`, e.g. ``lesionseg data import lidc-vois``) holds cases with a CT
channel (the channel named ``CT``, else the first) and a label; the label is mapped onto the method's classes
(``--labels``) and split into **lesions** (:func:`lesion_masks`): the 26-connected components of the mapped
label, where components closer than :data:`LESION_GAP_MM` are one lesion. One sample is ``(image, mask)``:
the CT cropped around one lesion (:func:`crop_margin`: wide enough that every jittered box and its liberal
square see the same pixels as on the whole image) and that lesion's ``(K, J, I)`` bool mask on the crop.

Boxes are built from a lesion's mask in continuous voxel coordinates ``(i, j, k)`` and handed to the method
as LPS boxes, exactly as a user's box would be. The evaluation boxes of a case come from a generator seeded
with the seed and the case's name (:func:`case_rng`), one per lesion in lesion order, so every row, model and
training run sees the same boxes.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import zlib
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
from scipy import ndimage

from ...data import Case
from ...data.labels import apply as apply_labels
from ...geometry import IndexBox, index_to_world, world_to_index
from ...image import Image
from ...prompts import Box
from .preprocess import Preprocessing, crop_slices, liberal_box, mask_to_network, to_network

log = logging.getLogger(__name__)

LESION_GAP_MM = 10.0
"""Label components closer than this (voxel centre to voxel centre, mm) are one lesion. Max-vote masks leave
specks beside a nodule: 8 of the 101 LIDC nodule masks have 2-4 26-connected components (1-17-voxel specks up
to 6.4 mm from the nodule); with this gap every LIDC VOI is one lesion, the whole mask, as before."""
EVAL_JITTER = 0.15
"""Scale and shift jitter of the evaluation (and training-validation) boxes, a fraction of the lesion's size."""


class Sample(NamedTuple):
    """One lesion: the CT crop around it, its ``(K, J, I)`` bool mask on the crop, its case and patient."""

    image: Image
    mask: np.ndarray
    case: str
    patient: str


def ct_channel(channel_names: Sequence[str]) -> int:
    """Index of the CT channel among a dataset's channel names: the one named ``CT`` (any case), else the
    first."""
    names = [n.lower() for n in channel_names]
    return names.index("ct") if "ct" in names else 0


def lesion_masks(label: Image, gap_mm: float = LESION_GAP_MM) -> list[np.ndarray]:
    """``(K, J, I)`` bool masks of the lesions of ``label`` (any value > 0 is lesion), in the order of their
    first voxel: 26-connected components, those less than ``gap_mm`` apart joined (a distance transform on the
    label's bounding box, in mm)."""
    fg = np.asarray(label.array) > 0
    if not fg.any():
        return []
    components, count = ndimage.label(fg, np.ones((3, 3, 3), bool))
    if count > 1 and gap_mm > 0:
        pad = np.ceil(gap_mm / np.asarray(label.spacing, float)[::-1]).astype(int)
        nz = np.nonzero(fg)
        lo = np.maximum([int(a.min()) - p for a, p in zip(nz, pad)], 0)
        hi = np.minimum([int(a.max()) + p + 1 for a, p in zip(nz, pad)], fg.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        near = ndimage.distance_transform_edt(~fg[box], sampling=np.asarray(label.spacing, float)[::-1]) < gap_mm / 2
        groups, _ = ndimage.label(near, np.ones((3, 3, 3), bool))
        components = np.zeros(fg.shape, np.int32)
        components[box] = np.where(fg[box], groups, 0)
    values = [v for v in dict.fromkeys(components[fg].tolist())]
    return [components == v for v in values]


def tight(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive voxel bounding box ``(lo, hi)`` of a ``(K, J, I)`` mask, ``(i, j, k)`` order."""
    k, j, i = np.nonzero(mask)
    return np.array([i.min(), j.min(), k.min()]), np.array([i.max(), j.max(), k.max()])


def crop_margin(extent: np.ndarray, jitter: float, min_side: int, factor: float = 2.0) -> np.ndarray:
    """Voxels ``(i, j, k)`` to keep on each side of a lesion of ``extent`` voxels so that a box jittered by
    ``jitter`` (scale and shift) and its liberal square (``factor`` x the box, at least ``min_side``) never
    reach past the crop where they would not reach past the whole image."""
    extent = np.asarray(extent, float)
    side = (1 + jitter) * extent
    shift = jitter * side
    inplane = shift[:2] + np.maximum(factor * side[:2].max() / 2 + 1, min_side / 2) - extent[:2] / 2
    through = shift[2] + side[2] / 2 - extent[2] / 2
    return np.ceil(np.append(inplane, through)).astype(int) + 2


def samples(case: Case, label_map, jitter: float = 0.25, min_side: int = 100) -> list[Sample]:
    """The lesions of one case as :class:`Sample` s (CT crops with :func:`crop_margin` for boxes jittered up
    to ``max(jitter, EVAL_JITTER)``); ``[]`` for a case without lesion."""
    from ...io import read_image

    label = case.read_label()
    mapped = label.with_array(apply_labels(label.array, label_map))
    image = read_image(case.images[ct_channel(case.channel_names)])
    out = []
    for mask in lesion_masks(mapped):
        lo, hi = tight(mask)
        margin = crop_margin(hi - lo + 1, max(jitter, EVAL_JITTER), min_side)
        a, b = np.maximum(lo - margin, 0), np.minimum(hi + margin, image.size_ijk - 1)
        out.append(Sample(image.crop(a, b), mask[a[2]:b[2] + 1, a[1]:b[1] + 1, a[0]:b[0] + 1].copy(),
                          case.name, case.patient))
    return out


def read_samples(cases: Sequence[Case], label_map, jitter: float = 0.25, min_side: int = 100) -> list[Sample]:
    """:func:`samples` of every case, in case order."""
    out = [s for case in cases for s in samples(case, label_map, jitter, min_side)]
    log.info("%d lesions in %d cases", len(out), len(cases))
    return out


def case_rng(seed: int, case: str) -> np.random.Generator:
    """The generator of one case's boxes: seeded with ``seed`` and the case name (independent of order)."""
    return np.random.default_rng([int(seed), zlib.crc32(case.encode("utf-8"))])


def jittered_box(image: Image, mask: np.ndarray, rng: np.random.Generator, scale: float = EVAL_JITTER,
                 shift: float = EVAL_JITTER, axes: int = 3) -> Box:
    """LPS box around the lesion ``mask`` (``(K, J, I)`` on ``image``'s grid), jittered: each side scaled by
    ``U(1-scale, 1+scale)``, the centre moved by ``U(-shift, shift)`` x side, independently per axis (the first
    ``axes`` of i, j, k).

    The unjittered box spans the outer faces of the mask's edge voxels (``lo - 0.5 .. hi + 0.5``), so
    :func:`lesionseg.geometry.box_to_index` of it gives back exactly the mask's bounding voxels.
    """
    lo, hi = tight(mask)
    centre, side = (lo + hi) / 2.0, (hi - lo + 1).astype(float)
    n = np.zeros(3, bool)
    n[:axes] = True
    side = np.where(n, side * rng.uniform(1 - scale, 1 + scale, 3), side)
    centre = np.where(n, centre + rng.uniform(-shift, shift, 3) * side, centre)
    corners = np.array([centre - side / 2.0, centre + side / 2.0])
    world = index_to_world(image, corners)
    return Box(world.min(axis=0), world.max(axis=0))


def case_boxes(image: Image, masks: Sequence[np.ndarray], case: str, seed: int, jitter: float = EVAL_JITTER
               ) -> list[Box]:
    """One :func:`jittered_box` per lesion of one case, from :func:`case_rng` (the evaluation's boxes)."""
    rng = case_rng(seed, case)
    return [jittered_box(image, m, rng, jitter, jitter) for m in masks]


def clip_to_image(image: Image, box: Box) -> Box:
    """``box`` clipped to the image's voxels (index range ``-0.5 .. size - 0.5``), so that it selects the voxels
    :func:`~lesionseg.geometry.box_to_index` would select, without its warning about a box partly outside
    (jittered boxes of lesions near the edge of a small crop often reach past it). Only on grids whose axes
    are the LPS axes, where this is exact; on oblique grids the box is returned as it is."""
    direction = np.asarray(image.direction, float)
    if not np.allclose(np.abs(direction), np.round(np.abs(direction)), atol=1e-9):
        return box
    idx = world_to_index(image, box.corners)
    lo = np.clip(idx.min(axis=0), -0.5 + 1e-3, image.size_ijk - 0.5 - 1e-3)
    hi = np.clip(idx.max(axis=0), -0.5 + 1e-3, image.size_ijk - 0.5 - 1e-3)
    if np.any(idx.max(axis=0) < -0.5) or np.any(idx.min(axis=0) > image.size_ijk - 0.5):
        return box
    world = index_to_world(image, np.array([lo, hi]))
    return Box(world.min(axis=0), world.max(axis=0))


def sample_boxes(items: Sequence[Sample], seed: int, jitter: float = EVAL_JITTER) -> list[Box]:
    """The :func:`case_boxes` of samples (grouped by case, in lesion order): the same boxes as the evaluation
    gives the whole cases."""
    rngs: dict[str, np.random.Generator] = {}
    out = []
    for s in items:
        rng = rngs.setdefault(s.case, case_rng(seed, s.case))
        out.append(jittered_box(s.image, s.mask, rng, jitter, jitter))
    return out


def index_range(image: Image, lo_f: np.ndarray, hi_f: np.ndarray) -> IndexBox:
    """Voxels whose centres lie in the continuous range, clipped to the image (nearest voxel if thin)."""
    lo, hi = np.ceil(lo_f - 1e-6).astype(int), np.floor(hi_f + 1e-6).astype(int)
    centre = np.round((lo_f + hi_f) / 2).astype(int)
    lo, hi = np.where(hi < lo, centre, lo), np.where(hi < lo, centre, hi)
    size = image.size_ijk
    return IndexBox(np.clip(lo, 0, size - 1), np.clip(hi, 0, size - 1))


def jittered_index_box(image: Image, mask: np.ndarray, rng: np.random.Generator, jitter: float) -> IndexBox:
    """The voxel box of a training lesion (``mask`` on ``image``'s grid): its bounding box scaled by
    ``U(1-jitter, 1+jitter)`` and shifted by ``U(-jitter, jitter)`` x side, per axis, clipped to the image."""
    lo, hi = tight(mask)
    centre, side = (lo + hi) / 2.0, (hi - lo + 1).astype(float) * rng.uniform(1 - jitter, 1 + jitter, 3)
    centre = centre + rng.uniform(-jitter, jitter, 3) * side
    return index_range(image, centre - side / 2.0, centre + side / 2.0)


def box_crops(image: Image, mask: np.ndarray, box: IndexBox, prep: Preprocessing, pad_mode: str = "constant"
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(n, side, side)`` HU crops and 0/1 mask crops of the box's slices in its liberal square."""
    lb = liberal_box(box, prep)
    return (crop_slices(image.array, lb, prep.pad_value, pad_mode),
            crop_slices(mask.astype(np.float32), lb, 0.0, pad_mode))


def dihedral(x: np.ndarray, index: int) -> np.ndarray:
    """One of the 8 mirror/rotation variants of the last two axes (``index`` 0 = identity)."""
    out = np.rot90(x, index % 4, axes=(-2, -1))
    return np.flip(out, axis=-1) if index >= 4 else out


def epoch_samples(items: Sequence[Sample], prep: Preprocessing, rng: np.random.Generator, jitter: float = 0.25,
                  augment: bool = True, reflect_probability: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of training slices: ``x`` ``(N, 3, size, size)`` float32 and ``y`` ``(N, size, size)`` int64.

    Per lesion: one jittered box (scale and shift ``± jitter``), every slice of it (including slices past the
    lesion's ends, which teach empty outputs), padding by air or, with ``reflect_probability``, by
    reflection; with ``augment`` each slice gets one random mirror/rotation of the 8 (the paper's 8x).
    """
    xs, ys = [], []
    for image, mask, _, _ in items:
        box = jittered_index_box(image, mask, rng, jitter)
        mode = "reflect" if rng.random() < reflect_probability else "constant"
        crops, masks = box_crops(image, mask, box, prep, mode)
        x, y = to_network(crops, prep).numpy(), mask_to_network(masks, prep.size).numpy()
        if augment:
            for s in range(len(x)):
                t = int(rng.integers(8))
                x[s], y[s] = dihedral(x[s], t), dihedral(y[s], t)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled mini-batches of ``(x, y)`` (the last one may be smaller)."""
    order = rng.permutation(len(x))
    for first in range(0, len(order), batch_size):
        idx = order[first:first + batch_size]
        yield x[idx], y[idx]


def intensity_statistics(items: Sequence[Sample], prep: Preprocessing) -> tuple[float, float, float]:
    """Mean and std of the windowed 0..255 network input over the unjittered training crops, and the
    lesion pixel fraction (for the inverse-frequency class weights)."""
    raw = dataclasses.replace(prep, mean=(0.0,) * 3, std=(1.0,) * 3)
    total = sq = count = tumour = 0.0
    for image, mask, _, _ in items:
        lo, hi = tight(mask)
        crops, masks = box_crops(image, mask, IndexBox(lo, hi), raw)
        x = to_network(crops, raw)[:, 0].double()
        total += float(x.sum())
        sq += float((x * x).sum())
        count += x.numel()
        tumour += float(mask_to_network(masks, prep.size).sum())
    mean = total / count
    return mean, float(math.sqrt(max(sq / count - mean * mean, 1e-12))), tumour / count


def lesion_dice(pred: np.ndarray, masks: Sequence[np.ndarray], spacing: Optional[np.ndarray] = None
                ) -> list[float]:
    """3D Dice of each lesion: the predicted voxels nearer to that lesion than to any other count for it
    (with one lesion: all of them), ``2 |P ∩ G| / (|P| + |G|)`` summed over all its slices before dividing.

    ``pred`` and ``masks`` are ``(K, J, I)`` on one grid; ``spacing`` ``(i, j, k)`` mm for the distances.
    """
    pred = np.asarray(pred) > 0
    if len(masks) == 1:
        owner = np.zeros(pred.shape, np.int32)
    else:
        labels = np.zeros(pred.shape, np.int32)
        for n, m in enumerate(masks):
            labels[m] = n + 1
        sampling = None if spacing is None else np.asarray(spacing, float)[::-1]
        idx = ndimage.distance_transform_edt(labels == 0, sampling=sampling, return_distances=False,
                                             return_indices=True)
        owner = labels[tuple(idx)] - 1
    out = []
    for n, m in enumerate(masks):
        p = pred & (owner == n)
        denominator = int(p.sum()) + int(m.sum())
        out.append(2.0 * int((p & m).sum()) / denominator if denominator else 1.0)
    return out
