"""A method running on a LesionSeg server (``lesionseg serve``), used exactly as a local one.

>>> seg = RemoteSegmenter("http://127.0.0.1:8765", "tsfcn", token=None)      # doctest: +SKIP
>>> seg.set_image(lesionseg.read_image("ct.nii.gz"))                         # uploads once  # doctest: +SKIP
>>> label = seg.predict(lesionseg.Box((10, 20, 30), (40, 50, 36)))            # doctest: +SKIP

:class:`RemoteSegmenter` has the protocol of :class:`lesionseg.Segmenter` (``set_image``, ``predict``,
``set_options``, ``image``, ``name``, ``prompt_kind``, ``inputs``), so the CLI (``lesionseg predict --server``), the
Slicer panels and the tests use it as they use ``lesionseg.build(...)``. On connect it reads ``GET /v1/info`` and
checks the API version (saying which side to update). Images travel as MHA (exact double geometry, zlib level 1);
the label comes back as NIfTI and is returned on the caller's own grid after checking it matches. A
:class:`Connection` (one per server URL and token, shared) uploads each image once: segmenters of several methods
on the same image share one server session, and an expired session is uploaded again transparently.

Backend errors come back with the server's message and type (:class:`~lesionseg.errors.InputError`, ...); problems
of the connection itself are :class:`ServerError`. Only the standard library is used (``urllib``), so the client
adds no package to a Slicer installation; the multipart body is encoded by hand for that reason
(:func:`lesionseg.server.wire.multipart`, a few lines).
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import errors
from .errors import InputError, LesionSegError, WeightsError
from .image import Image, require_image
from .options import Options
from .prompts import Prompt
from .server import API_PREFIX, API_VERSION
from .server.wire import GridError, decode_label, encode_image, image_digest, json_meta, multipart

log = logging.getLogger(__name__)
TIMEOUT_S = 3600.0
"""Seconds to wait for one answer (a whole-volume method on a busy CPU server takes minutes)."""
CONNECT_TIMEOUT_S = 10.0
INFO_TTL_S = 300.0
"""The server's description is read again after this long (a restarted server may have other models)."""


class ServerError(LesionSegError):
    """The server cannot be reached, refused the token, speaks another API version, or failed (HTTP 5xx)."""


