"""The intensity likelihood ``L(HU)`` of small lesions: a lookup table over HU with a maximum of exactly 1.

The paper's prior (arXiv 2207.14700, Sect. 2.1, Fig. 2b): the CT is smoothed by gradient anisotropic
diffusion, the HU inside the labelled lesions are gathered, a Gaussian kernel density estimate with an
automatic bandwidth (Scott's rule, :class:`scipy.stats.gaussian_kde`) is evaluated on a 1-HU grid and
rescaled to a maximum of 1. A user may instead type a mean and SD (:meth:`IntensityPrior.gaussian`) or give
a table (:meth:`IntensityPrior.load` of a two-column CSV). ``L`` is applied to *smoothed* HU
(:meth:`IntensityPrior.smooth`, whose parameters travel with the prior). No torch here.
"""
from __future__ import annotations

import csv
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...errors import InputError, LesionSegWarning, OutputExistsError
from ...image import Image, fmt_num, grid_mismatch, require_image
from ...intensity import sample
from ...io import atomic_write_bytes_via

log = logging.getLogger(__name__)

FORMAT = "lesionseg-intensity-prior"
VERSION = 1
HU_RANGE = (-1024.0, 3071.0)
"""The CT range the grid is clipped to (HU)."""
DEFAULT_SMOOTHING = {"time_step": 0.0625, "conductance": 3.0, "iterations": 5}
"""Gradient anisotropic diffusion: ``time_step`` per mm of the smallest spacing (0.0625 = 1/2^(3+1), the
3D stability limit), ``conductance`` (ITK's conductance parameter), ``iterations``."""
MAX_SAMPLES = 200_000
GRID_BANDWIDTHS = 5.0
"""A fitted prior's grid spans the sample range +- this many bandwidths."""
GAUSSIAN_SDS = 6.0
"""A Gaussian prior's grid spans the mean +- this many SDs."""
MAX_SD_HU = 1000.0
"""Largest SD (HU) of a typed Gaussian prior. The CT range is about 4000 HU wide: with an SD of 1000 HU the
likelihood varies by less than 5 % across the whole soft-tissue range (-100..200 HU), so a wider Gaussian
says nothing; a value of 1e6 or more is a typing slip (and once built a grid of 12 SDs in 1-HU steps)."""
BANDWIDTH_RANGE_HU = (0.5, MAX_SD_HU)
"""Allowed KDE bandwidth (HU): the curve is evaluated on a 1-HU grid, so a kernel narrower than half a step
falls between the grid points; wider than :data:`MAX_SD_HU` it is flat (see there)."""


def _finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {fmt_num(value)}")
    return float(value)


def check_gaussian(mean_hu: float, sd_hu: float, mean_name: str = "mean_hu",
                   sd_name: str = "sd_hu") -> tuple[float, float]:
    """``(mean, sd)`` as floats when the mean lies in :data:`HU_RANGE` and ``0 < sd <= MAX_SD_HU``; else
    :class:`InputError` naming the value as the caller knows it (``mean_name``, ``sd_name``: a keyword
    argument here, a flag such as ``--prior-sd`` in a command) and the allowed range."""
    mean = _finite(mean_hu, f"{mean_name} (the prior mean, HU)")
    sd = _finite(sd_hu, f"{sd_name} (the prior SD, HU)")
    if not HU_RANGE[0] <= mean <= HU_RANGE[1]:
        raise InputError(f"{mean_name} (the prior mean) must lie in the CT range {HU_RANGE[0]:g}..{HU_RANGE[1]:g} HU, "
                         f"got {fmt_num(mean)}")
    if not 0 < sd <= MAX_SD_HU:
        raise InputError(f"{sd_name} (the prior SD) must be > 0 and <= {MAX_SD_HU:g} HU, got {fmt_num(sd)}")
    return mean, sd


