"""Pure parts of the small-lesion panel: the prior choice, the backend's arguments, the ROI, segment names.

No ``slicer`` import and no backend import at module level (the panel imports this before the backend may be
installed); tested offline. The backend commands (issue #6)::

    lesionseg --progress lines predict small-lesion-il CT -o OUT/lesions.nii.gz --table OUT/lesions.json
        --device auto|cpu|cuda [--roi X0 Y0 Z0 X1 Y1 Z1] [--prior-mean HU --prior-sd HU | --prior-table FILE]
        [--weights DIR]
    lesionseg --progress lines prior (--mean HU --sd HU | --table FILE | --image CT --mask MASK | --weights [DIR])
        [-o prior.json] --plot prior.png

``--roi`` is in LPS mm in the frame of the CT *file*: Slicer writes a volume in its node coordinates, so an ROI
(world RAS) goes through the inverse of the volume's parent transform and the RAS -> LPS flip
(:func:`box_in_node_frame`). The output mask lies on the CT's grid (uint8 0/1); the table lists its 26-connected
lesions, largest first (mL and mean HU; the panel names each segment after its volume in mm³).
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from LesionSegLib import wholevolume
from LesionSegLib.lesiontable import LesionRow, format_volume

METHOD = "small-lesion-il"
OWNER = "LesionSegSmallLesion"
"""Owner tag of the segments this panel writes (only these are replaced by a new run)."""
CONNECTIVITY = 26
"""Neighbours that join lesion voxels into one lesion of the backend's table."""
PRIOR_TAG = "LesionSeg.prior"
ROI_TAG = "LesionSeg.roi"
"""Segment tags: the prior choice (:meth:`PriorChoice.tag`) and the ROI (JSON of the LPS box, or null)."""

PRIOR_MODES = {"Built-in (from the model)": "builtin", "Typed mean / SD": "typed",
               "Learn from a segment": "segment"}
"""What the panel's prior combo shows -> the kind of :class:`PriorChoice`."""

DEFAULT_TYPED_PRIOR = (130.0, 20.0)
"""Mean and SD (HU) the panel's typed prior starts with: an enhancing small lesion in portal-venous CT."""
MIN_SD_HU = 0.1
"""Smallest SD the panel's spin box allows (the logic refuses any SD <= 0)."""

TABLE_SUFFIXES = (".json", ".csv")
"""A prior table the backend reads (``lesionseg prior -o`` writes JSON; a CSV has columns hu, likelihood)."""

OUTPUT_FILES = {"label": "lesions.nii.gz", "table": "lesions.json", "prior": "prior.json", "plot": "prior.png"}
"""A run's outputs in its ``out`` folder (``prior``/``plot`` only when the prior is learnt from a segment); the table
is the shared lesion table (``LesionSegLib.lesiontable``)."""

PRIOR_CROP_MARGIN_VOXELS = 8
"""Margin around a segment when its prior is learnt from a crop of the CT: the prior's anisotropic diffusion
(5 iterations) carries information at most 5 voxels, so the HU inside the segment are smoothed from the same
neighbourhood as in the whole CT (up to the diffusion's conductance scaling, which ITK takes from the gradient
statistics of the image it is given)."""


@dataclass(frozen=True)
class PriorChoice:
    """Which intensity prior a run uses.

    Attributes:
        kind: ``"builtin"`` (the model's own), ``"typed"`` (Gaussian ``mean_hu`` / ``sd_hu``), ``"table"`` (a
            prior file at ``path``) or ``"segment"`` (learnt from the segment ``segment_id``).
        mean_hu, sd_hu: the typed Gaussian (HU).
        path: the prior table (json or csv).
        segment_id: the segment of the CT the prior is learnt from.
    """

    kind: str = "builtin"
    mean_hu: Optional[float] = None
    sd_hu: Optional[float] = None
    path: Optional[Path] = None
    segment_id: str = ""

    def predict_arguments(self, learnt: Optional[Path] = None) -> list[str]:
        """The prior options of ``lesionseg predict``; ``learnt`` is the prior fitted to the segment."""
        if self.kind == "typed":
            return ["--prior-mean", _number(self.mean_hu), "--prior-sd", _number(self.sd_hu)]
        if self.kind == "table":
            return ["--prior-table", str(self.path)]
        if self.kind == "segment":
            if learnt is None:
                raise ValueError("a prior learnt from a segment needs the file the prior step writes")
            return ["--prior-table", str(learnt)]
        return []

    def describe(self) -> str:
        """One line for the panel and the segment tags, e.g. ``"typed 130 ± 15 HU"``."""
        if self.kind == "typed":
            return f"typed {self.mean_hu:g} \u00b1 {self.sd_hu:g} HU"
        if self.kind == "table":
            return f"table {Path(self.path).name}"
        if self.kind == "segment":
            return f"learnt from segment {self.segment_id}"
        return "built-in (the model's prior)"

    def tag(self) -> str:
        """JSON stored in each result segment (what was asked, for an audit or a rerun)."""
        data = {"kind": self.kind, "mean_hu": self.mean_hu, "sd_hu": self.sd_hu,
                "path": None if self.path is None else str(self.path), "segment_id": self.segment_id or None}
        return json.dumps({k: v for k, v in data.items() if v is not None}, separators=(",", ":"))


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> str:
    return repr(float(value))


