"""S4C training data: the synthetic dual-phase dataset, per-phase training volumes and patch sampling.

Datasets are in the one convention (:mod:`lesionseg.data`). S4C segments one CT phase at a time, so **every
channel of a case is a phase and one training sample** (one network segments every phase): the synthetic
dataset has the channels ``("venous", "arterial")`` on one grid, MSD Task07 Pancreas (``lesionseg data import
msd``) the one channel ``CT``. Labels are mapped onto the classes background, pancreas, tumour, duct with the
job's label map (``--labels``; by name by default, where MSD's ``cancer`` is a tumour).

``lesionseg data synthetic s4c -o DIR --cases 40 --seed 0`` writes the seeded phantoms of
:mod:`lesionseg.phantoms.pancreas` (:data:`SYNTHETIC`): cases ``s4c_000``, ... with both phases of one
anatomy on one grid (the phantom renders both phases on the grid of its label) and the label (0 background,
1 pancreas, 2 tumour, 3 dilated duct); ``dataset.json`` says ``"synthetic": true`` and keeps each phantom's
seed, kind and description under ``"phantoms"``. With ``--randomise`` (issue #18) each case is rendered in the
phantom's ``"randomised"`` style (SynthSeg-style contrast, texture, bias, blur, slice thickness, noise and
tumour contrast: :mod:`lesionseg.phantoms.randomise`) on its own grid (:meth:`SyntheticSettings.random_grid`);
without it the arrays are those written before #18. ``--labelmap FILE [--labelmap-names CSV]`` (implies
``--randomise``) synthesises the cases from a real multi-class label map instead
(:func:`lesionseg.phantoms.labelmap.labelmap_ct`: the same case seeds and kinds, in-plane and slice spacing from
``--spacing-mm`` / ``--z-spacing-mm``); ``dataset.json`` then records the label map and its names file and says
that the anatomy is a real label map's.
"""
from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from ... import progress
from ...data import Case, DatasetWriter
from ...data.labels import apply as apply_labels
from ...data.negatives import IGNORE as NEGATIVES_IGNORE
from ...data.synthetic import Generator
from ...errors import InputError
from ...image import Image
from ...io import read_image
from ...options import Settings, option
from ...resample import resample_to_grid
from .segmenter import CLASSES, S4CPreprocessing, normalise, to_working_grid

log = logging.getLogger(__name__)
SYNTHETIC_CHANNELS = ("venous", "arterial")
"""Channel order of the synthetic dataset (the label is drawn on the venous grid, which both phases share)."""
TUMOUR, DUCT = CLASSES.index("tumour"), CLASSES.index("duct")


