"""The FastAPI application of ``lesionseg serve`` (routes in the package docstring of :mod:`lesionseg.server`).

:func:`create_app` wires the routes to one :class:`~lesionseg.server.sessions.SessionStore` (sessions in a private
temporary folder, removed at shutdown), one :class:`~lesionseg.server.queue.DeviceQueue` and the token check.
Request bodies are parsed here (JSON by hand, so that every bad value gets the backend's own message); the work is
in :mod:`~lesionseg.server.sessions`, :mod:`~lesionseg.server.uploads` and :mod:`~lesionseg.server.work`.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import InputError, LesionSegError
from . import API_PREFIX, API_VERSION, uploads, wire, work
from .config import ServerConfig
from .errors import Unauthorized, error_body, error_status
from .queue import DeviceQueue
from .sessions import SessionStore, describe_image, image_count_error, new_session

log = logging.getLogger("lesionseg.server")
MAX_JSON_BYTES = 64 << 20
"""Largest JSON body (a refinement's packed mask, a predict request's option files)."""
ROOT_PREFIX = "lesionseg-server-"


@dataclass
class ServerState:
    """What the routes share: settings, the resolved device, sessions and the device queue."""

    config: ServerConfig
    device: str
    store: SessionStore
    queue: DeviceQueue


def _state(request: Request) -> ServerState:
    return request.app.state.lesionseg


def check_token(request: Request) -> None:
    """Dependency of every route: the ``Authorization: Bearer`` token, compared in constant time."""
    token = _state(request).config.token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("missing or wrong token: give the server's token (lesionseg predict --token-file FILE, "
                           "or the token in the LesionSeg server settings in Slicer)")


def internal_error(request: Request, exc: BaseException) -> JSONResponse:
    """500 with an id that the server log repeats beside the traceback."""
    error_id = secrets.token_hex(4)
    log.error("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": f"internal server error (id {error_id}; the server log has the details)",
                         "type": "ServerError", "code": "internal", "id": error_id}, status_code=500)


class _GuardedRoute(APIRoute):
    """Unexpected exceptions become :func:`internal_error` answers (backend errors go to their handler)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Any:
            try:
                return await handler(request)
            except (LesionSegError, StarletteHTTPException, RequestValidationError, ClientDisconnect):
                raise
            except Exception as exc:  # noqa: BLE001 - every unexpected failure answers 500 with an id
                return internal_error(request, exc)

        return guarded