def typed_prior(mean_hu: Any, sd_hu: Any) -> PriorChoice:
    """A Gaussian prior after checking it (the backend refuses SD <= 0 too, but only after starting).

    Raises:
        ValueError: a mean or SD that is not a finite number, or an SD <= 0.
    """
    if not _finite(mean_hu):
        raise ValueError(f"the prior mean must be a finite number of HU, got {mean_hu!r}")
    if not _finite(sd_hu) or sd_hu <= 0:
        raise ValueError(f"the prior SD must be more than 0 HU, got {sd_hu!r}")
    return PriorChoice("typed", float(mean_hu), float(sd_hu))


def prior_choice(prior: Any = None) -> PriorChoice:
    """The console's ``prior`` argument as a :class:`PriorChoice`.

    Args:
        prior: ``None`` (the model's built-in prior), ``(mean_hu, sd_hu)``, a ``Path`` or a string ending in
            ``.json``/``.csv`` (a prior table that must exist), any other string (the ID of the segment to learn
            the prior from), or a :class:`PriorChoice`.

    Raises:
        ValueError: a bad mean/SD, a missing table, an empty segment ID, or a value of another type.
    """
    if prior is None:
        return PriorChoice()
    if isinstance(prior, PriorChoice):
        return prior
    if isinstance(prior, (tuple, list)) and len(prior) == 2 and not any(isinstance(v, str) for v in prior):
        return typed_prior(*prior)
    if isinstance(prior, Path) or (isinstance(prior, str) and prior.lower().endswith(TABLE_SUFFIXES)):
        path = Path(prior)
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(f"a prior table is a .json or .csv file, not {path.name}")
        if not path.is_file():
            raise ValueError(f"the prior table {path} does not exist")
        return PriorChoice("table", path=path)
    if isinstance(prior, str):
        if not prior.strip():
            raise ValueError("no segment given to learn the prior from")
        return PriorChoice("segment", segment_id=prior)
    raise ValueError("prior must be None, (mean HU, SD HU), a .json/.csv prior table or a segment ID; "
                     f"got {prior!r}")


def mode_kind(mode: str) -> str:
    """``"builtin"``, ``"typed"`` or ``"segment"`` for a combo text (:data:`PRIOR_MODES`) or the kind itself."""
    if mode in PRIOR_MODES:
        return PRIOR_MODES[mode]
    if mode in PRIOR_MODES.values():
        return mode
    raise ValueError(f"the prior choice must be one of {', '.join(PRIOR_MODES)}, not {mode!r}")


def panel_prior(mode: str, mean_hu: float, sd_hu: float, segment_id: str = "") -> PriorChoice:
    """The panel's prior widgets as a :class:`PriorChoice` (ValueError as :func:`typed_prior` / no segment)."""
    kind = mode_kind(mode)
    if kind == "typed":
        return typed_prior(mean_hu, sd_hu)
    if kind == "segment":
        return prior_choice(segment_id or "")
    return PriorChoice()


def input_problem(volume: bool, mode: str, sd_hu: float, segment: bool) -> Optional[str]:
    """Why the Segment button is disabled (``None`` when the inputs are complete)."""
    if not volume:
        return "Select the CT volume."
    kind = mode_kind(mode)
    if kind == "typed" and not (_finite(sd_hu) and sd_hu > 0):
        return "The prior SD must be more than 0 HU."
    if kind == "segment" and not segment:
        return "Select the segment to learn the intensity prior from."
    return None


def roi_arguments(box: Any) -> list[str]:
    """``["--roi", x0, y0, z0, x1, y1, z1]`` of a :class:`lesionseg.Box` (LPS mm); ``[]`` for ``None``."""
    if box is None:
        return []
    return ["--roi", *(_number(v) for v in (*box.lo, *box.hi))]


def box_in_node_frame(box: Any, world_to_node: Optional[np.ndarray] = None) -> Any:
    """An LPS box in world coordinates as the LPS box (bounding box) in a volume's node coordinates.

    Args:
        box: a :class:`lesionseg.Box` in world LPS mm (``LesionSegLib.nodes.roi_to_box`` of an ROI).
        world_to_node: 4x4 RAS matrix from world to the volume's node coordinates (the inverse of its parent
            transform), ``None`` when the volume is not transformed.
    """
    from lesionseg import Box
    from LesionSegLib.scene import lps_to_ras, ras_to_lps

    if world_to_node is None:
        return box
    matrix = np.asarray(world_to_node, dtype=np.float64).reshape(4, 4)
    ras = lps_to_ras(np.asarray(box.corners, dtype=np.float64))
    moved = ras_to_lps((matrix @ np.c_[ras, np.ones(len(ras))].T).T[:, :3])
    return Box(moved.min(axis=0), moved.max(axis=0))


