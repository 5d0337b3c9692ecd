"""The registered ``recist-3d`` method: one RECIST measurement -> the lesion's 3D mask, with ``box-unet``'s model.

A RECIST measurement is a box prompt in disguise: the end points of the long and short axes lie on the
lesion's border on its slice of largest extent. ``recist-3d`` segments that slice from the axes' bounding box
(enlarged on each side by the model card's ``recist_key_margin``, at least one pixel: the end points span the
lesion only along the two axes), keeps
the component that touches the long axis, then **propagates** slice by slice away from it in both directions:
each next slice is segmented from the bounding box of the lesion just found on its neighbour (enlarged by
:data:`STEP_MARGIN`, never larger than the key slice's box), keeping the components that overlap that
neighbour's lesion (dilated by one pixel), until the lesion vanishes, covers fewer than :data:`MIN_PIXELS`
pixels or lies more than the model card's ``recist_reach`` long axes away (chosen in training on the training
lesions with the key margin, :func:`lesionseg.methods.boxunet.train.choose_geometry`). ``box-unet`` learnt this
step: a share of its training slices come with the lesion's box from the neighbour slice, and a share lie past
the lesion's ends (:mod:`lesionseg.methods.boxunet.train`).

**Known limit (measured, docs/box-unet.md):** the network does not reliably see where a soft-tissue lesion ends
(a sarcoma in muscle) and keeps filling its box past the ends; the learnt depth cap (0.5 long axes per side in the
shipped card) is what stops it there (CV 3D Dice: soft tissue 0.71, 0.59 without the cap; lung 0.82), so a lesion
much deeper than it is wide is cut short: a box over its slices (``box-unet``) is the prompt for that. One network
pass per slice (eight on the key slice); the benchmark's lesion takes 0.3 s on two CPU threads
(``benchmarks/bench_interactive.py``).

It runs on ``box-unet``'s model folder (``weights_of``); ``lesionseg train box-unet`` and ``lesionseg train
recist-3d`` are the same training and write a ``box-unet`` model folder that both methods use.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...geometry import IndexBox, recist_to_index
from ...image import Image
from ...prompts import Prompt, RecistLine
from ...registry import register
from .segmenter import BoxUNet

STEP_MARGIN = 0.15
"""Share of the neighbour lesion's extent (at least one pixel) added on each side of the next slice's box."""
MIN_PIXELS = 3
"""Propagation stops at a slice whose lesion covers fewer pixels than this."""


KEY_TTA = True
"""The key slice's probability is the mean over the 8 mirror/rotations of its input (7 more passes of one
slice, about 0.07 s). On the 5-fold CV of docs/box-unet.md it raised the 2D Dice on the RECIST slice from 0.797 to
0.809 on soft tissue and from 0.876 to 0.879 on lung (chosen after seeing those numbers: mildly optimistic)."""


def reach_slices(image: Image, prompt: RecistLine, reach: float) -> int:
    """How many slices on each side of the RECIST slice ``reach`` long axes (in mm) span on ``image``."""
    return int(np.ceil(reach * prompt.long_length_mm / float(image.spacing[2])))


def _box(image: Image, lo: np.ndarray, hi: np.ndarray, margin: float, k: int) -> IndexBox:
    """The voxel box of continuous in-plane range ``lo..hi`` ``(i, j)`` enlarged by ``margin`` x its size (at
    least one pixel) on each side, on slice ``k``, clipped to the image."""
    pad = np.maximum((hi - lo + 1) * margin, 1.0)
    size = image.size_ijk
    a = np.clip(np.floor(lo - pad), 0, size[:2] - 1).astype(int)
    b = np.clip(np.ceil(hi + pad), 0, size[:2] - 1).astype(int)
    return IndexBox(np.array([a[0], a[1], k]), np.array([b[0], b[1], k]))


def _touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The 8-connected components of 2D ``mask`` that overlap ``seed``."""
    labels, count = ndimage.label(mask, np.ones((3, 3), bool))
    if count == 0:
        return mask
    keep = np.unique(labels[seed & (labels > 0)])
    return np.isin(labels, keep[keep > 0])


