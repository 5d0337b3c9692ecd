"""Dual-phase CT synthesised from a real label map: one real anatomy becomes many (#18).

SynthSeg (Billot et al., *Med Image Anal* 2023) trains on images synthesised from label maps of real anatomies;
:func:`labelmap_ct` does that for S4C from a multi-class abdominal label map (TotalSegmentator v2 ``total``
names; :mod:`.labelmap_tissues` gives each class its tissue). Per case it draws a random affine (scale, in-plane
rotation, shear) and a smooth elastic warp, resamples the label map onto a new grid (0.7-1.0 mm in-plane,
1-5 mm slices, optionally cropped around the pancreas), builds the body the map does not label (air, subcutaneous
fat, an abdominal wall muscle layer, visceral fat) from the labelled voxels, fills gut organs with gas, fluid or
both, places a tumour and/or dilated duct in the pancreas, and renders both phases with the domain randomisation
of :mod:`.randomise`. Arrays are ``(K, J, I)``; spacings ``(i, j, k)`` mm; HU. The anatomy is real (the label
map's), the intensities are synthetic. Resampling, distances and filters are :mod:`scipy.ndimage`'s.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

from ..errors import InputError
from ..image import Image
from .labelmap_tissues import (AIR_HU, BONE_HU, BONE_TEXTURE_HU, CONTENTS, FIXED_HU, FLUID_HU, TYPICAL_HU,
                               find_pancreas, gut_organs, tissue_of)
from .pancreas import KIND_SHARES, KINDS, LABELS, PHASES
from .randomise import CODE_BASE, bias_field, render, smooth_noise, tissue_values, tumour_contrast
from .shapes import LESION_SHAPES, Grid, Region, tube

log = logging.getLogger(__name__)

VISCERAL, WALL, SUBCUT, AIR, GAS, CONTENT = 1000, 1001, 1002, 1003, 1004, 2000
"""Codes beyond the class values: body layers, gut gas, and ``CONTENT + class`` for a gut organ's fluid."""
SCALE, ROTATION_DEG, SHEAR = (0.85, 1.15), 10.0, 0.05
ELASTIC_MM = (3.0, 8.0)
SPACING_MM, Z_SPACING_MM = (0.7, 1.0), (1.0, 5.0)
MARGIN_MM, WALL_MM, GAP_MM, CLOSE_MM, PAD_MM = (15.0, 35.0), (6.0, 15.0), (0.0, 5.0), 15.0, 50.0
"""Body: labelled voxels closed by CLOSE_MM, grown by MARGIN_MM; a muscle wall of WALL_MM starts GAP_MM (visceral
fat) outside the closed labels; each varies +-25 % smoothly around the body. PAD_MM of room is added in-plane."""
CROP = 0.5
"""Odds that a case is cropped to a random box that keeps the whole pancreas."""
DUCT_MM = (4.0, 8.0)


@dataclass(frozen=True)
class _Warp:
    """Backward map of output grid-mm ``q`` (``(x, y, z)`` along the source axes, ``q = lo + spacing * ijk``) to
    source mm ``p = centre + inverse @ (q - centre) + u(q)``; ``u``: cubic interpolation of ``control``
    ``(3, 4, 4, 4)`` mm vectors (z, y, x lattice) spread over the output box; ``source_spacing``: the label
    map's ``(i, j, k)`` mm."""

    inverse: np.ndarray
    centre: np.ndarray
    control: np.ndarray
    lo: np.ndarray
    spacing: np.ndarray
    shape: tuple[int, int, int]
    source_spacing: np.ndarray

    def sample(self, arrays: Sequence[tuple[np.ndarray, int]], slab: int = 8) -> list[np.ndarray]:
        """Each source ``(K, J, I)`` array resampled on the output grid with its spline order (0 or 1)."""
        out = [np.empty(self.shape, a.dtype if order == 0 else np.float32) for a, order in arrays]
        weights = [_spline_weights(n, m) for n, m in zip(self.shape, self.control.shape[1:])]
        for k0 in range(0, self.shape[0], slab):
            kk, jj, ii = np.mgrid[k0:min(k0 + slab, self.shape[0]), 0:self.shape[1], 0:self.shape[2]]
            index = np.stack([ii, jj, kk]).reshape(3, -1).astype(np.float32)
            q = self.lo[:, None] + self.spacing[:, None] * index
            u = np.einsum("dcba,kc,jb,ia->dkji", self.control, weights[0][k0:k0 + slab], weights[1], weights[2],
                          optimize=True).reshape(3, -1)
            p = self.centre[:, None] + self.inverse @ (q - self.centre[:, None]) + u
            src = (p / self.source_spacing[:, None])[::-1]
            for target, (array, order) in zip(out, arrays):
                target[k0:k0 + slab] = ndimage.map_coordinates(array, src, order=order, mode="nearest",
                                                               prefilter=False).reshape(kk.shape)
        return out


