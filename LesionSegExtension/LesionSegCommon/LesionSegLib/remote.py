"""Where the models run: this computer, or a LesionSeg server (``lesionseg serve``) -- the "Run on" setting of every
panel and of the "Lesion GrabCut/CRF" effect (pure Python; no ``slicer``/``qt``; the backend imported lazily).

The setting lives in Slicer's application settings (``LesionSeg/RunOn``, ``LesionSeg/ServerURL``,
``LesionSeg/ServerToken``; :func:`load` / :func:`save` take a ``QSettings``-like object) and, for the running
session, in :func:`current`, which the main thread sets and the worker thread reads. With a server:

* interactive clicks (Box, RECIST) build a :class:`lesionseg.client.RemoteSegmenter` instead of a local model
  (:func:`build_remote`, called by :func:`LesionSegLib.interactive.build_with_backend`); the volume is uploaded
  once and reused for every prompt, and by every method on the same volume;
* whole-volume runs (PET/CT, small lesions) call ``lesionseg predict ... --server URL --token-file F``
  (:func:`command_arguments`); the token goes through a private file, never the command line. S4C screening
  (``lesionseg screen``) has no server mode yet and runs on this computer;
* the refine effect sends the mask and strokes to the server's ``/refine`` (:func:`refine_on_server`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

logger = logging.getLogger(__name__)

SETTINGS = {"where": "LesionSeg/RunOn", "url": "LesionSeg/ServerURL", "token": "LesionSeg/ServerToken"}
"""Application-settings keys of the "Run on" setting."""
WHERE = ("local", "server")
"""Values of ``LesionSeg/RunOn``, in the order of the panel's combo box."""
WHERE_LABELS = ("this computer", "a LesionSeg server")
DEFAULT_URL = "http://127.0.0.1:8765"
REMOTE_COMMANDS = ("predict",)
"""Backend commands that run on the server in server mode (others, e.g. ``screen`` and ``prior``, run here)."""
TOKEN_FILE = ".lesionseg-server-token"


@dataclass(frozen=True)
class RunTarget:
    """Where models run: ``where`` ``"local"`` or ``"server"``, the server's ``url`` and ``token``."""

    where: str = "local"
    url: str = ""
    token: str = ""

    def __post_init__(self) -> None:
        if self.where not in WHERE:
            raise ValueError(f"run on must be one of {', '.join(WHERE)}, not {self.where!r}")

    @property
    def server(self) -> bool:
        return self.where == "server"

    @property
    def key(self) -> Optional[tuple]:
        """What the model cache keys on: None here, ``(url, hash of the token)`` for a server."""
        if not self.server:
            return None
        return (self.url.strip(), hashlib.sha256(self.token.encode()).hexdigest()[:16])

    def describe(self) -> str:
        return f"the LesionSeg server at {self.url}" if self.server else "this computer"

    def check(self) -> "RunTarget":
        """``self``; ValueError when a server is chosen without a URL."""
        if self.server and not self.url.strip():
            raise ValueError("Run on: a LesionSeg server was chosen but no server URL is set "
                             f"(e.g. {DEFAULT_URL} for an SSH tunnel)")
        return self


_current = RunTarget()
_listeners: list = []
_lock = threading.Lock()


def current() -> RunTarget:
    """The setting in force for this Slicer session (thread-safe to read)."""
    return _current


def set_current(target: RunTarget) -> None:
    """Set the setting in force (main thread) and tell the shown "Run on" sections (:func:`add_listener`)."""
    global _current
    with _lock:
        _current = target
        alive = [(ref, ref()) for ref in _listeners]
        _listeners[:] = [ref for ref, listener in alive if listener is not None]
    for _, listener in alive:
        if listener is not None:
            listener(target)


def _ref(listener: Callable[[RunTarget], None]) -> Callable[[], Any]:
    """A weak reference to a bound method (a section that is gone stops listening), a plain one otherwise."""
    return weakref.WeakMethod(listener) if hasattr(listener, "__self__") else (lambda: listener)


def add_listener(listener: Callable[[RunTarget], None]) -> None:
    """Call ``listener(target)`` whenever :func:`set_current` runs (held weakly when it is a bound method)."""
    with _lock:
        _listeners.append(_ref(listener))


def listening(listener: Callable[[RunTarget], None]) -> bool:
    with _lock:
        return any(ref() == listener for ref in _listeners)


def remove_listener(listener: Callable[[RunTarget], None]) -> None:
    with _lock:
        _listeners[:] = [ref for ref in _listeners if ref() != listener]