def check_bandwidth(bandwidth_hu: float, name: str = "bandwidth_hu") -> float:
    """``bandwidth_hu`` as a float within :data:`BANDWIDTH_RANGE_HU`; else :class:`InputError` naming ``name``."""
    value = _finite(bandwidth_hu, f"{name} (the KDE bandwidth, HU)")
    lo, hi = BANDWIDTH_RANGE_HU
    if not lo <= value <= hi:
        raise InputError(f"{name} (the KDE bandwidth) must lie in {lo:g}..{hi:g} HU, got {fmt_num(value)}")
    return value


def _check_smoothing(smoothing: dict) -> dict:
    """``smoothing`` with exactly the keys of :data:`DEFAULT_SMOOTHING`, validated (InputError otherwise)."""
    if not isinstance(smoothing, dict) or set(smoothing) != set(DEFAULT_SMOOTHING):
        raise InputError(f"smoothing must have the keys {sorted(DEFAULT_SMOOTHING)}, got {smoothing!r}")
    out = {key: _finite(smoothing[key], f"smoothing[{key!r}]") for key in DEFAULT_SMOOTHING}
    if out["time_step"] <= 0 or out["time_step"] > DEFAULT_SMOOTHING["time_step"] or out["conductance"] <= 0:
        raise InputError(f"smoothing needs 0 < time_step <= 0.0625 and conductance > 0, got {smoothing!r}")
    if out["iterations"] < 0 or out["iterations"] != int(out["iterations"]):
        raise InputError(f"smoothing iterations must be an integer >= 0, got {smoothing['iterations']!r}")
    out["iterations"] = int(out["iterations"])
    return out


