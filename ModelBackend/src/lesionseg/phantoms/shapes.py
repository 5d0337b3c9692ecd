"""Building blocks of the synthetic phantoms: a grid, shapes drawn in millimetres, and a canvas.

Shapes are drawn in *grid millimetres*: ``(x, y, z) = spacing * ((i, j, k) - (size - 1) / 2)``, i.e. mm
along the image's own i, j, k axes measured from the centre of the grid. The image's origin and direction
then place the phantom in LPS space, so anatomy does not depend on the orientation chosen. With identity
direction +x is the patient's left, +y posterior and +z superior (LPS). Every shape is evaluated only
inside its own bounding box (a :class:`Region`), which keeps a phantom at 10^6 voxels well under a second.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..geometry import index_box_to_world, index_to_world
from ..image import Image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grid:
    """Voxel grid of a phantom: ``shape`` ``(K, J, I)``, ``spacing`` ``(i, j, k)`` mm, LPS placement."""

    shape: tuple[int, int, int]
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray

    @classmethod
    def create(cls, shape: Sequence[int], spacing: Sequence[float], centre_lps: Sequence[float],
               origin: Optional[Sequence[float]] = None, direction: Optional[np.ndarray] = None) -> "Grid":
        """Validate the arguments; without ``origin`` the grid centre is placed at ``centre_lps``."""
        shape_t = tuple(int(s) for s in shape)
        if len(shape_t) != 3 or shape_t[0] < 1 or min(shape_t[1:]) < 32:
            raise InputError(f"phantom shape must be (K >= 1, J >= 32, I >= 32), got {tuple(shape)}")
        probe = Image(np.zeros((1, 1, 1)), spacing, (0, 0, 0), np.eye(3) if direction is None else direction)
        size = np.array(shape_t[::-1], dtype=np.float64)
        if origin is None:
            origin = np.asarray(centre_lps, float) - probe.direction @ (probe.spacing * (size - 1) / 2)
        placed = Image(np.zeros((1, 1, 1)), probe.spacing, origin, probe.direction)
        return cls(shape_t, placed.spacing, placed.origin, placed.direction)

    @property
    def half_mm(self) -> np.ndarray:
        """Half the field of view along x, y, z in mm (centre of the grid to the outer voxel faces)."""
        return self.spacing * np.array(self.shape[::-1]) / 2

    def index(self, xyz: np.ndarray) -> np.ndarray:
        """Continuous ``(i, j, k)`` indices of ``(..., 3)`` grid-mm points."""
        return np.asarray(xyz, float) / self.spacing + (np.array(self.shape[::-1]) - 1) / 2

    def slices(self, lo_xyz: np.ndarray, hi_xyz: np.ndarray) -> Optional[tuple[slice, slice, slice]]:
        """``[k, j, i]`` slices of the voxels whose centres lie in the grid-mm box (None when empty)."""
        lo = np.maximum(np.ceil(self.index(lo_xyz) - 1e-9).astype(int), 0)
        hi = np.minimum(np.floor(self.index(hi_xyz) + 1e-9).astype(int), np.array(self.shape[::-1]) - 1)
        if np.any(hi < lo):
            return None
        return tuple(slice(lo[a], hi[a] + 1) for a in (2, 1, 0))  # type: ignore[return-value]

    def coords(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid-mm ``x``, ``y``, ``z`` of the voxels in ``box``, shaped to broadcast over ``[k, j, i]``."""
        centre = (np.array(self.shape[::-1]) - 1) / 2
        x = (np.arange(box[2].start, box[2].stop) - centre[0]) * self.spacing[0]
        y = (np.arange(box[1].start, box[1].stop) - centre[1]) * self.spacing[1]
        z = (np.arange(box[0].start, box[0].stop) - centre[2]) * self.spacing[2]
        return x[None, None, :], y[None, :, None], z[:, None, None]

    def to_lps(self, xyz: np.ndarray) -> np.ndarray:
        """LPS mm of ``(N, 3)`` grid-mm points."""
        return index_to_world(self.image(np.zeros((1, 1, 1))), self.index(np.reshape(xyz, (-1, 3))))

    def image(self, array: np.ndarray, **meta) -> Image:
        """An :class:`Image` with this grid's geometry (``array`` shaped ``shape``, or a probe)."""
        return Image(array, self.spacing, self.origin, self.direction, meta)


