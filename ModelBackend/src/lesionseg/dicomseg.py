"""DICOM Segmentation (SEG) output: a label image on the grid of a DICOM series, written with highdicom.

``lesionseg predict|batch|screen --output-format dicom-seg`` write one SEG instance (``.dcm``) per label image:

- **References**: the SEG shares the source series' study, patient and frame of reference; every frame names
  the source instance (SOP Instance UID) it was derived from and carries that slice's position. Slices are
  matched to the label's ``k`` index by position along the slice normal (LPS mm, within 1 % of the slice
  spacing), not by file order, so a label that is not on the series' grid is refused instead of misplaced.
- **Segments**: one per label class (value 1, 2, ... = segment 1, 2, ...), with the SNOMED CT category / type
  codes the Slicer panels give their segments (:data:`CLASS_CODES`: a lesion is *Morphologically Altered
  Structure / Mass*), BINARY encoding; frames without any segment are left out (all are kept for an empty label).
- **Provenance**: algorithm name ``LesionSeg <method>``, version :data:`lesionseg.__version__`, family
  *Artificial Intelligence*; algorithm type AUTOMATIC for automatic methods, SEMIAUTOMATIC for prompted ones, whose
  prompt goes into each segment's Segment Description (0062,0006) in LPS mm (:func:`prompt_text`; the
  attribute holds 64 characters, so coordinates are rounded to fit).

Written here because the mapping from our label image and prompts to SEG attributes is ours; encoding, frame
organisation and the per-frame functional groups are highdicom's (a well-kept library, STYLE 18). highdicom
is imported only when a SEG is written. No torch here.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from .errors import InputError
from .geometry import index_to_world
from .image import Image
from .outputs import atomic_write, check_output_file
from .prompts import Box, Points, Prompt, RecistLine

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
FORMATS = ("nifti", "dicom-seg")
"""Values of ``--output-format``."""
SEG_SUFFIXES = (".dcm",)
DESCRIPTION_LIMIT = 64
"""Characters an LO attribute (Segment Description) holds."""
POSITION_TOL = 0.01
"""Largest distance between a label slice and a source slice, as a fraction of the slice spacing."""


@dataclass(frozen=True)
class Coded:
    """A coded concept as Slicer's terminology entries write it: ``scheme^value^meaning``."""

    value: str
    meaning: str
    scheme: str = "SCT"

    def to_highdicom(self):
        from pydicom.sr.coding import Code

        return Code(self.value, self.scheme, self.meaning)


MASS = Coded("4147007", "Mass")
ALTERED = Coded("49755003", "Morphologically Altered Structure")
ANATOMY = Coded("123037004", "Anatomical Structure")
PANCREAS = Coded("15776009", "Pancreas")
CLASS_CODES: dict[str, tuple[Coded, Coded, Optional[Coded]]] = {
    "lesion": (ALTERED, MASS, None),
    "nodule": (ALTERED, MASS, None),
    "tumour": (ALTERED, MASS, PANCREAS),
    "pancreas": (ANATOMY, PANCREAS, None),
    "duct": (ANATOMY, Coded("69930009", "Pancreatic duct"), None),
}
"""``class name -> (category, type, anatomic region or None)``: the codes of the Slicer panels' terminology entries
(``LesionSegLib.results.TERMINOLOGY_MASS``, ``LesionSegScreeningLib.screening.TERMINOLOGY``)."""


def check_format(output_format: str) -> str:
    """``output_format`` when it is one of :data:`FORMATS`; InputError otherwise."""
    if output_format not in FORMATS:
        raise InputError(f"--output-format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    return output_format


def check_source(source: PathLike, what: str = "the first input") -> Path:
    """Raise unless ``source`` is a folder (a DICOM series) a SEG can reference; call before any work."""
    path = Path(source)
    if not path.is_dir():
        raise InputError(f"--output-format dicom-seg needs a DICOM series as {what}; {path} is "
                         f"{'a file' if path.exists() else 'missing'}: use --output-format nifti")
    return path


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}" if digits else f"{value:.0f}"
    return "0" if text in ("-0", "-0.0") else text


def _points(points: Iterable[np.ndarray], digits: int) -> str:
    return " ".join(",".join(_number(float(v), digits) for v in p) for p in points)


