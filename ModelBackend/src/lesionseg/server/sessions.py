"""Sessions: an uploaded image (or images) kept between prompts, with one warm segmenter per method.

A session owns a private temporary folder (``tempfile.mkdtemp``: mode 0700) holding its uploads under names the
server chose; the folder goes with the session. The store removes sessions unused for ``session_ttl_s`` and, beyond
``max_sessions`` or the memory budget, the least recently used ones that no request is using. The memory of a
session is an estimate: its images plus the arrays, tensors and network weights its segmenters hold
(:func:`state_bytes`).

Every method of :class:`Session` that builds, primes or runs a segmenter is called on the device queue's one thread
(:mod:`lesionseg.server.queue`), so segmenters are never used by two threads at once. No fastapi here.
"""
from __future__ import annotations

import json
import logging
import secrets
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..image import Image
from ..options import Options
from ..registry import MethodSpec, build, load_object
from ..segmenter import Segmenter
from .config import ServerConfig
from .errors import ImageCountError, SessionNotFound, TooLarge

log = logging.getLogger(__name__)
MB = 1024 * 1024


def image_count_error(spec: MethodSpec, given: int) -> Optional[ImageCountError]:
    """The error ``lesionseg predict`` gives for ``given`` images (None when the count fits the method)."""
    needed, total = len(spec.inputs) - spec.optional_inputs, len(spec.inputs)
    if needed <= given <= total:
        return None
    return ImageCountError(f"{spec.name} takes {needed}{f' to {total}' if total > needed else ''} image(s) "
                           f"({', '.join(spec.inputs)}); got {given}")


def describe_image(image: Image) -> dict:
    """Geometry of an image for a JSON answer: shape ``(K, J, I)``, spacing/origin ``(i, j, k)`` mm, direction
    (3x3, columns = LPS directions of i, j, k), dtype."""
    return {"shape": list(image.shape), "spacing": image.spacing.tolist(), "origin": image.origin.tolist(),
            "direction": image.direction.tolist(), "dtype": str(image.array.dtype)}