def _spline_weights(n: int, m: int) -> np.ndarray:
    """``(n, m)`` float32 weights of a natural cubic spline through ``m`` control values spread over ``n`` points
    (the elastic field is a tensor product of these, evaluated separably: far cheaper than 3D interpolation)."""
    spline = CubicSpline(np.linspace(0.0, 1.0, m), np.eye(m), bc_type="natural")
    return spline(np.linspace(0.0, 1.0, n)).astype(np.float32)


def _volume_level(smooth: np.ndarray, voxels: int) -> float:
    """The level of ``smooth`` (a blurred mask ``(K, J, I)`` of ``voxels`` voxels) whose linearly interpolated
    level set keeps the mask's volume, measured on a 3x finer grid around it."""
    near = ndimage.find_objects((smooth > 1e-3).astype(np.int8))[0]
    box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in near)
    fine = np.sort(ndimage.zoom(smooth[box], 3, order=1, grid_mode=True, mode="grid-constant").ravel())
    return float(fine[-min(27 * voxels, fine.size)])


def labelmap_ct(labels: Image, names: Mapping[int, str], seed: int, kind: Optional[str] = None,
                spacing: Optional[Sequence[float]] = None) -> tuple[Image, Image, Image, dict]:
    """Seeded dual-phase CT and S4C label synthesised from the real label map ``labels``.

    Args:
        labels: integer class image ``(K, J, I)`` (e.g. TotalSegmentator's 117 classes); its ``meta["source"]``,
            when set, is recorded as the source file.
        names: ``{class value: name}``; one class must be named ``pancreas`` and present in ``labels``.
        seed: non-negative integer; the same arguments give identical arrays.
        kind: one of :data:`.pancreas.KINDS`; None draws it from the seed (:data:`.pancreas.KIND_SHARES`).
        spacing: output voxel size ``(i, j, k)`` mm; default drawn per case (in-plane U(0.7, 1.0), slices
            U(1, 5)).

    Returns:
        ``(arterial, venous, label, info)``: int16 HU images and a uint8 label (0 background, 1 pancreas,
        2 tumour, 3 duct) on one new grid (the label map's direction; origin and extent those of the warped
        map); ``info``: phantom, seed, kind, source, geometry (scale, rotation_deg, shear, elastic_mm, crop),
        shape, spacing, origin, direction, labels, tumours (diameter_mm, shape, hu_arterial, hu_venous,
        contrast, conspicuous_phase, volume_mm3, centre_lps, box_ijk), duct, body (margin/wall/gap mm),
        contents (per gut organ), pancreas_mm3, organ_mm3, hu (per phase), render, positive.

    Raises:
        InputError: bad seed or kind, a non-integer label map, no ``pancreas`` class in ``names`` or ``labels``,
            or a bad ``spacing``.
    """
    if kind is not None and kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS} or None, got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    source = np.asarray(labels.array)
    if not np.issubdtype(source.dtype, np.integer):
        if not np.all(np.isfinite(source)) or np.any(source != np.rint(source)):
            raise InputError("the label map must hold integer class values")
    source = source.astype(np.int32)
    pancreas_class = find_pancreas(labels, names)
    geo, lesions, styler = (np.random.default_rng([int(seed), stream]) for stream in (0, 1, 3))
    drawn = KINDS[int(lesions.choice(len(KINDS), p=[KIND_SHARES[k] for k in KINDS]))]
    kind = drawn if kind is None else kind
    present = set(np.unique(source).tolist())
    names = {int(c): str(n) for c, n in names.items() if int(c) in present}
    pad = np.ceil(PAD_MM / labels.spacing[:2]).astype(int)
    source = np.pad(source, ((0, 0), (pad[1], pad[1]), (pad[0], pad[0])))
    origin = labels.origin - labels.direction @ (labels.spacing * [pad[0], pad[1], 0])
    padded = Image(source, labels.spacing, origin, labels.direction)
    codes, contents = _gut_contents(padded, names, geo)
    body = {"margin_mm": float(geo.uniform(*MARGIN_MM)), "wall_mm": float(geo.uniform(*WALL_MM)),
            "gap_mm": float(geo.uniform(*GAP_MM))}
    body["margin_mm"] = max(body["margin_mm"], body["gap_mm"] + body["wall_mm"] + 3.0)
    depth = _body_depth(source > 0, labels.spacing, geo)
    warp, geometry = _draw_warp(geo, padded, depth <= body["margin_mm"], source == pancreas_class, spacing)
    smooth = ndimage.gaussian_filter((source == pancreas_class).astype(np.float32), 0.6)
    level = _volume_level(smooth, int(np.count_nonzero(source == pancreas_class)))
    code, depth, pancreas = warp.sample([(codes, 0), (depth, 1), (smooth, 1)])
    pancreas = pancreas >= level
    free, gap = code == 0, depth[code == 0]
    code[free] = np.select([gap <= body["gap_mm"], gap <= body["gap_mm"] + body["wall_mm"], gap <= body["margin_mm"]],
                           [VISCERAL, WALL, SUBCUT], AIR)
    code[(code == pancreas_class) & ~pancreas] = VISCERAL
    code[pancreas] = pancreas_class
    grid = Grid.create(warp.shape, warp.spacing, (0, 0, 0), origin + labels.direction @ warp.lo, labels.direction)
    tissues = {c: tissue_of(n) for c, n in names.items()}
    values, render_record = _values(styler, set(tissues.values()) | {"fat", "muscle"}, contents)
    allowed = pancreas | (code == VISCERAL)
    tumours, records = _tumour(grid, lesions, styler, pancreas, allowed, values, kind)
    duct, duct_record = _duct(grid, lesions, pancreas & ~tumours, values) if "duct" in kind else (None, None)
    label = pancreas.astype(np.uint8)
    hu = _canvas(code, names, values, styler, grid)
    if duct is not None:
        label[duct] = LABELS["duct"]
        hu[duct] = CODE_BASE - list(values).index("duct")
    label[tumours] = LABELS["tumour"]
    if records:
        hu[tumours] = CODE_BASE - list(values).index("tumour")
    arterial, venous = render(hu, values, grid.spacing, styler, 0.0, styler, render_record)
    voxel_mm3 = float(np.prod(grid.spacing))
    info = {
        "phantom": "labelmap_ct", "seed": int(seed), "kind": kind, "source": labels.meta.get("source"),
        "anatomy": "real label map (synthetic intensities)", "geometry": geometry, "shape": list(grid.shape),
        "spacing": grid.spacing.tolist(), "origin": grid.origin.tolist(), "direction": grid.direction.tolist(),
        "labels": dict(LABELS), "tumours": records,
        "duct": duct_record and {**duct_record, "volume_mm3": round(float(np.count_nonzero(duct)) * voxel_mm3, 3)},
        "body": {k: round(v, 2) for k, v in body.items()}, "contents": contents,
        "pancreas_mm3": round(float(np.count_nonzero(label == LABELS["pancreas"])) * voxel_mm3, 3),
        "organ_mm3": round(float(np.count_nonzero(label)) * voxel_mm3, 3),
        "hu": {phase: {name: round(pair[p], 1) for name, pair in values.items()} for p, phase in enumerate(PHASES)},
        "render": {"style": "randomised", **render_record},
        "positive": bool(records or duct is not None),
    }
    meta = {"units": "HU", "phantom": "labelmap_ct"}
    return (grid.image(arterial, phase="arterial", **meta), grid.image(venous, phase="venous", **meta),
            grid.image(label), info)