async def read_json(request: Request, limit: int = MAX_JSON_BYTES) -> dict:
    """The request's JSON object (at most ``limit`` bytes). InputError: not a JSON object."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise uploads.too_large(limit)
    try:
        data = json.loads(bytes(body) or b"{}")
    except ValueError as exc:
        raise InputError(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError("the request body must be a JSON object")
    return data


def _label_response(prediction: work.Prediction, encoded: bytes, extra: dict) -> Response:
    """The label bytes; timings, warnings (the first ones, within a header's size) and the segmenter in headers."""
    shown: list[str] = []
    for message in prediction.warnings:
        if sum(map(len, shown)) + len(message) > 6000:
            break
        shown.append(message)
    headers = {"X-LesionSeg-Timings": json.dumps({**prediction.timings, **extra}),
               "X-LesionSeg-Warnings": json.dumps(shown),
               "X-LesionSeg-Segmenter": json.dumps(prediction.info)}
    return Response(encoded, media_type="application/octet-stream", headers=headers)


def _routes() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, route_class=_GuardedRoute, dependencies=[Depends(check_token)])

    @router.get("/health")
    async def health(request: Request) -> dict:
        state = _state(request)
        return {"status": "ok", **state.store.summary(), "queued": state.queue.pending}

    @router.get("/info")
    async def info(request: Request) -> dict:
        state = _state(request)
        return {"service": "lesionseg", "server_version": __version__, "api_version": API_VERSION,
                **work.device_info(state.device), "limits": state.config.public(), **state.store.summary(),
                "methods": await run_in_threadpool(work.methods_info), "refine": work.refine_info()}

    @router.post("/sessions", status_code=201)
    async def create_session(request: Request) -> Any:
        state = _state(request)
        t0 = time.perf_counter()
        folder = state.store.new_folder()
        try:
            upload = await uploads.receive(request, folder, state.config.max_upload_bytes)
            t_upload = time.perf_counter() - t0
            spec = work.get_spec(upload.value("method")) if upload.value("method") else None
            options = work.parse_options(spec, work.json_field(upload, "options", {}), None) if spec else None
            if spec is not None and (error := image_count_error(spec, len(upload.files))) is not None:
                raise error
            files = await run_in_threadpool(uploads.prepare_files, upload, state.config.max_upload_bytes)
            session = new_session(folder, files, upload.fields.get("series", []), work.parse_meta(upload),
                                  (upload.value("prepared") or "").lower() in ("1", "true", "yes"))
            t1 = time.perf_counter()
            images = await run_in_threadpool(work.read_named, session, spec, options, upload.names)
            timings = {"upload_s": t_upload, "read_s": time.perf_counter() - t1}
            if spec is not None:
                job = await state.queue.run(session.segmenter, spec, options, state.device)
                timings.update(wait_s=job.wait_s, set_image_s=job.value[1])
            session.measure()
            state.store.add(session)
        except ClientDisconnect:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("a client went away during its upload; nothing was kept")
            return Response(status_code=400)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        log.info("session %s: %s", session.id, ", ".join(str(img) for img in images))
        return JSONResponse({"session": session.id, "images": [describe_image(img) for img in images],
                             "method": spec.name if spec else None, "ttl_s": state.config.session_ttl_s,
                             "timings": {k: round(v, 4) for k, v in timings.items()}}, status_code=201)

    @router.get("/sessions/{session_id}")
    async def get_session(session_id: str, request: Request) -> dict:
        with _state(request).store.using(session_id) as session:
            images = session.images.get("", ())
            return {"session": session.id, "images": [describe_image(img) for img in images],
                    "methods": sorted(session.primed.copy()), "memory_mb": round(session.nbytes / (1 << 20), 1)}

    @router.delete("/sessions/{session_id}")
    async def delete_session(session_id: str, request: Request) -> dict:
        _state(request).store.remove(session_id)
        return {"deleted": session_id}

    @router.post("/sessions/{session_id}/predict")
    async def predict(session_id: str, request: Request) -> Response:
        state = _state(request)
        body = await read_json(request)
        with state.store.using(session_id) as session:
            spec = work.get_spec(body.get("method"))
            prompt = work.parse_prompt(spec, body.get("prompt"))
            options = work.parse_options(spec, body.get("options") or {}, body.get("files"), session.folder)
            job = await state.queue.run(work.predict, session, spec, prompt, options, state.device)
            t0 = time.perf_counter()
            encoded = await run_in_threadpool(wire.encode_label, job.value.label, state.store.root)
        prediction = job.value.with_warnings(job.warnings)
        return _label_response(prediction, encoded, {"wait_s": round(job.wait_s, 4),
                                                     "encode_s": round(time.perf_counter() - t0, 4)})

    @router.post("/sessions/{session_id}/refine")
    async def refine(session_id: str, request: Request) -> Response:
        state = _state(request)
        body = await read_json(request)
        with state.store.using(session_id) as session:
            request_ = work.parse_refine(body)
            job = await state.queue.run(work.refine, session, request_)
            t0 = time.perf_counter()
            encoded = await run_in_threadpool(wire.encode_label, job.value.label, state.store.root)
        prediction = job.value.with_warnings(job.warnings)
        return _label_response(prediction, encoded, {"wait_s": round(job.wait_s, 4),
                                                     "encode_s": round(time.perf_counter() - t0, 4)})

    return router


def sweep_stale_roots(parent: Optional[Path] = None) -> None:
    """Remove the temporary folders of servers that were killed (their process is gone)."""
    from ..outputs import _alive

    parent = Path(parent or tempfile.gettempdir())
    for entry in parent.glob(f"{ROOT_PREFIX}*"):
        pid = entry.name[len(ROOT_PREFIX):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            log.info("removed %s, left by a server that was killed", entry)


def create_app(config: ServerConfig, device: str) -> FastAPI:
    """The application for ``config``, running methods on ``device`` (``cpu`` or ``cuda``, already resolved)."""
    sweep_stale_roots()
    work.methods_info()  # imports every method (and torch) now, not on the first request
    root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))
    state = ServerState(config, device, SessionStore(config, root), DeviceQueue(config.max_queue))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            state.queue.shutdown()
            state.store.close()

    app = FastAPI(title="LesionSeg", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.lesionseg = state

    @app.exception_handler(LesionSegError)
    async def on_backend_error(request: Request, exc: LesionSegError) -> JSONResponse:
        status, _ = error_status(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(exc), status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"no such route: {request.method} {request.url.path}" if exc.status_code in (404, 405) \
            else str(exc.detail)
        return JSONResponse({"error": message, "type": "HTTPError", "code": "route"}, status_code=exc.status_code)

    @app.exception_handler(ClientDisconnect)
    async def on_client_gone(request: Request, exc: ClientDisconnect) -> Response:
        log.info("a client went away before its request was read (%s %s)", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"bad request: {exc.errors()}", "type": "InputError", "code": "bad_input"},
                            status_code=400)

    app.include_router(_routes())
    return app


@contextmanager
def serve_in_thread(config: ServerConfig, device: str = "cpu", start_timeout: float = 20.0):
    """A server in a thread of this process on a free loopback port (``config.port`` is ignored), for a notebook or
    a test; yields ``(url, app)``. It runs without signal handlers (a thread cannot install them) and is stopped,
    with its temporary folder removed, when the ``with`` block ends."""
    import uvicorn

    from ..cli.serve import bind

    sock = bind("127.0.0.1", 0)
    app = create_app(config, device)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        if not server.started:
            raise RuntimeError(f"the in-process LesionSeg server did not start within {start_timeout:g} s")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(start_timeout)
        sock.close()