@dataclass(frozen=True)
class Region:
    """A shape on a grid: ``[k, j, i]`` slices of its bounding box and the bool mask inside them."""

    box: tuple[slice, slice, slice]
    mask: np.ndarray

    def full(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The region as a bool array of the whole grid."""
        out = np.zeros(shape, bool)
        out[self.box] = self.mask
        return out

    def within(self, allowed: np.ndarray) -> "Region":
        """The part of the region where the whole-grid bool array ``allowed`` is true."""
        return Region(self.box, self.mask & allowed[self.box])

    def touches_border(self, shape: tuple[int, int, int], axes: Sequence[int] = (0, 1, 2)) -> bool:
        """True when the region's bounding box reaches the first or last voxel along any ``[k, j, i]`` axis."""
        return any(self.box[a].start == 0 or self.box[a].stop == shape[a] for a in axes)


def _empty_region() -> Region:
    return Region((slice(0, 0), slice(0, 0), slice(0, 0)), np.zeros((0, 0, 0), bool))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix drawn from ``rng``."""
    return Rotation.from_quat(rng.normal(size=4)).as_matrix()


def ellipsoid(grid: Grid, centre: Sequence[float], semi_axes: Sequence[float],
              rotation: Optional[np.ndarray] = None) -> Region:
    """Solid ellipsoid: grid-mm ``centre``, ``semi_axes`` in mm, ``rotation`` columns = its axes.

    A very long semi-axis gives an elliptic cylinder (bounding boxes are clipped to the grid).
    """
    c = np.asarray(centre, float)
    a = np.asarray(semi_axes, float)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, float)
    half = np.sqrt(((rot * a[None, :]) ** 2).sum(axis=1))
    box = grid.slices(c - half, c + half)
    if box is None:
        return _empty_region()
    x, y, z = grid.coords(box)
    d = [x - c[0], y - c[1], z - c[2]]
    total = 0.0
    for axis in range(3):
        u = d[0] * rot[0, axis] + d[1] * rot[1, axis] + d[2] * rot[2, axis]
        total = total + (u / a[axis]) ** 2
    return Region(box, np.broadcast_to(total <= 1.0, tuple(s.stop - s.start for s in box)).copy())


def union(grid: Grid, regions: Sequence[Region]) -> Region:
    """One region covering all ``regions`` (bounding box of their boxes)."""
    regions = [r for r in regions if r.mask.size]
    if not regions:
        return _empty_region()
    box = tuple(slice(min(r.box[a].start for r in regions), max(r.box[a].stop for r in regions))
                for a in range(3))
    mask = np.zeros(tuple(s.stop - s.start for s in box), bool)
    for r in regions:
        mask[tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(r.box, box))] |= r.mask
    return Region(box, mask)  # type: ignore[arg-type]


def lobulated(grid: Grid, centre: Sequence[float], radius: float, rng: np.random.Generator,
              lobes: int = 3) -> Region:
    """Lobulated blob inside the sphere of ``radius`` mm around ``centre``: a random spheroid core plus
    ``lobes`` smaller spheres bulging from its surface. The core always contains ``centre``."""
    c = np.asarray(centre, float)
    core_axes = radius * rng.uniform(0.6, 0.8, size=3)
    parts = [ellipsoid(grid, c, core_axes, random_rotation(rng))]
    for _ in range(lobes):
        v = rng.normal(size=3)
        r = radius * rng.uniform(0.3, 0.45)
        parts.append(ellipsoid(grid, c + v / np.linalg.norm(v) * (radius - r), (r, r, r)))
    return union(grid, parts)


def spheroid(grid: Grid, centre: Sequence[float], radius: float, rng: np.random.Generator) -> Region:
    """Randomly oriented ellipsoid whose longest semi-axis is ``radius`` mm (others 70-100 % of it)."""
    axes = radius * np.array([1.0, rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0)])
    return ellipsoid(grid, centre, axes, random_rotation(rng))


def tube(grid: Grid, polyline: np.ndarray, radius: float | Sequence[float]) -> Region:
    """Tube of ``radius`` mm (one value, or one per vertex, linearly interpolated) along ``(N, 3)``
    grid-mm ``polyline`` vertices; each segment is evaluated in its own bounding box."""
    pts = np.asarray(polyline, float).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radius, float), (len(pts),))
    parts = []
    for p, q, rp, rq in zip(pts[:-1], pts[1:], radii[:-1], radii[1:]):
        rmax = max(rp, rq)
        box = grid.slices(np.minimum(p, q) - rmax, np.maximum(p, q) + rmax)
        if box is None:
            continue
        x, y, z = grid.coords(box)
        seg = q - p
        t = ((x - p[0]) * seg[0] + (y - p[1]) * seg[1] + (z - p[2]) * seg[2]) / max(seg @ seg, 1e-12)
        t = np.clip(t, 0.0, 1.0)
        dist2 = (x - p[0] - t * seg[0]) ** 2 + (y - p[1] - t * seg[1]) ** 2 + (z - p[2] - t * seg[2]) ** 2
        parts.append(Region(box, dist2 <= (rp + t * (rq - rp)) ** 2))
    return union(grid, parts)


LESION_SHAPES = {"lobulated": lobulated, "spheroid": spheroid}
"""Lesion shape builders by name: ``builder(grid, centre_mm, radius_mm, rng) -> Region``."""


def blur_mm(volume: np.ndarray, spacing: Sequence[float], sigma_mm: float | Sequence[float]) -> np.ndarray:
    """Gaussian blur of a ``(K, J, I)`` array with ``sigma_mm`` (one value or per ``(x, y, z)``) in mm."""
    sigma = np.broadcast_to(np.asarray(sigma_mm, float), (3,)) / np.asarray(spacing, float)
    return ndimage.gaussian_filter(volume, sigma=sigma[::-1], mode="nearest")


@dataclass
class Canvas:
    """Intensities, organ masks and lesion labels of a phantom being drawn on ``grid``.

    ``hu`` is a float32 ``(K, J, I)`` array (starts as air, -1000), ``organs`` maps names to whole-grid bool
    masks, ``label`` is the uint8 lesion label array and ``lesions`` the records that go into ``info``.
    """

    grid: Grid
    rng: np.random.Generator
    hu: np.ndarray = field(init=False)
    label: np.ndarray = field(init=False)
    organs: dict = field(default_factory=dict)
    lesions: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hu = np.full(self.grid.shape, -1000.0, np.float32)
        self.label = np.zeros(self.grid.shape, np.uint8)

    def paint(self, region: Region, hu: float, organ: Optional[str] = None) -> Region:
        """Set ``hu`` inside ``region``; with ``organ``, also add the region to that organ's mask."""
        if region.mask.size:
            self.hu[region.box][region.mask] = hu
            if organ is not None:
                mask = self.organs.setdefault(organ, np.zeros(self.grid.shape, bool))
                mask[region.box] |= region.mask
        return region

    def remove_from_organs(self, region: Region, keep: Sequence[str] = ()) -> None:
        """Take ``region`` out of every organ mask except those named in ``keep`` (drawn over them)."""
        for name, mask in self.organs.items():
            if name not in keep and region.mask.size:
                mask[region.box] &= ~region.mask

    def place_lesion(self, organ: str, diameter_mm: float, hu: float, kind: str, shape: str = "lobulated",
                     gap_mm: float = 3.0, tries: int = 60) -> Optional[dict]:
        """Draw one lesion of about ``diameter_mm`` fully inside ``organ`` (with a one-voxel rim), at least
        ``gap_mm`` from other lesions, and label it 1. The diameter shrinks by 5 % after each failed try
        (down to half). Returns the lesion's record, or None (logged) when it does not fit."""
        if shape not in LESION_SHAPES:
            raise InputError(f"lesion shape must be one of {sorted(LESION_SHAPES)}, got {shape!r}")
        if organ not in self.organs:  # the field of view does not reach it (e.g. a short whole-body field)
            return None
        candidates = np.flatnonzero(self.organs[organ])
        if candidates.size == 0:
            return None
        thin = self.grid.half_mm[2] * 2 < diameter_mm + 2 * self.grid.spacing[2]
        gap = np.ceil(gap_mm / self.grid.spacing[::-1]).astype(int)
        rim = ndimage.generate_binary_structure(3, 1)
        if thin:  # the lesion may be cut by the first/last slice: check the rim in-plane only
            rim[0] = rim[2] = False
        for attempt in range(tries):
            d = diameter_mm * max(0.95 ** attempt, 0.5)
            kji = np.unravel_index(self.rng.choice(candidates), self.grid.shape)
            centre = (np.array(kji[::-1]) - (np.array(self.grid.shape[::-1]) - 1) / 2) * self.grid.spacing
            region = _part_with(LESION_SHAPES[shape](self.grid, centre, d / 2, self.rng), np.array(kji))
            if region is None or region.touches_border(self.grid.shape, (1, 2) if thin else (0, 1, 2)):
                continue
            grown = ndimage.binary_dilation(np.pad(region.mask, 1), rim)
            big = tuple(slice(s.start - 1, s.stop + 1) for s in region.box)
            if not np.all(_padded(self.organs[organ], big)[grown]):
                continue
            near = tuple(slice(max(s.start - g, 0), s.stop + g) for s, g in zip(region.box, gap))
            if self.label[near].any():
                continue
            self.paint(region, hu)
            self.label[region.box][region.mask] = 1
            return self._record(region, centre, d, hu, kind, shape, organ)
        log.warning("phantom: no room for a %.1f mm %s in %s", diameter_mm, kind, organ)
        return None

    def _record(self, region: Region, centre: np.ndarray, diameter: float, hu: float, kind: str,
                shape: str, organ: str) -> dict:
        where = np.argwhere(region.mask)
        lo_kji = where.min(axis=0) + [s.start for s in region.box]
        hi_kji = where.max(axis=0) + [s.start for s in region.box]
        box = index_box_to_world(self.grid.image(np.zeros((1, 1, 1))), lo_kji[::-1], hi_kji[::-1])
        record = {
            "id": len(self.lesions) + 1, "kind": kind, "shape": shape, "organ": organ,
            "centre_lps": self.grid.to_lps(centre)[0].round(3).tolist(),
            "box_lps": [(np.floor(box.lo * 1000) / 1000).tolist(), (np.ceil(box.hi * 1000) / 1000).tolist()],
            "box_ijk": [lo_kji[::-1].tolist(), hi_kji[::-1].tolist()],
            "diameter_mm": round(float(diameter), 2), "hu": round(float(hu), 1),
            "volume_ml": round(float(region.mask.sum() * np.prod(self.grid.spacing) / 1000), 4),
        }
        self.lesions.append(record)
        return record

    def finish(self, name: str, seed: int, label_names: dict, blur_sigma_mm: Sequence[float],
               noise_hu: float) -> tuple[Image, Image, dict]:
        """Blur (partial volume), add Gaussian noise, round to int16 HU; return ``(image, label, info)``."""
        hu = blur_mm(self.hu, self.grid.spacing, blur_sigma_mm)
        hu += self.rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
        ct = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
        info = {
            "phantom": name, "seed": seed, "shape": list(self.grid.shape),
            "spacing": self.grid.spacing.tolist(), "origin": self.grid.origin.tolist(),
            "direction": self.grid.direction.tolist(), "labels": label_names, "lesions": self.lesions,
        }
        return (self.grid.image(ct, units="HU", phantom=name), self.grid.image(self.label.copy()), info)


def _padded(mask: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """``mask[box]`` where ``box`` may extend one voxel past the grid; outside counts as False."""
    padded = np.pad(mask, 1)
    return padded[tuple(slice(s.start + 1, s.stop + 1) for s in box)]


def _part_with(region: Region, kji: np.ndarray) -> Optional[Region]:
    """The 18-connected part of ``region`` holding voxel ``kji`` (None if it is not in the region), so a
    lesion is one component even where a small lobe is voxelised apart from the core."""
    local = kji - [s.start for s in region.box]
    if np.any(local < 0) or np.any(local >= region.mask.shape) or not region.mask[tuple(local)]:
        return None
    parts, _ = ndimage.label(region.mask, ndimage.generate_binary_structure(3, 2))
    return Region(region.box, parts == parts[tuple(local)])