def _gut_contents(labels: Image, names: Mapping[int, str], rng: np.random.Generator
                  ) -> tuple[np.ndarray, dict[str, str]]:
    """Source codes ``(K, J, I)`` int16: the class values, with the inside of each gut organ (its class eroded
    by one voxel in-plane) recoded as fluid (``CONTENT + class``) and/or :data:`GAS` per the organ's content
    (:data:`.labelmap_tissues.CONTENTS`; ``mixed``: gas anterior to a level at 20-60 % of its depth, in LPS).
    Returns the codes and ``{class name: content}``."""
    codes = labels.array.astype(np.int16)
    cross = np.zeros((3, 3, 3), bool)
    cross[1] = ndimage.generate_binary_structure(2, 1)
    contents = {}
    for c in sorted(gut_organs(names)):
        content = str(rng.choice(list(CONTENTS), p=list(CONTENTS.values())))
        contents[names[c]] = content
        inside = ndimage.binary_erosion(labels.array == c, cross)
        if content == "gas":
            codes[inside] = GAS
            continue
        codes[inside] = CONTENT + c
        if content == "mixed" and inside.any():
            kji = np.argwhere(inside)
            posterior = labels.origin[1] + (labels.direction[1] * labels.spacing) @ kji[:, ::-1].T.astype(float)
            gas = posterior < np.quantile(posterior, rng.uniform(0.2, 0.6))
            codes[tuple(kji[gas].T)] = GAS
    return codes, contents