def prompt_text(prompt: Prompt, limit: int = DESCRIPTION_LIMIT) -> str:
    """The prompt in at most ``limit`` characters, LPS mm: ``box x,y,z x,y,z``, ``RECIST x,y,z x,y,z`` (long axis;
    the short axis follows as ``short x,y,z x,y,z`` or, when that does not fit, ``short <length> mm``) or
    ``N points``; coordinates at 0.1 mm, or whole mm when that is needed to fit. Empty for no prompt."""
    if prompt is None:
        return ""
    texts: list[str] = []
    for digits in (1, 0):
        if isinstance(prompt, Box):
            texts.append(f"box {_points((prompt.lo, prompt.hi), digits)} mm LPS")
        elif isinstance(prompt, RecistLine):
            long = f"RECIST {_points((prompt.long_start, prompt.long_end), digits)}"
            if prompt.short_start is not None:
                texts.append(f"{long} short {_points((prompt.short_start, prompt.short_end), digits)}")
                texts.append(f"{long} short {prompt.short_length_mm:.{digits}f} mm")
            else:
                texts.append(long + " mm LPS")
        elif isinstance(prompt, Points):
            texts.append(f"{len(prompt.points)} points ({int(prompt.labels.sum())} foreground)")
    for text in texts:
        if len(text) <= limit:
            return text
    return texts[-1][:limit]


def _headers(files: Sequence[str]) -> list:
    import pydicom

    return [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def _slice_normal(ds) -> np.ndarray:
    cosines = np.asarray(ds.ImageOrientationPatient, float)
    return np.cross(cosines[:3], cosines[3:])


def match_slices(label: Image, headers: Sequence) -> list:
    """The source dataset of each label slice ``k`` (in ``k`` order), matched by position along the slice normal.

    Raises:
        InputError: the label's in-plane size or orientation differs from the series', or a label slice has no
            source slice at its position (the label is not on the series' grid).
    """
    first = headers[0]
    rows, columns = int(first.Rows), int(first.Columns)
    if label.shape[1:] != (rows, columns):
        raise InputError(f"the label's slices are {label.shape[2]}x{label.shape[1]} voxels, the DICOM series' "
                         f"{columns}x{rows}: the label is not on the grid of the series")
    normal = _slice_normal(first)
    row_dir = np.asarray(first.ImageOrientationPatient, float)[:3]
    if abs(float(np.dot(label.direction[:, 0], row_dir)) - 1.0) > 1e-3:
        raise InputError("the label's orientation differs from the DICOM series': the label is not on its grid")
    heights = np.array([float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)) for ds in headers])
    corners = index_to_world(label, np.array([[0.0, 0.0, float(k)] for k in range(label.shape[0])]))
    wanted = corners @ normal
    tol = POSITION_TOL * max(float(label.spacing[2]), 1e-3)
    matched = []
    for k, height in enumerate(wanted):
        nearest = int(np.argmin(np.abs(heights - height)))
        if abs(heights[nearest] - height) > tol:
            raise InputError(f"label slice {k} (at {height:.2f} mm along the slice normal) has no slice of the DICOM "
                             "series at its position: the label is not on the grid of the series")
        in_plane = np.asarray(headers[nearest].ImagePositionPatient, float) - corners[k]
        if np.linalg.norm(in_plane - np.dot(in_plane, normal) * normal) > tol + 1e-3:
            raise InputError(f"label slice {k} is shifted in-plane from DICOM slice {nearest}: the label is not on "
                             "the grid of the series")
        matched.append(headers[nearest])
    return matched


