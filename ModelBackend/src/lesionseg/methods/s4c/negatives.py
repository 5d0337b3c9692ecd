"""Real CT without pancreas tumours as true negatives of S4C training (issue #18).

Trained on phantoms only, the network called tumour in real CT that showed none. Real CT without pancreas
tumours is plentiful, so ``lesionseg train s4c --negatives DIR`` adds the cases of such datasets (the one dataset
convention, :mod:`lesionseg.data`) as samples whose target is background everywhere: **every channel of every
case** is one :class:`~.data.Volume` on the working grid, made exactly as :func:`.data.load_volumes` makes the
training volumes (:func:`.segmenter.to_working_grid`, :func:`.segmenter.normalise`).

The datasets' own labels mark lesions of other kinds (a lung nodule, a sarcoma, a DeepLesion finding): what
S4C should call them is unknown, so those voxels and a :data:`LESION_MARGIN_MM` margin around them are
:data:`~.data.IGNORE` (left out of the loss) instead of background. The method-independent part (cases,
exclusion, ignore masks, the card's record) is :mod:`lesionseg.data.negatives`. No torch here.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...data import negatives as shared
from ...data.negatives import LESION_MARGIN_MM, lesion_margin, negative_cases
from .data import IGNORE, Volume, phase_names
from .segmenter import S4CPreprocessing, normalise, to_working_grid

__all__ = ["LESION_MARGIN_MM", "describe_negatives", "lesion_margin", "load_negative_volumes", "negative_cases"]
log = logging.getLogger(__name__)


def load_negative_volumes(roots: Sequence[Path], prep: S4CPreprocessing, exclude: Sequence[str] = (),
                          margin_mm: float = LESION_MARGIN_MM, training: Optional[Path] = None) -> list[Volume]:
    """Every channel of every training case of the datasets at ``roots`` (cases whose name or patient is in
    ``exclude`` left out) as a negative sample on the working grid of ``prep``.

    Each volume's ``image`` is the normalised ``(D, H, W)`` float32 input, as :func:`.data.load_volumes` makes
    it; its ``label`` (uint8, same shape) is 0 (background) everywhere except the voxels the dataset labels
    non-zero, dilated by ``margin_mm``, which are :data:`~.data.IGNORE` (:func:`lesionseg.data.negatives.
    iter_negatives`). Volumes smaller than the training patch are kept (:func:`.data.sample_patch` pads them).
    ``volume.case`` is ``"<dataset folder name>/<case>"``. ``training``: the training dataset, refused as a
    negatives folder (its tumours would be called background).

    Raises:
        InputError: see :func:`lesionseg.data.negatives.negative_cases`.
    """
    volumes: list[Volume] = []
    for item in shared.iter_negatives(roots, lambda ct: to_working_grid(ct, prep), exclude, margin_mm,
                                       training):
        label = np.where(item.ignore, IGNORE, 0).astype(np.uint8)
        volumes.append(Volume(item.name, phase_names(item.case)[item.channel],
                              normalise(item.image.array, prep.window), label))
    log.info("s4c: %d negative volumes", len(volumes))
    return volumes


def describe_negatives(roots: Sequence[Path], volumes: Sequence[Volume], exclude: Sequence[str],
                       share: float) -> dict:
    """The card's record of the negatives: folders, dataset names, number of volumes, excluded names, share."""
    return shared.describe_negatives(roots, [v.case for v in volumes], exclude, share)