@dataclass(frozen=True)
class IntensityPrior:
    """A lesion intensity likelihood over HU.

    Args:
        hu: ``(N,)`` float64 strictly increasing HU grid (N >= 2); 1-HU steps for kde and gaussian priors,
            a table keeps its own rows.
        values: ``(N,)`` float64 likelihood in [0, 1] with a maximum of exactly 1.
        source: ``"kde"``, ``"gaussian"``, ``"table"`` or ``"shifted:<source>"``.
        info: JSON-ready provenance, e.g. ``{"bandwidth_hu", "n_voxels", "mean_hu", "sd_hu", "cases"}``.
        smoothing: the anisotropic diffusion applied before ``likelihood`` (:data:`DEFAULT_SMOOTHING` keys).

    Raises:
        InputError: arrays of another shape or order, values outside [0, 1] or a maximum other than 1.
    """

    hu: np.ndarray
    values: np.ndarray
    source: str
    info: dict = field(default_factory=dict)
    smoothing: dict = field(default_factory=lambda: dict(DEFAULT_SMOOTHING))

    def __post_init__(self) -> None:
        hu = np.array(self.hu, dtype=np.float64).reshape(-1)
        values = np.array(self.values, dtype=np.float64).reshape(-1)
        if hu.size < 2 or hu.shape != values.shape:
            raise InputError(f"a prior needs >= 2 HU points and one value each, got {hu.size} and {values.size}")
        if not (np.all(np.isfinite(hu)) and np.all(np.isfinite(values))):
            raise InputError("the prior's HU grid and values must be finite")
        if np.any(np.diff(hu) <= 0):
            raise InputError("the prior's HU grid must be strictly increasing")
        if values.min() < 0 or values.max() != 1.0:
            raise InputError(f"prior values must lie in [0, 1] with a maximum of exactly 1, got "
                             f"{values.min():g}..{values.max():g}")
        hu.flags.writeable = values.flags.writeable = False
        object.__setattr__(self, "hu", hu)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "source", str(self.source))
        object.__setattr__(self, "info", dict(self.info))
        object.__setattr__(self, "smoothing", _check_smoothing(dict(self.smoothing)))

    def likelihood(self, hu: np.ndarray) -> np.ndarray:
        """``L(hu)`` by linear interpolation (``np.interp``); 0 outside the grid. float32, same shape."""
        arr = np.asarray(hu, dtype=np.float64)
        return np.interp(arr, self.hu, self.values, left=0.0, right=0.0).astype(np.float32).reshape(arr.shape)

    def smooth(self, image: Image) -> Image:
        """``image`` (HU) after gradient anisotropic diffusion with :attr:`smoothing`: float32, same grid.

        SimpleITK requires ``time_step <= min(spacing) / 2^(3+1)`` for stability in 3D; the stored
        ``time_step`` is per mm of the smallest spacing, so the filter gets ``time_step * min(spacing)``.
        """
        import SimpleITK as sitk

        from ...io import to_sitk

        work = image.with_array(image.array.astype(np.float32))
        if self.smoothing["iterations"] == 0:
            return work
        step = self.smoothing["time_step"] * float(np.min(image.spacing))
        out = sitk.GradientAnisotropicDiffusion(to_sitk(work), timeStep=step,
                                                conductanceParameter=self.smoothing["conductance"],
                                                numberOfIterations=self.smoothing["iterations"])
        return image.with_array(sitk.GetArrayFromImage(out).astype(np.float32))

    def shifted(self, delta_hu: float) -> "IntensityPrior":
        """The prior moved by ``delta_hu``: ``L'(h) = L(h - delta_hu)`` (the paper's Seg+IL(shifted))."""
        delta = _finite(delta_hu, "delta_hu")
        base = self.source.split("shifted:")[-1]
        total = float(self.info.get("shift_hu", 0.0)) + delta
        return IntensityPrior(self.hu + delta, self.values, f"shifted:{base}", {**self.info, "shift_hu": total},
                              self.smoothing)

    def describe(self) -> dict:
        """Summary of the curve: ``peak_hu``, ``mean_hu`` and ``sd_hu`` of ``L`` taken as a density,
        ``half_max_hu`` ``[lo, hi]`` (where ``L > 0.5``) and ``bandwidth_hu`` (None unless fitted)."""
        weights = self.values / self.values.sum()
        mean = float(weights @ self.hu)
        above = self.hu[self.values > 0.5]
        return {"source": self.source, "peak_hu": float(self.hu[int(np.argmax(self.values))]), "mean_hu": mean,
                "sd_hu": float(np.sqrt(weights @ (self.hu - mean) ** 2)),
                "half_max_hu": [float(above.min()), float(above.max())],
                "bandwidth_hu": self.info.get("bandwidth_hu")}

    def to_dict(self) -> dict:
        """JSON-ready dict (exact floats); :meth:`from_dict` inverts it."""
        return {"format": FORMAT, "version": VERSION, "source": self.source, "info": self.info,
                "smoothing": dict(self.smoothing), "hu": self.hu.tolist(), "likelihood": self.values.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "IntensityPrior":
        """The prior of a :meth:`to_dict` dict (InputError for another format or missing keys)."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError(f"not a LesionSeg intensity prior (expected \"format\": \"{FORMAT}\")")
        if d.get("version") != VERSION:
            raise InputError(f"unsupported intensity prior version {d.get('version')!r} (this is {VERSION})")
        missing = [k for k in ("source", "hu", "likelihood") if k not in d]
        if missing:
            raise InputError(f"intensity prior lacks {', '.join(missing)}")
        try:
            hu, values = np.asarray(d["hu"], np.float64), np.asarray(d["likelihood"], np.float64)
        except (TypeError, ValueError):
            raise InputError("intensity prior 'hu' and 'likelihood' must be lists of numbers") from None
        return cls(hu, values, d["source"], d.get("info") or {}, d.get("smoothing", DEFAULT_SMOOTHING))

    def save(self, path: Path, overwrite: bool = False) -> None:
        """Write the prior as JSON (``.json``), atomically; OutputExistsError when it exists."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            raise InputError(f"a prior is saved as .json, not {path.name!r}")
        if not path.parent.is_dir():
            raise InputError(f"output folder {path.parent} does not exist")
        text = json.dumps(self.to_dict()) + "\n"
        atomic_write_bytes_via(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite)

    @classmethod
    def load(cls, path: Path) -> "IntensityPrior":
        """Read a ``.json`` written by :meth:`save`, or a ``.csv`` table of two columns ``hu,likelihood``
        (header optional; rows sorted by HU; values rescaled to a maximum of 1; source ``"table"``)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no such prior file: {path}")
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{path} is not valid JSON: {exc}") from None
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
        if suffix == ".csv":
            return _read_table(path)
        raise InputError(f"a prior file is .json or .csv, not {path.name!r}")

    @classmethod
    def gaussian(cls, mean_hu: float, sd_hu: float) -> "IntensityPrior":
        """``L(h) = exp(-(h - mean)^2 / (2 sd^2))`` on a 1-HU grid through ``mean_hu`` spanning
        mean +- 6 SD (at least +- 1 HU), clipped to -1024..3071 HU (so at most 4096 points); ``L(mean_hu) = 1``
        exactly.

        Raises:
            InputError: non-finite values, a mean outside -1024..3071 HU or an SD outside (0, 1000] HU
                (:func:`check_gaussian`).
        """
        mean, sd = check_gaussian(mean_hu, sd_hu)
        half = int(np.ceil(max(GAUSSIAN_SDS * sd, 1.0)))
        first = max(-half, int(np.ceil(HU_RANGE[0] - mean)))
        last = min(half, int(np.floor(HU_RANGE[1] - mean)))
        hu = mean + np.arange(first, last + 1, dtype=np.float64)
        if hu.size < 2:  # the mean sits on the range edge with a tiny SD: add the inner neighbour
            hu = np.array([mean - 1.0, mean]) if mean >= HU_RANGE[1] else np.array([mean, mean + 1.0])
        values = np.exp(-0.5 * ((hu - mean) / sd) ** 2)
        values /= values.max()
        return cls(hu, values, "gaussian", {"mean_hu": mean, "sd_hu": sd})

    @classmethod
    def from_samples(cls, samples_hu: np.ndarray, bandwidth_hu: Optional[float] = None,
                     smoothing: Optional[dict] = None, info: Optional[dict] = None) -> "IntensityPrior":
        """Gaussian KDE of ``(n,)`` HU samples (Scott's rule unless ``bandwidth_hu``), evaluated on an
        integer-HU grid over the sample range +- 5 bandwidths (clipped to -1024..3071), rescaled to max 1.

        Raises:
            InputError: fewer than 2 finite samples, all samples equal, a ``bandwidth_hu`` outside
                0.5..1000 HU (:func:`check_bandwidth`), or samples whose density vanishes on the grid.
        """
        from scipy.stats import gaussian_kde

        samples = np.asarray(samples_hu, np.float64).reshape(-1)
        if samples.size < 2 or not np.all(np.isfinite(samples)):
            raise InputError(f"a KDE prior needs at least 2 finite HU samples, got {samples.size}")
        sd = float(samples.std(ddof=1))
        if sd < 1e-6:
            raise InputError(f"all {samples.size} HU samples are equal ({samples[0]:g}); type a mean and SD instead")
        if bandwidth_hu is None:
            kde = gaussian_kde(samples, bw_method="scott")
        else:
            kde = gaussian_kde(samples, bw_method=check_bandwidth(bandwidth_hu) / sd)
        bandwidth = float(np.sqrt(kde.covariance[0, 0]))
        lo = max(np.floor(samples.min() - GRID_BANDWIDTHS * bandwidth), HU_RANGE[0])
        hi = min(np.ceil(samples.max() + GRID_BANDWIDTHS * bandwidth), HU_RANGE[1])
        hu = np.arange(lo, max(hi, lo + 1.0) + 0.5, 1.0)
        values = kde(hu)
        if not values.max() > 0:
            raise InputError(f"the density of the {samples.size} HU samples ({samples.min():.4g}..{samples.max():.4g}, "
                             f"bandwidth {bandwidth:.3g} HU) is 0 on the 1-HU grid {hu[0]:g}..{hu[-1]:g} (a CT in HU "
                             "lies within -1024..3071); type a mean and SD instead")
        values /= values.max()
        stats = {"bandwidth_hu": bandwidth, "n_samples": int(samples.size), "mean_hu": float(samples.mean()),
                 "sd_hu": sd, "peak_hu": float(hu[int(np.argmax(values))])}
        return cls(hu, values, "kde", {**(info or {}), **stats}, smoothing or DEFAULT_SMOOTHING)

    @classmethod
    def fit(cls, images: Sequence[Image], masks: Sequence[Image], bandwidth_hu: Optional[float] = None,
            max_samples: int = MAX_SAMPLES, seed: int = 0, smoothing: Optional[dict] = None,
            names: Optional[Sequence[str]] = None) -> "IntensityPrior":
        """KDE prior of the smoothed HU inside ``masks`` (see :func:`gather_samples` and :meth:`from_samples`).

        ``info`` records ``n_voxels`` (all masked voxels), ``n_samples`` (after seeded subsampling to
        ``max_samples``), ``bandwidth_hu``, ``mean_hu``, ``sd_hu``, ``peak_hu`` and ``cases`` (``names``).
        """
        samples, n_voxels = gather_samples(images, masks, max_samples, seed, smoothing)
        info = {"n_voxels": n_voxels, "cases": list(names) if names is not None else len(images)}
        return cls.from_samples(samples, bandwidth_hu, smoothing, info)


def gather_samples(images: Sequence[Image], masks: Sequence[Image], max_samples: int = MAX_SAMPLES,
                   seed: int = 0, smoothing: Optional[dict] = None, image_names: Optional[Sequence[str]] = None,
                   mask_names: Optional[Sequence[str]] = None) -> tuple[np.ndarray, int]:
    """Smoothed HU inside the masks (``mask > 0``) of every image, pooled.

    Each image is smoothed with ``smoothing`` (:data:`DEFAULT_SMOOTHING`); a mask on another grid is
    resampled onto its image's grid (nearest neighbour, with a :class:`LesionSegWarning`). When more than
    ``max_samples`` voxels are masked a seeded random subset is kept. ``image_names`` and ``mask_names``
    (e.g. file names; default "image 1", "mask 1", ...) name the pairs in messages.
    Returns ``(samples (n,) float64 HU, number of masked voxels)``.

    Raises:
        InputError: different numbers of images and masks, none given, a mask on another grid none of whose
            voxels falls inside its image (checked before emptiness), or no masked voxel at all.
    """
    from ...resample import resample_to_grid

    if len(images) != len(masks) or not images:
        raise InputError(f"give one mask per image (got {len(images)} images, {len(masks)} masks)")
    if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 2:
        raise InputError(f"max_samples must be an integer >= 2, got {fmt_num(max_samples)}")
    image_names = list(image_names or [f"image {n + 1}" for n in range(len(images))])
    mask_names = list(mask_names or [f"mask {n + 1}" for n in range(len(masks))])
    smoother = IntensityPrior(np.array([0.0, 1.0]), np.array([1.0, 1.0]), "probe", {},
                              smoothing or DEFAULT_SMOOTHING)
    pooled = []
    for n, (image, mask) in enumerate(zip(images, masks)):
        require_image(image, f"gather_samples ({image_names[n]})")
        require_image(mask, f"gather_samples ({mask_names[n]})")
        if not mask.same_grid(image):
            differences = grid_mismatch(mask, image)
            moved = resample_to_grid(mask, image, "nearest", 0)
            if np.any(mask.array > 0) and not np.any(moved.array > 0):
                raise InputError(f"{mask_names[n]} is on another grid than {image_names[n]} ({differences}) and none "
                                 "of its voxels lies inside that image: is it the mask of this image?")
            warnings.warn(f"{mask_names[n]} is on another grid than {image_names[n]} ({differences}); resampled onto "
                          "the image's grid (nearest neighbour)", LesionSegWarning, stacklevel=2)
            mask = moved
        inside = mask.array > 0
        if not inside.any():
            log.info("prior: %s holds no voxel; skipped", mask_names[n])
            continue
        pooled.append(smoother.smooth(image).array[inside].astype(np.float64))
    samples = np.concatenate(pooled) if pooled else np.empty(0)
    if samples.size == 0:
        which = f"{mask_names[0]} is empty" if len(masks) == 1 else f"all {len(masks)} lesion masks are empty"
        raise InputError(f"{which}: nothing to fit an intensity prior to")
    total = int(samples.size)
    if total > max_samples:
        samples = samples[np.random.default_rng(seed).choice(total, max_samples, replace=False)]
    return samples, total


def _read_table(path: Path) -> IntensityPrior:
    """A ``hu,likelihood`` CSV (optional header row; ``#`` comments) as a ``"table"`` prior."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for number, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            try:
                if len(cells) != 2:
                    raise ValueError
                rows.append((float(cells[0]), float(cells[1])))
            except ValueError:
                if rows or number > 1:
                    raise InputError(f"{path} line {number}: expected two numbers 'hu,likelihood', got {row!r}")
    table = np.array(rows, np.float64).reshape(-1, 2)
    if len(table) < 2:
        raise InputError(f"{path}: a prior table needs at least 2 rows of 'hu,likelihood'")
    table = table[np.argsort(table[:, 0], kind="stable")]
    if np.any(np.diff(table[:, 0]) == 0):
        raise InputError(f"{path}: an HU value appears twice")
    if not np.all(np.isfinite(table)) or table[:, 1].min() < 0 or table[:, 1].max() <= 0:
        raise InputError(f"{path}: likelihoods must be finite, >= 0 and not all 0")
    return IntensityPrior(table[:, 0], table[:, 1] / table[:, 1].max(), "table",
                          {"path": str(path), "rows": int(len(table))})


def check_prior_against_image(prior: IntensityPrior, image: Image) -> None:
    """Warn (:class:`LesionSegWarning`) when the prior's mass (HU where ``L > 0.5``) lies entirely outside
    the 1st..99th percentile HU range of ``image`` (a prior typed in other units, or for another scan)."""
    above = prior.hu[prior.values > 0.5]
    p1, p99 = np.percentile(sample(image.array), [1.0, 99.0])
    if above.max() < p1 or above.min() > p99:
        warnings.warn(f"the intensity prior ({above.min():.0f}..{above.max():.0f} HU where L > 0.5) lies outside "
                      f"the image's 1st..99th percentile range ({p1:.0f}..{p99:.0f} HU); is it the right prior?",
                      LesionSegWarning, stacklevel=2)


def plot_prior(prior: IntensityPrior, path: Path, samples_hu: Optional[np.ndarray] = None,
               overwrite: bool = False) -> Path:
    """A PNG like the paper's Fig. 2b: histogram of the lesion HU ``samples_hu`` (1-D, optional; scaled to
    a peak of 1) and the likelihood curve ``L(HU)``; written atomically.

    Raises:
        InputError: a suffix other than .png or a missing folder. OutputExistsError: the file exists.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"the prior plot is written as .png, not {path.name!r}")
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    summary = prior.describe()
    fig = Figure(figsize=(6.0, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if samples_hu is not None and np.size(samples_hu):
        samples = np.asarray(samples_hu, np.float64).reshape(-1)
        counts, edges = np.histogram(samples, bins=min(60, max(10, int(np.sqrt(samples.size)))))
        ax.bar(edges[:-1], counts / counts.max(), width=np.diff(edges), align="edge", color="tab:gray",
               alpha=0.5, label=f"lesion HU (n = {samples.size})")
    ax.plot(prior.hu, prior.values, color="tab:red", lw=2, label="likelihood L(HU)")
    ax.set_xlabel("HU (smoothed CT)")
    ax.set_ylabel("likelihood / relative frequency")
    ax.set_ylim(0, 1.05)
    text = f"{prior.source}: peak {summary['peak_hu']:.0f} HU, mean {summary['mean_hu']:.0f}, " \
           f"SD {summary['sd_hu']:.0f}"
    if summary["bandwidth_hu"] is not None:
        text += f", bandwidth {summary['bandwidth_hu']:.1f} HU"
    ax.set_title(text, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    atomic_write_bytes_via(path, lambda tmp: fig.savefig(tmp, format="png"), overwrite)
    return path