def _line_pixels(ends: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(J, I)`` bool: the pixels the segment between two ``(i, j)`` end points passes through."""
    out = np.zeros(shape, bool)
    n = int(np.ceil(np.abs(ends[1] - ends[0]).max() * 2)) + 2
    pts = np.round(ends[0] + np.linspace(0, 1, n)[:, None] * (ends[1] - ends[0])).astype(int)
    pts[:, 0] = np.clip(pts[:, 0], 0, shape[1] - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, shape[0] - 1)
    out[pts[:, 1], pts[:, 0]] = True
    return out


@register("recist-3d", prompt="recist", inputs=("CT",), classes=("background", "lesion"),
          summary="RECIST -> 3D: the lesion's 3D mask from one RECIST measurement (box-unet propagated slice by "
                  "slice; CT, any lesion kind)",
          training="lesionseg.methods.boxunet.train:TRAINING",
          evaluation="lesionseg.methods.boxunet.evaluate:Recist3DEvaluation", weights_of="box-unet")
class Recist3D(BoxUNet):
    """RECIST -> 3D segmenter (module docstring); the model folder is ``box-unet``'s."""

    @staticmethod
    def _step_box(image: Image, lo: np.ndarray, hi: np.ndarray, margin: float, previous: np.ndarray, k: int
                  ) -> IndexBox:
        """Slice ``k``'s box: the neighbour lesion's box + :data:`STEP_MARGIN`, never larger than the key box (the
        key box on every slice was measured too and did worse: docs/box-unet.md)."""
        key = _box(image, lo, hi, margin, k)
        j, i = np.nonzero(previous)
        near = _box(image, np.array([i.min(), j.min()], float), np.array([i.max(), j.max()], float), STEP_MARGIN, k)
        return IndexBox(np.maximum(near.lo, key.lo), np.minimum(near.hi, key.hi))

    def slice_mask(self, box: IndexBox, tta: bool = False) -> np.ndarray:
        """``(J, I)`` bool lesion mask of slice ``box.lo[2]`` from the network, for the in-plane ``box``
        (``tta``: the mean probability over the 8 mirror/rotations of the input, the training augmentation)."""
        values, region = self.region_probability(box, tta)
        out = np.zeros(self.image.shape[1:], bool)
        out[region[1:]] = values[0] >= self.prep.threshold
        return out

    def predict(self, prompt: Prompt = None) -> Image:
        """uint8 0/1 3D label of the lesion the RECIST axes measure (module docstring)."""
        mask = self.propagate(prompt, self.prep.recist_reach, self.prep.recist_key_margin)  # the prompt checked first
        return self.image.with_array(mask)

    def propagate(self, prompt: Prompt, reach: float, key_margin: float) -> np.ndarray:
        """``(K, J, I)`` uint8 mask of the lesion the RECIST axes measure, propagated at most ``reach`` long
        axes (in mm) away from the RECIST slice on each side, the key box enlarged by ``key_margin`` (module
        docstring)."""
        if not isinstance(prompt, RecistLine):
            kind = "no prompt" if prompt is None else f"a {type(prompt).__name__} prompt"
            raise InputError(f"recist-3d needs a RecistLine prompt (long axis, optional short axis), got {kind}")
        image = self.image
        recist = recist_to_index(image, prompt)
        ends = np.asarray(recist.long, float)
        points = ends if recist.short is None else np.vstack([ends, np.asarray(recist.short, float)])
        lo, hi = points.min(axis=0), points.max(axis=0)
        if recist.short is None:  # a long axis alone: assume a round lesion around it
            half = (hi - lo).max() / 2.0
            centre = (lo + hi) / 2.0
            lo, hi = centre - half, centre + half
        out = np.zeros(image.shape, np.uint8)
        key = self.slice_mask(_box(image, lo, hi, key_margin, recist.k), KEY_TTA)
        key = _touching(key, ndimage.binary_dilation(_line_pixels(ends, key.shape), iterations=1))
        if key.sum() < MIN_PIXELS:
            return out
        out[recist.k] = key
        slices = reach_slices(image, prompt, reach)
        for step in (-1, 1):
            previous, k = key, recist.k + step
            while 0 <= k < image.shape[0] and abs(k - recist.k) <= slices and previous.sum() >= MIN_PIXELS:
                found = self.slice_mask(self._step_box(image, lo, hi, key_margin, previous, k))
                found = _touching(found, ndimage.binary_dilation(previous, iterations=1))
                if not found.any():
                    break
                out[k] = found
                previous, k = found, k + step
        return out

    def predict_probability(self, prompt: Prompt = None) -> Optional[Image]:
        """Not offered: the propagation decides slice by slice on thresholded masks."""
        raise InputError("recist-3d gives a label, not a probability map")

