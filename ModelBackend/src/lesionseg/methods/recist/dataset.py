"""Training samples of ``recist-coseg``, read from a dataset in the one convention (:mod:`lesionseg.data`).

A *sample* is one axial slice of one lesion: its RECIST axes, their crop frame, the ``(2, S, S)`` network input
of the crop (:func:`.initial_mask.network_input`) and the GrabCut mask made from the axes
(:func:`.initial_mask.grabcut_from_recist`), the only training target (weak supervision). Two kinds of case
give samples:

- a **labelled case** (``labelsTr``): its label mapped onto the method's ``lesion`` class (``--labels``) and
  split into 18-connected lesions; for each lesion, every slice whose area is at least
  :data:`MIN_AREA_FRACTION` of its largest slice's and whose long axis is at least :data:`MIN_LONG_MM`, with
  the RECIST axes measured on that slice (:func:`.initial_mask.slice_axes`: longest diameter, longest
  perpendicular chord). The mask itself is never a target.
- an **unlabelled case with RECIST prompts** (``prompts.json``; ``lesionseg data import deeplesion`` writes
  DeepLesion's own RECIST marks so): one sample per prompt, on its slice, from the axes as given (the
  paper's setting). Which of these cases train is :func:`prompt_cases`'s rule.

The *key* slice of a lesion is its slice of largest area, where RECIST would be measured;
:func:`lesion_prompts` gives its axes (the evaluation's prompts). No torch here.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

from ...data import Case, Dataset
from ...data.labels import apply as apply_labels
from ...errors import InputError
from ...geometry import RecistIndex, index_to_world, recist_to_index
from ...image import Image
from ...prompts import RecistLine
from .initial_mask import crop_frame, grabcut_from_recist, network_input, slice_axes

log = logging.getLogger(__name__)

MIN_AREA_FRACTION = 0.4
MIN_LONG_MM = 3.0
CONNECTIVITY = ndimage.generate_binary_structure(3, 2)
"""Lesions are the 18-connected components of a label."""


@dataclass
class Sample:
    """One lesion slice. ``lesion``: ``<case>`` or ``<case>#<n>`` when the case holds several lesions;
    ``k``: the slice; ``key``: it is the lesion's key slice (always for a prompt); ``recist``: the axes in slice
    pixels; ``input``: ``(2, S, S)`` float32 network input; ``grabcut``: ``(S, S)`` bool GrabCut mask (the
    target); ``prompted``: the axes were given (``prompts.json``), not measured on a mask."""

    lesion: str
    case: str
    patient: str
    k: int
    key: bool
    recist: RecistIndex
    input: np.ndarray
    grabcut: np.ndarray
    prompted: bool = False


def _sample(lesion: str, case: Case, image: Image, recist: RecistIndex, key: bool, prompted: bool) -> Sample:
    """The sample of ``recist`` on ``image`` (HU, float32)."""
    k, last = recist.k, image.shape[0] - 1
    frame = crop_frame(recist, image.spacing, image.shape[1:])
    crop = frame.sample(image.array[[max(k - 1, 0), k, min(k + 1, last)]])
    long_uv = frame.to_crop(recist.long)
    short_uv = frame.to_crop(recist.short) if recist.short is not None else None
    return Sample(lesion, case.name, case.patient, k, key, recist, network_input(crop),
                  grabcut_from_recist(crop, long_uv, short_uv), prompted)


def lesions(mask: np.ndarray) -> list[np.ndarray]:
    """The 18-connected lesions of a ``(K, J, I)`` bool mask, each a bool mask, in label order."""
    labels, n = ndimage.label(mask, CONNECTIVITY)
    return [labels == i for i in range(1, n + 1)]


def lesion_samples(lesion: str, case: Case, image: Image, mask: np.ndarray, all_slices: bool = True
                   ) -> Iterator[Sample]:
    """Samples of one lesion (``(K, J, I)`` bool ``mask`` on ``image``'s grid): its key slice and
    (``all_slices``) every slice with at least :data:`MIN_AREA_FRACTION` of the key slice's area; slices whose
    long axis is shorter than :data:`MIN_LONG_MM` are left out."""
    areas = mask.reshape(len(mask), -1).sum(axis=1)
    if areas.max() == 0:
        return
    key = int(np.argmax(areas))
    mask_image = image.with_array(mask.astype(np.uint8))
    slices = [k for k in range(len(mask)) if areas[k] >= MIN_AREA_FRACTION * areas[key]] if all_slices else [key]
    for k in slices:
        axes = slice_axes(mask_image, k)
        if axes is None or np.linalg.norm((axes[0][1] - axes[0][0]) * image.spacing[:2]) < MIN_LONG_MM:
            continue
        yield _sample(lesion, case, image, RecistIndex(k, axes[0], axes[1]), k == key, False)


def lesion_prompts(truth: Image) -> list[RecistLine]:
    """The RECIST axes (LPS mm) of each 18-connected lesion of ``truth`` (any foreground), on its key slice,
    as a reader would draw them; lesions whose long axis is shorter than :data:`MIN_LONG_MM` get none."""
    out = []
    for mask in lesions(np.asarray(truth.array) > 0):
        areas = mask.reshape(len(mask), -1).sum(axis=1)
        k = int(np.argmax(areas))
        axes = slice_axes(truth.with_array(mask.astype(np.uint8)), k)
        if axes is None or np.linalg.norm((axes[0][1] - axes[0][0]) * truth.spacing[:2]) < MIN_LONG_MM:
            continue
        ends = [np.c_[axis, np.full(2, k)] for axis in axes if axis is not None]
        out.append(RecistLine(*index_to_world(truth, np.concatenate(ends))))
    return out


def read_ct(case: Case) -> Image:
    """The case's first channel (CT in HU) as float32."""
    image = case.read_images()[0]
    return image.with_array(np.asarray(image.array, np.float32))


def labelled_samples(case: Case, label_map, all_slices: bool = True) -> list[Sample]:
    """Samples of every lesion of a labelled case (label mapped by ``label_map``; see the module docstring)."""
    image = read_ct(case)
    label = case.read_label()
    if label.shape != image.shape:
        raise InputError(f"case {case.name}: the label ({label.shape}) and the CT ({image.shape}) differ in shape")
    found = lesions(apply_labels(label.array, label_map) > 0)
    out: list[Sample] = []
    for n, mask in enumerate(found, start=1):
        out.extend(lesion_samples(case.name + (f"#{n}" if len(found) > 1 else ""), case, image, mask, all_slices))
    return out


def prompted_samples(case: Case, prompts: Sequence[RecistLine]) -> list[Sample]:
    """One sample per RECIST prompt of an unlabelled case, from the axes as given; a prompt that does not fit
    the image (an end point outside it, axes on two slices) is left out with a warning."""
    image = read_ct(case)
    out = []
    for n, prompt in enumerate(prompts, start=1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an oblique line is projected, as predict() does
                recist = recist_to_index(image, prompt)
        except InputError as exc:
            log.warning("case %s: RECIST prompt %d left out (%s)", case.name, n, exc)
            continue
        out.append(_sample(case.name + (f"#{n}" if len(prompts) > 1 else ""), case, image, recist, True, True))
    return out


def prompt_cases(dataset: Dataset, held_out_patients: set[str]) -> tuple[list[Case], list[Case]]:
    """``(train, held_out)``: the unlabelled cases with RECIST prompts of ``dataset``.

    Held out: cases of ``held_out_patients`` (the patients of the labelled cases held out) and cases that
    ``dataset.json``'s ``official_split`` marks ``test`` (DeepLesion's official test split, kept for testing as
    in the paper). Every other one trains. Labelled test cases (``imagesTs`` + ``labelsTs``) never train.
    """
    official = dataset.meta.get("official_split") or {}
    train, held = [], []
    for case in dataset.cases("all"):
        if case.label is not None or not recist_prompts(dataset, case.name):
            continue
        out = case.patient in held_out_patients or official.get(case.name) == "test"
        (held if out else train).append(case)
    return train, held


def recist_prompts(dataset: Dataset, case: str) -> list[RecistLine]:
    """The RECIST prompts ``prompts.json`` gives for ``case`` (other prompt kinds are ignored)."""
    return [p for p in dataset.prompts(case) if isinstance(p, RecistLine)]


def training_samples(dataset: Dataset, train: Sequence[Case], held_out: Sequence[Case], label_map,
                     use_prompts: bool = True, progress=None) -> tuple[list[Sample], dict]:
    """The samples of the labelled training cases ``train`` and (``use_prompts``) of the prompt cases that
    :func:`prompt_cases` lets train, and a record for the model card: ``held_out_patients`` (patients no
    sample came from: those of ``held_out`` and of the prompt cases held out), the counts of samples, lesions,
    patients and cases of each kind. ``progress(done, total)`` is called after each case."""
    held_patients = {c.patient for c in held_out}
    weak, weak_held = prompt_cases(dataset, held_patients) if use_prompts else ([], [])
    samples: list[Sample] = []
    total = len(train) + len(weak)
    for done, case in enumerate([*train, *weak], start=1):
        if case.label is not None:
            samples.extend(labelled_samples(case, label_map))
        else:
            samples.extend(prompted_samples(case, recist_prompts(dataset, case.name)))
        if progress is not None:
            progress(done, total)
    trained = {s.patient for s in samples}
    held_patients |= {c.patient for c in weak_held}
    record = {"held_out_patients": sorted(held_patients - trained),
              "train_slices": len(samples), "train_lesions": len({s.lesion for s in samples}),
              "train_patients": len(trained), "labelled_cases": len(train), "prompt_cases": len(weak),
              "prompt_cases_held_out": len(weak_held), "prompt_samples": sum(s.prompted for s in samples)}
    log.info("recist-coseg: %d samples (%d from RECIST prompts) of %d lesions, %d patients", len(samples),
             record["prompt_samples"], record["train_lesions"], len(trained))
    return samples, record


def stack(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2, S, S)`` float32 network inputs and ``(N, S, S)`` uint8 GrabCut targets."""
    return np.stack([s.input for s in samples]), np.stack([s.grabcut for s in samples]).astype(np.uint8)