def check_roi_overlap(box: Any, shape_kji: Sequence[int], ijk_to_ras: np.ndarray) -> None:
    """Raise :class:`lesionseg.InputError` when the ROI box misses the volume (warns when partly outside).

    Args:
        box: LPS box in the volume's node coordinates.
        shape_kji, ijk_to_ras: the volume's voxel array shape and own IJKToRAS matrix.
    """
    from lesionseg.geometry import box_to_index
    from LesionSegLib.scene import image_from_volume_array

    grid = image_from_volume_array(np.zeros(tuple(int(n) for n in shape_kji), np.uint8), ijk_to_ras)
    box_to_index(grid, box)


def prior_crop(ct: Any, mask: np.ndarray, margin: int = PRIOR_CROP_MARGIN_VOXELS) -> tuple[Any, Any]:
    """The CT and the segment's mask cropped to the segment's bounding box plus ``margin`` voxels.

    Args:
        ct: the CT as a :class:`lesionseg.Image` (HU, ``[k, j, i]``).
        mask: ``(K, J, I)`` segment voxels on the CT's grid (non-zero = inside).

    Returns:
        ``(ct crop, uint8 0/1 mask crop)`` on one grid (exact geometry, :meth:`lesionseg.Image.crop`).

    Raises:
        ValueError: the mask is empty or not on the CT's grid.
    """
    mask = np.asarray(mask)
    if mask.shape != tuple(ct.shape):
        raise ValueError(f"the segment's voxels {mask.shape} are not on the CT grid {tuple(ct.shape)}")
    where = np.nonzero(mask)
    if len(where[0]) == 0:
        raise ValueError("the segment to learn the prior from is empty")
    lo_kji = np.maximum(np.array([a.min() for a in where]) - margin, 0)
    hi_kji = np.minimum(np.array([a.max() for a in where]) + margin, np.array(mask.shape) - 1)
    crop = ct.crop(lo_kji[::-1], hi_kji[::-1])
    block = mask[lo_kji[0]:hi_kji[0] + 1, lo_kji[1]:hi_kji[1] + 1, lo_kji[2]:hi_kji[2] + 1]
    return crop, crop.with_array((block > 0).astype(np.uint8))


def predict_arguments(ct: Path, output_dir: Path, prior: PriorChoice, box: Any = None, weights: Optional[Path] = None,
                      device: str = "auto") -> list[str]:
    """``lesionseg predict small-lesion-il`` arguments (without the program and ``--progress``).

    Args:
        ct: the CT file; output_dir: an existing folder for :data:`OUTPUT_FILES`.
        prior: the prior choice; a segment's learnt prior is read from ``output_dir / "prior.json"``.
        box: the ROI as an LPS :class:`lesionseg.Box` in the CT file's frame, or ``None`` (whole CT).
        weights: a model folder, or ``None`` / ``""`` for the installed one.

    Raises:
        ValueError: a bad device or a weights folder that does not exist.
    """
    wholevolume.check_options(weights, device)
    out = wholevolume.output_paths(output_dir, OUTPUT_FILES)
    args = ["predict", METHOD, str(ct), "-o", str(out["label"]), "--table", str(out["table"]), "--device", device]
    args += roi_arguments(box) + prior.predict_arguments(out["prior"])
    if weights is not None and str(weights):
        args += ["--weights", str(weights)]
    return args


def prior_arguments(prior: PriorChoice, plot: Path, output: Optional[Path] = None, image: Optional[Path] = None,
                    mask: Optional[Path] = None, weights: Optional[Path] = None) -> list[str]:
    """``lesionseg prior`` arguments drawing ``plot`` (and writing ``output``) for a prior choice.

    A segment's prior needs ``image`` and ``mask`` (the crop files); the built-in prior is the installed model's
    (``--weights`` without a folder, put last) or that of ``weights``.
    """
    if prior.kind == "typed":
        source = ["--mean", _number(prior.mean_hu), "--sd", _number(prior.sd_hu)]
    elif prior.kind == "table":
        source = ["--table", str(prior.path)]
    elif prior.kind == "segment":
        if image is None or mask is None:
            raise ValueError("learning the prior from a segment needs the CT and mask files")
        source = ["--image", str(image), "--mask", str(mask)]
    else:
        source = []
    args = ["prior", *source] + (["-o", str(output)] if output is not None else []) + ["--plot", str(plot)]
    if prior.kind == "builtin":
        args += ["--weights"] + ([str(weights)] if weights is not None and str(weights) else [])
    return args


def segment_name(row: LesionRow) -> str:
    """A lesion's segment: ``"Lesion 1 (41 mm³)"``."""
    return f"Lesion {int(row.id)} ({format_volume(row.volume_mm3)} mm\u00b3)"


def segmentation_name(volume_name: str) -> str:
    """Name of a new segmentation: ``"<CT volume> small lesions"``."""
    return f"{volume_name} small lesions".strip()