def state_bytes(obj: Any, depth: int = 4, seen: Optional[set] = None) -> int:
    """Estimated bytes held by ``obj``: numpy arrays, images, torch tensors and modules' parameters and buffers,
    found through dicts, lists, tuples and the attributes of LesionSeg's own objects, up to ``depth`` levels (each
    object counted once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth < 0 or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, Image):
        return state_bytes(obj.array, depth, seen)
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.Tensor):
            return int(obj.element_size() * obj.nelement())
        if isinstance(obj, torch.nn.Module):
            return sum(state_bytes(t, 0, seen) for t in (*obj.parameters(), *obj.buffers()))
    if isinstance(obj, dict):
        return sum(state_bytes(v, depth - 1, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(state_bytes(v, depth - 1, seen) for v in obj)
    if not type(obj).__module__.startswith("lesionseg"):
        return 0
    attributes = getattr(obj, "__dict__", None)
    return sum(state_bytes(v, depth - 1, seen) for v in attributes.values()) if attributes else 0


@dataclass
class Session:
    """One upload and what was computed from it.

    Attributes:
        id: unguessable id (``secrets.token_urlsafe``). folder: its private folder.
        files: the uploaded images (files or unpacked DICOM folders) in the order given.
        series: DICOM SeriesInstanceUIDs to read. meta: per-image metadata sent along (e.g. ``{"units": "SUVbw"}``).
        prepared: the images are what ``set_image`` takes (read with ``read_image``, never a method's own reader).
        images: images read, by reader (``""``: :func:`lesionseg.io.read_image`; else the method's name).
        segmenters: the warm segmenter of each method used. primed: methods whose ``set_image`` ran, with the
            key of the images it ran on (:meth:`images_key`).
    """

    id: str
    folder: Path
    files: tuple[Path, ...]
    series: tuple[str, ...] = ()
    meta: tuple[dict, ...] = ()
    prepared: bool = True
    images: dict[str, tuple[Image, ...]] = field(default_factory=dict)
    segmenters: dict[str, Segmenter] = field(default_factory=dict)
    primed: dict[str, str] = field(default_factory=dict)
    last_used: float = 0.0
    busy: int = 0
    nbytes: int = 0

    def images_key(self, spec: Optional[MethodSpec] = None, options: Optional[Options] = None) -> str:
        """Which images ``spec`` with ``options`` reads: ``""`` (read_image) or its reader with those options."""
        if spec is not None and spec.reader is not None and not self.prepared:
            return f"{spec.name}:{json.dumps((options or spec.options()).to_dict(), sort_keys=True)}"
        return ""

    def read_images(self, spec: Optional[MethodSpec] = None, options: Optional[Options] = None) -> tuple[Image, ...]:
        """The session's images for ``spec``: through the method's own reader when it has one and the upload was
        not ``prepared``, else :func:`lesionseg.io.read_image` with the metadata sent along (read once each)."""
        from ..io import read_image

        key = self.images_key(spec, options)
        if key:
            if key not in self.images:
                reader = load_object(spec.reader)
                self.images[key] = tuple(reader(list(self.files), options or spec.options(), list(self.series)))
            return self.images[key]
        if "" not in self.images:
            series = list(self.series) or None
            images = [read_image(path, series) for path in self.files]
            self.images[""] = tuple(img.with_array(img.array, **meta) if meta else img
                                    for img, meta in zip(images, (*self.meta, *[{}] * len(images))))
        return self.images[""]

    def segmenter(self, spec: MethodSpec, options: Options, device: str) -> tuple[Segmenter, float]:
        """The warm segmenter of ``spec`` with ``options``, primed with this session's images; returns it and the
        seconds ``set_image`` took now (0 when it was primed before)."""
        if len(self.files) and (error := image_count_error(spec, len(self.files))) is not None:
            raise error
        seg = self.segmenters.get(spec.name)
        if seg is None:
            seg = build(spec.name, device=device, options=options)
            self.segmenters[spec.name] = seg
        elif seg.options != options:
            seg.set_options(options)
        seconds, key = 0.0, self.images_key(spec, options)
        if self.primed.get(spec.name) != key:
            images = self.read_images(spec, options)
            self.primed.pop(spec.name, None)
            t0 = time.perf_counter()
            seg.set_image(*images)
            seconds = time.perf_counter() - t0
            self.primed[spec.name] = key
        return seg, seconds

    def measure(self) -> int:
        """Re-estimate :attr:`nbytes` (images and segmenters) and return it."""
        seen: set = set()
        self.nbytes = state_bytes(self.images, 4, seen) + state_bytes(self.segmenters, 5, seen)
        return self.nbytes


class SessionStore:
    """The sessions of one server, their folders under one private root, TTL and LRU eviction (thread-safe).

    Args:
        config: limits (``max_sessions``, ``session_ttl_s``, memory budget).
        root: the server's private temporary folder; each session gets a folder inside.
        clock: seconds, monotonic (tests pass a fake).
    """

    def __init__(self, config: ServerConfig, root: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.root, self.clock = config, Path(root), clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def new_folder(self) -> Path:
        """A new private folder for an upload (mode 0700)."""
        import tempfile

        return Path(tempfile.mkdtemp(prefix="session-", dir=self.root))

    def add(self, session: Session) -> None:
        """Keep ``session``, then evict what the limits ask for.

        Raises:
            TooLarge: the session alone needs more than the memory budget (it is not kept; the caller removes
                its folder).
        """
        if session.nbytes > self.config.memory_bytes:
            raise TooLarge(f"the image needs about {session.nbytes / MB:.0f} MB on the server, more than its "
                           f"memory budget of {self.config.memory_mb:g} MB (--memory-mb)")
        with self._lock:
            session.last_used = self.clock()
            self._sessions[session.id] = session
            session.busy += 1
            try:
                self.evict()
            finally:
                session.busy -= 1

    @contextmanager
    def using(self, session_id: str) -> Iterator[Session]:
        """The session ``session_id``, marked in use (not evicted) for the block.

        Raises:
            SessionNotFound: unknown, expired or evicted.
        """
        with self._lock:
            self.evict()
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionNotFound(f"unknown or expired session {session_id!r}: sessions are removed after "
                                      f"{self.config.session_ttl_s:g} s unused, or when the server needs the "
                                      "memory; upload the image again")
            session.busy += 1
            session.last_used = self.clock()
        try:
            yield session
        finally:
            with self._lock:
                session.busy -= 1
                session.last_used = self.clock()
                self.evict()

    def remove(self, session_id: str) -> None:
        """Remove a session and its folder. SessionNotFound: unknown or expired."""
        with self._lock:
            if session_id not in self._sessions:
                raise SessionNotFound(f"unknown or expired session {session_id!r}")
            self._drop(session_id)

    def evict(self) -> list[str]:
        """Remove expired idle sessions, then the least recently used idle ones while the count or the memory is
        over the limits; returns the ids removed."""
        removed = []
        with self._lock:
            now = self.clock()
            for sid, session in list(self._sessions.items()):
                if session.busy == 0 and now - session.last_used > self.config.session_ttl_s:
                    self._drop(sid)
                    removed.append(sid)
            idle = sorted((s for s in self._sessions.values() if s.busy == 0), key=lambda s: s.last_used)
            while idle and (len(self._sessions) > self.config.max_sessions
                            or sum(s.nbytes for s in self._sessions.values()) > self.config.memory_bytes):
                session = idle.pop(0)
                self._drop(session.id)
                removed.append(session.id)
        for sid in removed:
            log.info("session %s removed (expired or evicted)", sid)
        return removed

    def _drop(self, session_id: str) -> None:
        session = self._sessions.pop(session_id)
        session.segmenters.clear()
        session.images.clear()
        shutil.rmtree(session.folder, ignore_errors=True)
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def summary(self) -> dict:
        """``{"sessions": n, "memory_mb": estimated}``."""
        with self._lock:
            return {"sessions": len(self._sessions),
                    "memory_mb": round(sum(s.nbytes for s in self._sessions.values()) / MB, 1)}

    def close(self) -> None:
        """Remove every session and the root folder."""
        with self._lock:
            for sid in list(self._sessions):
                self._drop(sid)
        shutil.rmtree(self.root, ignore_errors=True)


def new_session(folder: Path, files: Sequence[Path], series: Sequence[str] = (), meta: Sequence[dict] = (),
                prepared: bool = True) -> Session:
    """A session with a fresh id over ``files`` in ``folder`` (nothing read yet)."""
    return Session(secrets.token_urlsafe(16), Path(folder), tuple(files), tuple(series), tuple(meta), prepared)