def load(settings: Any) -> RunTarget:
    """The setting stored in ``settings`` (``value(key, default)``; anything unknown reads as this computer)."""
    where = str(settings.value(SETTINGS["where"], "local") or "local")
    return RunTarget(where if where in WHERE else "local", str(settings.value(SETTINGS["url"], "") or ""),
                     str(settings.value(SETTINGS["token"], "") or ""))


def save(settings: Any, target: RunTarget) -> None:
    """Store ``target`` in ``settings`` (``setValue(key, value)``)."""
    settings.setValue(SETTINGS["where"], target.where)
    settings.setValue(SETTINGS["url"], target.url)
    settings.setValue(SETTINGS["token"], target.token)


def connection(target: Optional[RunTarget] = None) -> Any:
    """The shared :class:`lesionseg.client.Connection` of the chosen server."""
    from lesionseg.client import connect

    target = (target or current()).check()
    return connect(target.url, target.token or None)


def build_remote(method: str, options: Any = None, target: Optional[RunTarget] = None) -> Any:
    """``RemoteSegmenter(url, method, token, options)`` on the chosen server (it connects and checks the API)."""
    from lesionseg.client import RemoteSegmenter

    target = (target or current()).check()
    return RemoteSegmenter(target.url, method, token=target.token or None, options=options,
                           connection=connection(target))


def server_methods(prompt: str, target: Optional[RunTarget] = None) -> list[str]:
    """The server's methods taking ``prompt`` (``"box"``, ``"recist"``, ``"none"``) whose models it has, sorted."""
    info = connection(target).info()
    return sorted(m["name"] for m in info["methods"] if m["prompt"] == prompt and m["ready"])


def summary(info: dict) -> str:
    """What "Test connection" shows: version, device, the methods ready per prompt kind, those without a model."""
    ready: dict = {}
    for m in info["methods"]:
        if m["ready"]:
            ready.setdefault(m["prompt"], []).append(m["name"])
    kinds = {"box": "box", "recist": "RECIST", "none": "automatic"}
    lines = [f"LesionSeg {info['server_version']} (API {info['api_version']}) on {info['device_name']} "
             f"({info['device']})"]
    lines += [f"{kinds.get(kind, kind)}: {', '.join(sorted(names))}" for kind, names in sorted(ready.items())]
    missing = sorted(m["name"] for m in info["methods"] if not m["ready"])
    if missing:
        lines.append(f"no model on the server: {', '.join(missing)}")
    return "\n".join(lines)


def check_connection_job(report: Callable[[str], None], target: RunTarget) -> str:
    """A worker task: connect to ``target`` (fresh, with a short timeout) and return :func:`summary`."""
    from lesionseg.client import server_info

    target = target.check()
    report(f"Connecting to {target.url}...")
    return summary(server_info(target.url, target.token or None))


def command_arguments(args: Sequence[str], folder: Path, target: Optional[RunTarget] = None) -> list[str]:
    """A backend command's arguments for the chosen place: unchanged on this computer (and for commands other than
    :data:`REMOTE_COMMANDS`); for a server, without ``--device``/``--weights`` (the server's own) and with
    ``--server URL`` and, when there is a token, ``--token-file`` (written into the run's ``folder``, mode 0600)."""
    target = target or current()
    args = [str(a) for a in args]
    if not target.server or not args or args[0] not in REMOTE_COMMANDS:
        if target.server and args:
            logger.info("'lesionseg %s' runs on this computer (it has no server mode)", args[0])
        return args
    target.check()
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--device", "--weights"):
            skip = True
        else:
            out.append(arg)
    out += ["--server", target.url]
    if target.token:
        path = Path(folder) / TOKEN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(target.token + "\n")
        out += ["--token-file", str(path)]
    return out


def refine_settings(settings: Any) -> dict:
    """The effect's :class:`LesionSegLib.refine.RefineSettings` as the settings of ``lesionseg refine``."""
    values = dict(vars(settings))
    values["radius_mm"] = values.pop("stroke_radius_mm")
    return values


def refine_on_server(image: Any, mask: Any, fg_points: Any, bg_points: Any, settings: Any,
                     target: Optional[RunTarget] = None) -> tuple[Any, tuple[str, ...]]:
    """``(uint8 (K, J, I) mask, notes)`` of GrabCut + DenseCRF on the server; DenseCRF is left out, with a note,
    when the server does not have it."""
    import numpy as np
    from lesionseg.client import refine_remote

    conn = connection(target)
    values, notes = refine_settings(settings), ()
    if values["use_crf"] and not conn.info()["refine"]["densecrf"]:
        values["use_crf"] = False
        notes = ("DenseCRF (pydensecrf2) is not installed on the server, so only GrabCut ran",)
    label = refine_remote(conn, image, mask, fg_points, bg_points, values)
    return np.asarray(label.array, dtype=np.uint8), notes