def normalise_url(url: str) -> str:
    """``http://host:port`` from ``host:port``, ``http://host:port/``, ``.../v1``."""
    url = str(url).strip()
    if not url:
        raise InputError("give the server's URL, e.g. http://127.0.0.1:8765")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"not an http(s) URL: {url}")
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[:-len(API_PREFIX)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def version_problem(server_api: str, client_api: str = API_VERSION) -> Optional[str]:
    """What to update when the server's API version ``server_api`` does not serve this client (None when it does)."""
    try:
        s_major, s_minor = (int(v) for v in str(server_api).split(".")[:2])
        c_major, c_minor = (int(v) for v in client_api.split(".")[:2])
    except ValueError:
        return f"the server reports an unreadable API version {server_api!r}"
    if s_major > c_major:
        return (f"the server speaks API {server_api}, this LesionSeg speaks {client_api}: update LesionSeg on this "
                "computer (pip install -U lesionseg, or update the Slicer extension)")
    if s_major < c_major or s_minor < c_minor:
        return (f"the server speaks API {server_api}, this LesionSeg needs {client_api}: update LesionSeg on the "
                "server and restart lesionseg serve")
    return None


class Connection:
    """One server (URL and token): requests, the server's info, and the sessions of uploaded images (thread-safe).

    Args:
        url: ``http://host:port``. token: the server's token (None: none).
        timeout: seconds to wait for an answer. keep: sessions remembered (the oldest are forgotten, the server
            expires them).
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = TIMEOUT_S, keep: int = 8) -> None:
        self.url, self.token, self.timeout, self.keep = normalise_url(url), token, float(timeout), int(keep)
        self._info: Optional[dict] = None
        self._info_time = 0.0
        self._sessions: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.RLock()
        host = urllib.parse.urlsplit(self.url).hostname or ""
        from .server.config import is_loopback

        # A proxy from the environment must not carry a loopback (SSH tunnel) URL elsewhere.
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, body: Optional[bytes] = None, content_type: Optional[str] = None,
                timeout: Optional[float] = None) -> tuple[bytes, Mapping[str, str]]:
        """``(body, headers)`` of a request to ``/v1<path>``; errors raised as the backend's or :class:`ServerError`."""
        headers = {"Accept": "application/json, application/octet-stream", "X-LesionSeg-API": API_VERSION}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + API_PREFIX + path, data=body, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as answer:
                return answer.read(), answer.headers
        except urllib.error.HTTPError as exc:
            raise self._error(exc.code, exc.read(), path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                raise ServerError(f"the LesionSeg server at {self.url} did not answer within "
                                  f"{timeout or self.timeout:g} s") from None
            raise ServerError(f"cannot reach the LesionSeg server at {self.url} ({reason}); is 'lesionseg serve' "
                              "running there? For a server on another machine listening on its loopback, open an "
                              "SSH tunnel first: ssh -N -L 8765:127.0.0.1:8765 GPU-HOST") from None

    def _error(self, status: int, body: bytes, path: str) -> LesionSegError:
        try:
            data = json.loads(body)
            message, kind, code = data["error"], data.get("type", ""), data.get("code", "")
        except (ValueError, KeyError, TypeError):
            message, kind, code = body[:200].decode("utf-8", "replace").strip(), "", ""
        if status == 401:
            return ServerError(f"the LesionSeg server at {self.url} refused the request: {message}")
        if status == 404 and code == "route":
            return ServerError(f"{self.url} has no LesionSeg API {API_PREFIX} ({path}): it is not a LesionSeg server, "
                               "or one of another major version; check the URL, and update both sides")
        if 400 <= status < 500 or status == 503:
            cls = getattr(errors, kind, None)
            error = (cls if isinstance(cls, type) and issubclass(cls, LesionSegError) else InputError)(message)
            error.status, error.code = status, code
            return error
        return ServerError(f"the LesionSeg server at {self.url} failed (HTTP {status}): {message}")

    def json(self, method: str, path: str, data: Any = None, timeout: Optional[float] = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        answer, _ = self.request(method, path, body, "application/json" if body is not None else None, timeout)
        return json.loads(answer) if answer else None

    def info(self, refresh: bool = False) -> dict:
        """``GET /v1/info`` (kept :data:`INFO_TTL_S`), after checking the API version. ServerError: unreachable or
        incompatible."""
        with self._lock:
            if self._info is None or refresh or time.monotonic() - self._info_time > INFO_TTL_S:
                info = self.json("GET", "/info", timeout=min(self.timeout, CONNECT_TIMEOUT_S))
                problem = version_problem(info.get("api_version", "?"))
                if problem:
                    raise ServerError(f"{self.url}: {problem}")
                self._info, self._info_time = info, time.monotonic()
            return self._info

    def method(self, name: str) -> dict:
        """The server's description of method ``name``. InputError: not on the server; WeightsError: no model."""
        methods = {m["name"]: m for m in self.info()["methods"]}
        if name not in methods:
            raise InputError(f"unknown method {name!r} on the server at {self.url}; it offers: "
                             f"{', '.join(sorted(methods))}")
        if not methods[name]["ready"]:
            raise WeightsError(f"the server at {self.url} has no usable trained model for {name!r} "
                               f"({methods[name]['weights']})")
        return methods[name]

    def upload(self, images: Sequence[Image], method: Optional[str] = None, options: Optional[dict] = None) -> dict:
        """The session of ``images`` (uploaded unless this connection uploaded the same images before); with
        ``method``, its ``set_image`` runs on the server before this returns (unless the session is reused)."""
        digest = image_digest(images)
        with self._lock:
            if digest in self._sessions:
                self._sessions.move_to_end(digest)
                return self._sessions[digest]
            files = [("image", f"image{n}.mha", encode_image(img)) for n, img in enumerate(images)]
            limit = self.info()["limits"]["max_upload_mb"] * (1 << 20)
            if sum(len(f[2]) for f in files) > limit:
                from .server.uploads import too_large

                raise too_large(int(limit))
            fields = [("prepared", "1"), ("meta", json.dumps([json_meta(img.meta) for img in images]))]
            if method is not None:
                fields += [("method", method), ("options", json.dumps(options or {}))]
            body, content_type = multipart(fields, files)
            answer, _ = self.request("POST", "/sessions", body, content_type)
            session = json.loads(answer)
            self._sessions[digest] = session
            while len(self._sessions) > self.keep:
                self._sessions.popitem(last=False)
            return session

    def forget(self, session_id: str) -> None:
        """Forget a session the server no longer has (it will be uploaded again when needed)."""
        with self._lock:
            for digest, session in list(self._sessions.items()):
                if session["session"] == session_id:
                    del self._sessions[digest]

    def close(self) -> None:
        """Delete this connection's sessions on the server (best effort)."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        for session in sessions:
            try:
                self.request("DELETE", f"/sessions/{session['session']}", timeout=CONNECT_TIMEOUT_S)
            except LesionSegError as exc:
                log.debug("could not delete session %s: %s", session["session"], exc)

    def call(self, images: Sequence[Image], path: str, payload: dict, method: Optional[str] = None,
             options: Optional[dict] = None) -> tuple[Image, dict]:
        """POST ``payload`` to ``/sessions/<id><path>`` for the session of ``images`` (uploaded again once when it
        expired); returns the label on ``images[0]``'s grid and the answer's headers (timings, warnings, info)."""
        for attempt in (0, 1):
            session = self.upload(images, method, options)
            try:
                answer, headers = self.request("POST", f"/sessions/{session['session']}{path}",
                                               json.dumps(payload).encode(), "application/json")
                break
            except InputError as exc:
                if attempt or getattr(exc, "code", "") != "session_expired":
                    raise
                self.forget(session["session"])
        meta = {key: json.loads(headers.get(f"X-LesionSeg-{key.title()}") or "null")
                for key in ("timings", "warnings", "segmenter")}
        try:
            return decode_label(answer, images[0]), meta
        except GridError as exc:
            raise ServerError(f"{self.url}: {exc}") from None


_CONNECTIONS: dict[tuple[str, str], Connection] = {}
_CONNECTIONS_LOCK = threading.Lock()


def connect(url: str, token: Optional[str] = None) -> Connection:
    """The shared :class:`Connection` to ``url`` with ``token`` (made on first use)."""
    key = (normalise_url(url), hashlib.sha256((token or "").encode()).hexdigest())
    with _CONNECTIONS_LOCK:
        if key not in _CONNECTIONS:
            _CONNECTIONS[key] = Connection(url, token)
        return _CONNECTIONS[key]


def server_info(url: str, token: Optional[str] = None, timeout: float = CONNECT_TIMEOUT_S) -> dict:
    """``GET /v1/info`` of a server (a fresh connection; for "Test connection"), after the API version check."""
    return Connection(url, token, timeout=timeout).info()


class RemoteSegmenter:
    """Method ``method`` on the server at ``url``, with the :class:`lesionseg.Segmenter` protocol.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8765`` (an SSH tunnel's local end for a remote loopback server).
        method: a method the server offers (``GET /v1/info``).
        token: the server's token (None when it has none).
        options: the method's options (its ``Options`` dataclass when the method is installed here too, or a
            dict as ``Options.to_dict()`` gives); path settings are sent as the files' content.
        connection: a :class:`Connection` of its own (default: the one shared per URL and token, so that methods
            on the same image share one upload).

    Raises:
        ServerError: unreachable, token refused, another API version. InputError: method not on the server or bad
            options. WeightsError: the server has no model for it.
    """

    def __init__(self, url: str, method: str, token: Optional[str] = None, options: Any = None, *,
                 connection: Optional[Connection] = None) -> None:
        self.connection = connection or connect(url, token)
        described = self.connection.method(method)
        self.name, self.prompt_kind = method, described["prompt"]
        self.inputs, self.optional_inputs = tuple(described["inputs"]), int(described["optional_inputs"])
        self.summary, self.device = described["summary"], self.connection.info()["device"]
        self.mode: Optional[str] = None
        self.last_timings: dict = {}
        self._images: Optional[tuple[Image, ...]] = None
        self._options: Any = None
        self.set_options(options)

    def __repr__(self) -> str:
        return f"RemoteSegmenter({self.connection.url!r}, {self.name!r})"

    @property
    def spec(self):
        """The method's :class:`~lesionseg.registry.MethodSpec` when it is registered here too (the CLI uses it)."""
        from .registry import get_spec

        return get_spec(self.name)

    @property
    def options(self) -> Any:
        """The options as given (an ``Options`` instance, a dict, or None for the server's defaults)."""
        return self._options

    def set_options(self, options: Any) -> None:
        """Change the predict-time settings (sent with every prediction; checked by the server)."""
        if options is not None and not isinstance(options, (Options, Mapping)):
            raise InputError(f"{self.name} takes its Options or a dict of settings, got {type(options).__name__}")
        self._options = options

    def _payload_options(self) -> tuple[dict, dict]:
        """``(settings, files)``: the options as JSON, path settings replaced by their file's content."""
        if self._options is None:
            return {}, {}
        values = self._options.to_dict() if isinstance(self._options, Options) else dict(self._options)
        described = {d["name"]: d["type"] for d in self.connection.method(self.name)["options"]}
        files = {}
        for name, value in values.items():
            if value is not None and described.get(name, "").startswith("path"):
                path = Path(value)
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
                files[name] = {"name": path.name, "data": base64.b64encode(data).decode("ascii")}
        return values, files

    @property
    def image(self) -> Image:
        """The (first) image given to :meth:`set_image`."""
        if self._images is None:
            raise InputError(f"{self.name}: call set_image() before predict()")
        return self._images[0]

    def set_image(self, image: Image, *others: Image) -> None:
        """Upload the image(s) (once per image and server) and run the method's ``set_image`` there.

        Raises:
            InputError: another number of images than the method takes, a value that is not an Image, NaN voxels
                (all checked here first, as a local segmenter does); the server's errors.
        """
        images = (image, *others)
        if not len(self.inputs) - self.optional_inputs <= len(images) <= len(self.inputs):
            raise InputError(f"{self.name} takes {len(self.inputs)} image(s): {', '.join(self.inputs)}; "
                             f"got {len(images)}")
        for name, value in zip(self.inputs, images):
            require_image(value, "set_image" if len(self.inputs) == 1 else f"set_image ({name})")
            value.check_finite()
        values, files = self._payload_options()
        self._images = None
        # With path settings (sent as files with each prediction) the method is primed by the first prediction.
        session = self.connection.upload(images, None if files else self.name, None if files else values)
        self.last_timings = dict(session.get("timings") or {})
        self._images = images

    def predict(self, prompt: Prompt = None) -> Image:
        """The label (uint8) on the grid of the image given to :meth:`set_image`; backend warnings are re-issued."""
        images = self._images
        if images is None:
            raise InputError(f"{self.name}: call set_image() before predict()")
        values, files = self._payload_options()
        payload = {"method": self.name, "prompt": None if prompt is None else prompt.to_dict(), "options": values,
                   "files": files}
        label, meta = self.connection.call(images, "/predict", payload, self.name, values if not files else None)
        self.last_timings = meta["timings"] or {}
        self.mode = (meta["segmenter"] or {}).get("mode", self.mode)
        for message in meta["warnings"] or ():
            warnings.warn(message, errors.LesionSegWarning, stacklevel=2)
        return label


def refine_remote(connection: Connection, image: Image, mask: np.ndarray, fg: Optional[np.ndarray] = None,
                  bg: Optional[np.ndarray] = None, settings: Optional[Mapping[str, Any]] = None) -> Image:
    """``lesionseg refine`` on the server: GrabCut + DenseCRF of a ``(K, J, I)`` mask on ``image``'s grid with
    foreground / background stroke points ``(N, 3)`` LPS mm; ``settings`` as the refine command's
    (``radius_mm``, ``band_mm``, ``iterations``, ``use_crf``, ``crf_iterations``, ``gaussian_sxy_mm``, ...).
    Returns the uint8 0/1 label on ``image``'s grid."""
    mask = np.asarray(mask) > 0
    if mask.shape != image.shape:
        raise InputError(f"the mask {mask.shape} is not on the image grid {image.shape}")
    payload = {"mask": {"shape": list(mask.shape), "packbits": base64.b64encode(np.packbits(mask)).decode("ascii")},
               "fg": None if fg is None else np.asarray(fg, float).reshape(-1, 3).tolist(),
               "bg": None if bg is None else np.asarray(bg, float).reshape(-1, 3).tolist(),
               "settings": dict(settings or {})}
    label, meta = connection.call((image,), "/refine", payload)
    for message in meta["warnings"] or ():
        warnings.warn(message, errors.LesionSegWarning, stacklevel=2)
    return label


def add_server_arguments(parser: Any) -> None:
    """``--server URL`` and ``--token-file FILE`` / ``--token TOKEN`` on a command that runs a method."""
    parser.add_argument("--server", metavar="URL",
                        help="run on a LesionSeg server (lesionseg serve), e.g. http://127.0.0.1:8765; the images "
                             "are read here and uploaded; --device and --weights are the server's")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--token-file", type=Path, help="file whose first line is the server's token")
    group.add_argument("--token", help="the server's token (visible in the process list: prefer --token-file or "
                                       "$LESIONSEG_TOKEN)")


def segmenter_from_args(args: Any, options: Any = None) -> RemoteSegmenter:
    """The :class:`RemoteSegmenter` that ``--server``, ``--token``/``--token-file`` (or ``$LESIONSEG_TOKEN``) and
    ``args.method`` name. InputError: ``--weights`` given too (the server uses its own models)."""
    from .server.config import read_token

    if getattr(args, "weights", None) is not None:
        raise InputError("--weights names a model folder on this computer; with --server the server's own models "
                         "are used (start lesionseg serve with $LESIONSEG_WEIGHTS to choose them)")
    return RemoteSegmenter(args.server, args.method, token=read_token(args.token, args.token_file), options=options)