def _body_depth(labelled: np.ndarray, spacing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """In-plane distance (mm, float32 ``(K, J, I)``) outside the body core: each slice's labelled voxels closed by
    :data:`CLOSE_MM` and hole-filled; <= 0 inside; scaled by a smooth field of +-25 % so the layers built on it
    (:func:`labelmap_ct`) vary in thickness around the body. Slices with no label are all far outside."""
    edt = partial(ndimage.distance_transform_edt, sampling=np.asarray(spacing, float)[1::-1])
    depth = np.full(labelled.shape, 1e4, np.float32)
    for k, mask in enumerate(labelled):
        if mask.any():
            core = ndimage.binary_fill_holes((edt(edt(~mask) <= CLOSE_MM) > CLOSE_MM) | mask)
            depth[k] = edt(~core) - edt(core)
    scale = 1.0 + bias_field(rng, labelled.shape, 0.25)
    return np.where(depth > 0, depth * scale, depth).astype(np.float32)


def _draw_warp(rng: np.random.Generator, labels: Image, body: np.ndarray, pancreas: np.ndarray,
               spacing: Optional[Sequence[float]]) -> tuple[_Warp, dict]:
    """Random affine and elastic warp, and the output grid covering the warped ``body`` (bool ``(K, J, I)`` on
    ``labels``' grid) plus 10 mm, cropped with :data:`CROP` odds to a random box holding the warped
    ``pancreas`` with 10 mm to spare. Returns the warp and its JSON-ready record."""
    if spacing is None:
        xy = float(rng.uniform(*SPACING_MM))
        out_spacing = np.array([xy, xy, rng.uniform(*Z_SPACING_MM)])
    else:
        out_spacing = np.asarray(spacing, float).reshape(-1)
        if out_spacing.shape != (3,) or not np.all(np.isfinite(out_spacing)) or np.any(out_spacing <= 0):
            raise InputError(f"spacing must be three positive numbers (i, j, k) mm, got {spacing!r}")
    scale = rng.uniform(*SCALE, 3)
    angle = float(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    shear = np.eye(3)
    shear[[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]] = rng.uniform(-SHEAR, SHEAR, 6)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    forward = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ shear @ np.diag(scale)
    elastic = float(rng.uniform(*ELASTIC_MM))
    control = rng.standard_normal((3, 4, 4, 4))
    control *= elastic / np.linalg.norm(control, axis=0).max()
    src_spacing = labels.spacing
    centre = src_spacing * (np.array(labels.shape[::-1]) - 1) / 2

    def warped_box(mask: np.ndarray, spare: float) -> tuple[np.ndarray, np.ndarray]:
        kji = np.argwhere(mask)
        corners = np.array(np.meshgrid(*zip(kji.min(0)[::-1], kji.max(0)[::-1]), indexing="ij")).reshape(3, -1)
        q = centre[:, None] + forward @ (corners * src_spacing[:, None] - centre[:, None])
        return q.min(1) - spare, q.max(1) + spare

    lo, hi = warped_box(body, 10.0 + elastic)
    lo[2], hi[2] = lo[2] + 10.0 + elastic, hi[2] - 10.0 - elastic
    cropped = bool(rng.random() < CROP)
    if cropped:
        keep_lo, keep_hi = warped_box(pancreas, 10.0 + elastic)
        keep_lo, keep_hi = np.maximum(keep_lo, lo), np.minimum(keep_hi, hi)
        new_lo = rng.uniform(lo, np.minimum(keep_lo, lo + 0.4 * (hi - lo)))
        hi = rng.uniform(np.maximum(keep_hi, hi - 0.4 * (hi - lo)), hi)
        lo = new_lo
    shape = tuple(int(v) for v in np.maximum(np.floor((hi - lo) / out_spacing).astype(int) + 1, [32, 32, 1])[::-1])
    warp = _Warp(np.linalg.inv(forward), centre, control.astype(np.float32), lo, out_spacing, shape, src_spacing)
    record = {"scale": np.round(scale, 3).tolist(), "rotation_deg": round(angle, 2),
              "shear": np.round(shear[[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]], 3).tolist(),
              "elastic_mm": round(elastic, 2), "crop": cropped}
    return warp, record


def _values(rng: np.random.Generator, tissues: set[str], contents: Mapping[str, str]
            ) -> tuple[dict[str, tuple[float, float]], dict]:
    """The case's ``{tissue: (arterial_hu, venous_hu)}``: enhancing tissues of ``tissues`` from
    :func:`.randomise.tissue_values` (:data:`TYPICAL_HU`), fixed ones (:data:`FIXED_HU`), then ``content:NAME``
    fluid of 5-20 HU for each gut organ whose content is not gas. Returns it and the dose record."""
    values, record = tissue_values(rng, {t: hu for t, hu in TYPICAL_HU.items() if t in tissues})
    for tissue, (mean, sd) in FIXED_HU.items():
        if tissue in tissues:
            hu = float(mean + rng.normal(0.0, sd))
            values[tissue] = (hu, hu)
    for name, content in contents.items():
        if content != "gas":
            hu = float(rng.uniform(*FLUID_HU))
            values[f"content:{name}"] = (hu, hu)
    return values, record


def _canvas(code: np.ndarray, names: Mapping[int, str], values: Mapping[str, tuple[float, float]],
            rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """Coded canvas ``(K, J, I)`` float32 of the output codes: tissue codes (``CODE_BASE - index`` into
    ``values``) for coded tissues and gut fluid, plain HU for air and gas (-1000) and bone (one HU of
    :data:`BONE_HU` plus a trabecular texture of :data:`BONE_TEXTURE_HU` sd and 1 mm correlation)."""
    order = {tissue: CODE_BASE - n for n, tissue in enumerate(values)}
    lut = {0: order["fat"], VISCERAL: order["fat"], SUBCUT: order["fat"], WALL: order["muscle"], AIR: AIR_HU,
           GAS: AIR_HU}
    for c, name in names.items():
        tissue = tissue_of(name)
        lut[c] = AIR_HU if tissue == "gas" else np.nan if tissue == "bone" else order[tissue]
        if f"content:{name}" in order:
            lut[CONTENT + c] = order[f"content:{name}"]
    table = np.full(max(lut) + 1, order["fat"], np.float32)
    for c, value in lut.items():
        table[c] = value
    hu = table[code]
    bone = np.isnan(hu)
    if bone.any():
        box = ndimage.find_objects(bone.astype(np.int8))[0]
        texture = smooth_noise(rng, hu[box].shape, 1.0 / grid.spacing[::-1])
        level, sd = rng.uniform(*BONE_HU), rng.uniform(*BONE_TEXTURE_HU)
        hu[box] = np.where(bone[box], level + sd * texture, hu[box])
    return hu


def _tumour(grid: Grid, rng: np.random.Generator, styler: np.random.Generator, pancreas: np.ndarray,
            allowed: np.ndarray, values: dict, kind: str) -> tuple[np.ndarray, list[dict]]:
    """For a kind with a tumour: one lobulated or spheroid blob (:data:`.shapes.LESION_SHAPES`) of 5-40 mm
    centred on a pancreas voxel at least half the pancreas's largest depth inside it, kept within ``allowed``
    (pancreas and visceral fat, bool ``(K, J, I)``; it may bulge into the fat) and connected to its centre.
    Adds ``values["tumour"]`` (:func:`.randomise.tumour_contrast`). Returns the bool mask and its record."""
    mask = np.zeros(grid.shape, bool)
    if "tumour" not in kind:
        return mask, []
    box = ndimage.find_objects(pancreas.astype(np.int8))[0]
    depth = ndimage.distance_transform_edt(np.pad(pancreas[box], 1), sampling=grid.spacing[::-1])[1:-1, 1:-1, 1:-1]
    candidates = np.argwhere(depth >= 0.5 * depth.max()) + [s.start for s in box]
    kji = candidates[int(rng.integers(len(candidates)))]
    diameter, shape = float(rng.uniform(5.0, 40.0)), ("lobulated", "spheroid")[int(rng.integers(0, 2))]
    centre = (kji[::-1] - (np.array(grid.shape[::-1]) - 1) / 2) * grid.spacing
    blob = LESION_SHAPES[shape](grid, centre, diameter / 2, rng).within(allowed)
    parts, _ = ndimage.label(blob.mask, ndimage.generate_binary_structure(3, 2))
    local = tuple(kji - [s.start for s in blob.box])
    region = Region(blob.box, parts == parts[local]) if blob.mask[local] else Region(blob.box, blob.mask)
    mask[region.box] = region.mask
    mask[tuple(kji)] = True
    contrast, phase, hu = tumour_contrast(styler, values["pancreas"])
    values["tumour"] = (float(hu[0]), float(hu[1]))
    where = np.argwhere(mask)
    return mask, [{"id": 1, "centre_lps": grid.to_lps(centre)[0].round(3).tolist(), "diameter_mm": round(diameter, 2),
                   "shape": shape, "hu_arterial": round(float(hu[0]), 1), "hu_venous": round(float(hu[1]), 1),
                   "contrast": contrast, "conspicuous_phase": phase,
                   "volume_mm3": round(len(where) * float(np.prod(grid.spacing)), 3),
                   "box_ijk": [where.min(0)[::-1].tolist(), where.max(0)[::-1].tolist()]}]


def _duct(grid: Grid, rng: np.random.Generator, allowed: np.ndarray, values: dict
          ) -> tuple[Optional[np.ndarray], Optional[dict]]:
    """Dilated main duct of 4-8 mm (0-20 HU, both phases; adds ``values["duct"]``): a tube through the centroids
    of 8 mm slabs of the pancreas along its principal axis (10-90 % of its length), kept within ``allowed``
    (pancreas less tumour, bool ``(K, J, I)``). Returns the mask and record, or ``(None, None)`` when empty."""
    kji = np.argwhere(allowed)
    xyz = (kji[:, ::-1] - (np.array(grid.shape[::-1]) - 1) / 2) * grid.spacing
    mean = xyz.mean(0)
    axis = np.linalg.svd(xyz - mean, full_matrices=False)[2][0]
    along = (xyz - mean) @ axis
    edges = np.arange(*np.quantile(along, [0.1, 0.9]), 8.0)
    path = np.array([xyz[(along >= e) & (along < e + 8.0)].mean(0) for e in edges
                     if np.any((along >= e) & (along < e + 8.0))])
    diameter = float(rng.uniform(*DUCT_MM))
    if len(path) < 2:
        log.warning("labelmap phantom: pancreas too short for a duct")
        return None, None
    region = tube(grid, path, diameter / 2).within(allowed)
    if not region.mask.any():
        return None, None
    hu = float(rng.uniform(0.0, 20.0))
    values["duct"] = (hu, hu)
    return region.full(grid.shape), {"diameter_mm": round(diameter, 2), "hu": round(hu, 1)}