def segment_descriptions(classes: Sequence[str], method: str, prompt_kind: str, prompts: Sequence[Prompt] = ()):
    """highdicom ``SegmentDescription`` of each class after the background (``classes[1:]``), numbered 1, 2, ...

    Raises:
        InputError: a class without codes in :data:`CLASS_CODES`.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from . import __version__

    algorithm = hd.AlgorithmIdentificationSequence(name=f"LesionSeg {method}", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    kind = "AUTOMATIC" if prompt_kind == "none" else "SEMIAUTOMATIC"
    shown = [prompt_text(p) for p in prompts if p is not None]
    description = shown[0] if len(shown) == 1 else ""
    if len(shown) > 1:
        description = f"{len(shown)} prompts; first: {shown[0]}"[:DESCRIPTION_LIMIT]
    out = []
    for number, name in enumerate(classes[1:], start=1):
        if name not in CLASS_CODES:
            raise InputError(f"no DICOM codes for the class {name!r} of {method}; known: {', '.join(CLASS_CODES)}")
        category, kind_code, region = CLASS_CODES[name]
        item = hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=category.to_highdicom(),
            segmented_property_type=kind_code.to_highdicom(), algorithm_type=kind,
            algorithm_identification=algorithm, tracking_uid=hd.UID(), tracking_id=f"{method} {name}",
            anatomic_regions=[region.to_highdicom()] if region else None)
        if description:
            item.SegmentDescription = description
        out.append(item)
    return out


def build_seg(label: Image, source: PathLike, *, classes: Sequence[str], method: str, prompt_kind: str = "none",
              prompts: Sequence[Prompt] = (), series_uid: Optional[str] = None):
    """The highdicom ``Segmentation`` of ``label`` (uint8 class values ``0..len(classes)-1``, on the grid of the
    DICOM series in folder ``source``; ``series_uid`` picks one of several)."""
    import highdicom as hd

    from . import __version__
    from .dicom import choose_series

    _, files = choose_series(check_source(source), series_uid)
    array = np.asarray(label.array)
    if array.min() < 0 or array.max() >= len(classes):
        raise InputError(f"the label holds values {int(array.min())}..{int(array.max())}; {method}'s classes are "
                         f"0..{len(classes) - 1} ({', '.join(classes)})")
    sources = match_slices(label, _headers(files))
    first = sources[0]
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=array.astype(np.uint8), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(classes, method, prompt_kind, prompts),
        series_instance_uid=hd.UID(), series_number=int(getattr(first, "SeriesNumber", None) or 0) + 1000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="LesionSeg", manufacturer_model_name=method,
        software_versions=__version__, device_serial_number="none", content_label="LESIONSEG",
        omit_empty_frames=bool(array.any()),  # an empty label keeps all its frames (highdicom would say so)
        content_description=f"LesionSeg {method} segmentation"[:DESCRIPTION_LIMIT],
        series_description=f"LesionSeg {method}"[:DESCRIPTION_LIMIT])


def _verify(path: Path) -> None:
    import pydicom

    try:
        pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - any parser error means the written file is bad
        raise InputError(f"the written DICOM SEG {path.name} does not read back: {exc}") from None


def write_dicom_seg(label: Image, source: PathLike, path: PathLike, *, classes: Sequence[str], method: str,
                    prompt_kind: str = "none", prompts: Sequence[Prompt] = (), series_uid: Optional[str] = None,
                    overwrite: bool = False, inputs: Iterable[PathLike] = ()) -> Path:
    """Write the SEG of :func:`build_seg` to ``path`` (``.dcm``) atomically (:func:`lesionseg.outputs.atomic_write`:
    joins an enclosing ``publish_together`` block).

    Raises:
        InputError: ``source`` is not a DICOM series folder, the label is not on its grid, a class has no codes,
            another suffix. OutputExistsError: ``path`` exists without ``overwrite``.
    """
    path = check_output_file(path, overwrite, inputs, SEG_SUFFIXES, "DICOM SEG output")
    seg = build_seg(label, source, classes=classes, method=method, prompt_kind=prompt_kind, prompts=prompts,
                    series_uid=series_uid)
    atomic_write(path, lambda tmp: seg.save_as(tmp), overwrite, _verify, inputs)
    log.info("DICOM SEG %s: %d frames, %d segments", path, int(seg.NumberOfFrames), len(classes) - 1)
    return path


def write_label(label: Image, path: PathLike, output_format: str, *, spec, source: Optional[PathLike] = None,
                prompts: Sequence[Prompt] = (), series_uid: Optional[str] = None, overwrite: bool = False,
                inputs: Iterable[PathLike] = ()) -> Path:
    """Write a method's label as ``output_format``: NIfTI/NRRD/MHA (:func:`lesionseg.io.write_image`) or a DICOM
    SEG referencing the DICOM series ``source`` (:func:`write_dicom_seg`, classes and prompt kind from ``spec``, a
    :class:`~lesionseg.registry.MethodSpec`)."""
    if check_format(output_format) == "nifti":
        from .io import write_image

        return write_image(label, path, overwrite=overwrite, inputs=inputs)
    if source is None:
        raise InputError("--output-format dicom-seg needs a DICOM series as the first input")
    return write_dicom_seg(label, source, path, classes=spec.classes, method=spec.name, prompt_kind=spec.prompt,
                           prompts=prompts, series_uid=series_uid, overwrite=overwrite, inputs=inputs)