@dataclass(frozen=True)
class SyntheticSettings(Settings):
    """Flags of ``lesionseg data synthetic s4c``."""

    cases: int = option(40, "number of phantom cases (half of them normal; 3 in 10 with a tumour, 1 in 10 with a "
                            "dilated duct, 1 in 10 with both)")
    seed: int = option(0, "cohort seed (each case's seed is derived from it and the case index)")
    randomise: bool = option(False, "domain-randomised phantoms (#18): per-case contrast, texture, bias, blur, "
                                    "slice thickness, noise, tumour contrast and 5-40 mm tumours on a random grid")
    spacing_mm: tuple[float, float] = option((0.65, 1.0), "with --randomise: range of the in-plane spacing",
                                             unit="mm", metavar=("MIN", "MAX"), advanced=True)
    z_spacing_mm: tuple[float, float] = option((1.0, 5.0), "with --randomise: range of the slice spacing",
                                               unit="mm", metavar=("MIN", "MAX"), advanced=True)
    fov_mm: tuple[float, float] = option((190.0, 250.0), "with --randomise: range of the left-right field of "
                                         "view (front-back: 0.83 of it)", unit="mm", metavar=("MIN", "MAX"),
                                         advanced=True)
    z_fov_mm: float = option(120.0, "with --randomise: extent along z (at least 16 slices)", unit="mm",
                             advanced=True)
    labelmap: Optional[Path] = option(None, "synthesise the cases from this real multi-class label map (#18; "
                                            "implies --randomise; lesionseg.phantoms.labelmap)", metavar="FILE",
                                      slicer=False)
    labelmap_names: Optional[Path] = option(None, "with --labelmap: CSV label,name of its classes (default: "
                                                  "example_seg_labels.csv next to it)", metavar="CSV", slicer=False)

    @property
    def randomised(self) -> bool:
        """True for randomised cases: ``--randomise`` or ``--labelmap`` (which implies it)."""
        return bool(self.randomise) or self.labelmap is not None

    def __post_init__(self) -> None:
        if isinstance(self.cases, bool) or int(self.cases) < 1:
            raise InputError(f"{self.flag('cases')} must be >= 1, got {self.cases!r}")
        if isinstance(self.seed, bool) or int(self.seed) < 0:
            raise InputError(f"{self.flag('seed')} must be >= 0, got {self.seed!r}")
        grid = ("spacing_mm", "z_spacing_mm", "fov_mm", "z_fov_mm")
        for name in grid:
            value = np.asarray(getattr(self, name), float)
            if not np.all(np.isfinite(value)) or np.any(value <= 0) or (value.ndim and value[0] > value[-1]):
                raise InputError(f"{self.flag(name)} must be positive (MIN <= MAX), got {getattr(self, name)!r}")
            changed = getattr(self, name) != type(self).__dataclass_fields__[name].default
            if not self.randomised and changed:
                raise InputError(f"{self.flag(name)} needs {self.flag('randomise')}")
            if self.labelmap is not None and changed and name in ("fov_mm", "z_fov_mm"):
                raise InputError(f"{self.flag(name)} does not apply to {self.flag('labelmap')} (the grid covers "
                                 "the warped label map)")
        if self.labelmap_names is not None and self.labelmap is None:
            raise InputError(f"{self.flag('labelmap_names')} needs {self.flag('labelmap')}")

    def random_spacing(self, rng: np.random.Generator) -> tuple[float, float]:
        """``(in-plane, slice)`` spacing (mm, unrounded) drawn uniformly from the ranges."""
        return float(rng.uniform(*self.spacing_mm)), float(rng.uniform(*self.z_spacing_mm))

    def random_grid(self, rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
        """A randomised case grid: ``(shape (K, J, I), spacing (i, j, k) mm)`` with in-plane spacing, slice
        spacing and left-right field of view drawn uniformly from the ranges, ``J = round(0.83 I)`` (the default
        216 x 180 mm aspect) and ``K = max(16, round(z_fov_mm / slice spacing))``."""
        xy, z = self.random_spacing(rng)
        width = max(32, int(round(float(rng.uniform(*self.fov_mm)) / xy)))
        shape = (max(16, int(round(float(self.z_fov_mm) / z))), max(32, int(round(0.83 * width))), width)
        return shape, (round(xy, 4), round(xy, 4), round(z, 4))

def write_synthetic(output: Path, settings: SyntheticSettings, overwrite: bool = False) -> Path:
    """Write the seeded synthetic dataset (see the module docstring) into ``output``; returns it.

    The same phantoms, seeds and case names as the cohort folder written before the one dataset convention
    (``lesionseg.phantoms.pancreas.cohort`` and ``pancreas_ct``), so a cohort written before and after holds the
    same arrays. Assembled in a temporary sibling folder and renamed at the end (:class:`DatasetWriter`).
    """
    from ...phantoms.labelmap import labelmap_ct
    from ...phantoms.pancreas import LABELS, cohort, pancreas_ct

    specs = cohort(int(settings.cases), int(settings.seed))
    records: list[dict] = []
    command = f"lesionseg data synthetic s4c --cases {settings.cases} --seed {settings.seed}"
    if settings.randomise:
        command += " --randomise"
    if settings.randomised:
        command += "".join(
            f" {settings.flag(name)} {' '.join(str(v) for v in np.atleast_1d(getattr(settings, name)))}"
            for name in ("spacing_mm", "z_spacing_mm") + (("fov_mm", "z_fov_mm") if settings.labelmap is None else ()))
    meta = {"name": "S4C synthetic dual-phase pancreas phantoms", "synthetic": True,
            "description": "seeded dual-phase (venous, arterial) CT phantoms of the upper abdomen with a pancreas, "
                           "hypervascular tumours and dilated ducts (lesionseg.phantoms.pancreas)",
            "generator": "lesionseg.phantoms.pancreas.pancreas_ct", "seed": int(settings.seed),
            "randomise": bool(settings.randomised)}
    source = _labelmap_source(settings) if settings.labelmap is not None else None
    if source is not None:
        command += (f" --labelmap {shlex.quote(source[2]['labelmap'])}"
                    f" --labelmap-names {shlex.quote(source[2]['labelmap_names'])}")
        meta.update(source[2])
    with DatasetWriter(output, SYNTHETIC_CHANNELS, LABELS, meta=meta, overwrite=overwrite, command=command) as ds, \
            progress.task("synthetic cohort", total=len(specs)) as tick:
        for n, spec in enumerate(specs):
            if source is not None:
                xy, z = settings.random_spacing(np.random.default_rng([spec["seed"], 4]))
                arterial, venous, label, info = labelmap_ct(source[0], source[1], spec["seed"], spec["kind"],
                                                            (round(xy, 4), round(xy, 4), round(z, 4)))
            elif settings.randomise:
                shape, spacing = settings.random_grid(np.random.default_rng([spec["seed"], 4]))
                arterial, venous, label, info = pancreas_ct(seed=spec["seed"], kind=spec["kind"], shape=shape,
                                                            spacing=spacing, style="randomised")
            else:
                arterial, venous, label, info = pancreas_ct(seed=spec["seed"], kind=spec["kind"])
            ds.add(spec["case"], [venous, arterial], label)
            records.append({**spec, "info": info})
            tick(n + 1, len(specs))
        ds.meta["phantoms"] = records
    log.info("wrote %d synthetic s4c cases to %s", len(specs), output)
    return Path(output)


def _labelmap_source(settings: SyntheticSettings) -> tuple[Image, dict[int, str], dict]:
    """The ``--labelmap`` image (``meta["source"]``: its file name), its class names and the dataset.json entries
    that record them; checks that it has a pancreas before anything is written (InputError otherwise)."""
    from ...phantoms.labelmap_tissues import find_pancreas, names_beside, read_names

    path = Path(settings.labelmap)
    names_path = names_beside(path, settings.labelmap_names)
    names = read_names(names_path)
    image = read_image(path)
    image = image.with_array(image.array, source=path.name)
    find_pancreas(image, names)
    entries = {"name": "S4C synthetic dual-phase CT from a real label map",
               "description": "seeded dual-phase (venous, arterial) CT synthesised from one real label map: random "
                              "affine and elastic warps, body layers, gut contents, tumours and ducts in its pancreas, "
                              "domain-randomised intensities (lesionseg.phantoms.labelmap); the anatomy comes from a "
                              "real label map, the intensities are synthetic",
               "generator": "lesionseg.phantoms.labelmap.labelmap_ct", "anatomy": "real label map",
               "labelmap": str(path.resolve()), "labelmap_names": str(names_path.resolve())}
    return image, names, entries


SYNTHETIC = Generator(SyntheticSettings, write_synthetic,
                      "S4C's seeded dual-phase pancreas CT phantoms (channels venous, arterial; labels pancreas, "
                      "tumour, duct)")


def phase_names(case: Case) -> list[str]:
    """The phase name of each channel of ``case``: its channel name in lower case (``venous``, ``ct``)."""
    return [name.lower() for name in case.channel_names] or [f"channel{i}" for i in range(len(case.images))]


def positive(case: Case, label_map: Mapping[int, Sequence[int]]) -> bool:
    """Truth verdict of a case: its label, mapped onto the classes, holds tumour or duct (the split's strata)."""
    return bool(np.isin(apply_labels(case.read_label().array, label_map), (TUMOUR, DUCT)).any())


@dataclass
class Volume:
    """One phase on the working grid: normalised input ``(D, H, W)`` float32 and labels uint8."""

    case: str
    phase: str
    image: np.ndarray
    label: np.ndarray


IGNORE = NEGATIVES_IGNORE
"""Label value the training loss ignores (a tumour that its phase does not show; the lesions of real negatives,
:mod:`lesionseg.data.negatives`, whose value this is)."""
MIN_CONTRAST_HU = 25.0
"""A tumour counts as visible in a phase when its mean HU differs from the pancreas around it by this much."""


def hide_invisible_tumours(hu: np.ndarray, label: np.ndarray, spacing_mm: float,
                           min_contrast: float = MIN_CONTRAST_HU, shell_mm: float = 6.0) -> tuple[np.ndarray, int]:
    """Set to :data:`IGNORE` every tumour component whose mean HU differs from the pancreas voxels within
    ``shell_mm`` of it by less than ``min_contrast`` in this phase.

    The cases carry one label for both phases (they are registered), but a hypervascular tumour is often
    nearly iso-dense in one phase; asking the network to label what that phase does not show teaches it to
    label no tumour at all (measured: tumour probability 0.01-0.04 inside tumours after 11 minutes). The
    loss ignores such voxels instead. Works from the image, so it applies to real data as well.

    Args:
        hu: ``(D, H, W)`` HU on the working grid; label: uint8 labels on it; spacing_mm: its voxel size.
    Returns:
        the new label array and the number of tumours hidden.
    """
    from scipy import ndimage

    out = label.copy()
    comps, n = ndimage.label(label == 2, ndimage.generate_binary_structure(3, 3))
    hidden = 0
    steps = max(1, int(round(shell_mm / spacing_mm)))
    for idx, sl in enumerate(ndimage.find_objects(comps), start=1):
        big = tuple(slice(max(s.start - steps, 0), s.stop + steps) for s in sl)
        tumour = comps[big] == idx
        shell = ndimage.binary_dilation(tumour, iterations=steps) & (label[big] == 1)
        if not shell.any() or abs(float(hu[big][tumour].mean()) - float(hu[big][shell].mean())) < min_contrast:
            out[big][tumour] = IGNORE
            hidden += 1
    return out, hidden


def load_volumes(cases: Sequence[Case], label_map: Mapping[int, Sequence[int]], prep: S4CPreprocessing,
                 hide_invisible: bool = True) -> list[Volume]:
    """Every phase (channel) of ``cases`` resampled to the working grid, labels mapped with ``label_map`` onto
    the classes and resampled by nearest neighbour; with ``hide_invisible``, tumours a phase does not show are
    set to :data:`IGNORE` in that phase's labels."""
    volumes = []
    hidden = 0
    with progress.task("loading cases", total=len(cases)) as tick:
        for n, case in enumerate(cases):
            label = case.read_label()
            label = label.with_array(apply_labels(label.array, label_map))
            for phase, path in zip(phase_names(case), case.images):
                work = to_working_grid(read_image(path), prep)
                lab = resample_to_grid(label, work, "nearest", 0).array.astype(np.uint8)
                if hide_invisible:
                    lab, count = hide_invisible_tumours(work.array, lab, prep.spacing_mm)
                    hidden += count
                volumes.append(Volume(case.name, phase, normalise(work.array, prep.window), lab))
            tick(n + 1, len(cases))
    if hide_invisible:
        log.info("s4c: %d tumour(s) hidden from the loss in the phase that does not show them", hidden)
    return volumes


def _pad_to(arr: np.ndarray, size: int, value: float) -> np.ndarray:
    pad = [(0, max(size - s, 0)) for s in arr.shape]
    return np.pad(arr, pad, constant_values=value) if any(p[1] for p in pad) else arr


def sample_patch(volume: Volume, patch: int, rng: np.random.Generator,
                 class_probs: Sequence[float] = (0.25, 0.25, 0.3, 0.2)) -> tuple[np.ndarray, np.ndarray]:
    """A ``patch^3`` crop of ``volume`` centred on a voxel of a class drawn from ``class_probs`` (background,
    pancreas, tumour, duct; a class absent from the volume falls back to background = anywhere), then one
    of the 24 rotations of the cube by multiples of 90 degrees and a random flip (the paper's augmentation).

    Returns ``(image (1, p, p, p) float32, label (p, p, p) int64)``.
    """
    image = _pad_to(volume.image, patch, 0.0)
    label = _pad_to(volume.label, patch, 0)
    cls = int(rng.choice(4, p=np.asarray(class_probs) / np.sum(class_probs)))
    where = np.flatnonzero(label == cls) if cls else np.empty(0, int)
    if where.size:
        centre = np.array(np.unravel_index(rng.choice(where), label.shape))
    else:
        centre = np.array([rng.integers(0, s) for s in label.shape])
    lo = np.clip(centre - patch // 2 + rng.integers(-patch // 4, patch // 4 + 1, 3), 0,
                 np.array(label.shape) - patch)
    sl = tuple(slice(int(a), int(a) + patch) for a in lo)
    img, lab = image[sl], label[sl]
    img, lab = _augment(img, lab, rng)
    return np.ascontiguousarray(img[None], np.float32), np.ascontiguousarray(lab, np.int64)


def _augment(img: np.ndarray, lab: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotation by 0/90/180/270 degrees in a random plane, then a flip on each axis with probability 1/2."""
    axes = [(0, 1), (0, 2), (1, 2)][int(rng.integers(0, 3))]
    k = int(rng.integers(0, 4))
    img, lab = np.rot90(img, k, axes), np.rot90(lab, k, axes)
    for axis in range(3):
        if rng.random() < 0.5:
            img, lab = np.flip(img, axis), np.flip(lab, axis)
    return img, lab
