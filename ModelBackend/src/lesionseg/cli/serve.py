"""``lesionseg serve``: run the methods as an HTTP server that Slicer panels and ``lesionseg predict --server`` use.

Everything is checked before anything heavy is imported: the host (loopback only without a token), the token, the
limits, that fastapi and uvicorn are installed, that the port is free. The listening socket is bound here, so with
``--port 0`` the line printed at start names the port actually used. SIGTERM or Ctrl-C stop the server; its
sessions and their temporary folder are removed.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import socket
from pathlib import Path
from typing import Sequence

from ..errors import InputError

HELP = "serve the methods over HTTP for Slicer panels and 'lesionseg predict --server' (a GPU machine)"
log = logging.getLogger("lesionseg.server")


def add_parser(sub: argparse._SubParsersAction, argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """``lesionseg serve`` and its flags."""
    from ..server import DEFAULT_PORT

    p = sub.add_parser("serve", help=HELP, description=HELP + ". Without a token it listens on loopback only; "
                       "reach it from another machine through an SSH tunnel (see the README).")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where networks run (default: auto = cuda if available)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token-file", type=Path, help="file whose first line is the token every request must carry")
    token.add_argument("--token", help="the token itself (visible to other users in the process list: prefer "
                                       "--token-file or $LESIONSEG_TOKEN)")
    p.add_argument("--max-upload-mb", type=float, default=1024.0, help="largest upload in MB (default 1024)")
    p.add_argument("--max-sessions", type=int, default=16,
                   help="sessions kept at once; the least recently used go first (default 16)")
    p.add_argument("--session-ttl", type=float, default=1800.0,
                   help="seconds a session is kept unused (default 1800)")
    p.add_argument("--memory-mb", type=float, default=8192.0,
                   help="memory budget of all sessions in MB (images and models, estimated; default 8192)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="predictions waiting for the device beyond which requests get 503 (default 64)")
    return p


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``. InputError: the port is in use or the address is not here."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                         + (" (choose another --port)" if getattr(exc, "errno", None) == 98 else "")) from None
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg serve``: runs until SIGTERM or Ctrl-C; returns the exit status."""
    from ..server.config import ServerConfig, read_token

    config = ServerConfig(host=args.host, port=args.port, device=args.device,
                          token=read_token(args.token, args.token_file), max_upload_mb=args.max_upload_mb,
                          max_sessions=args.max_sessions, session_ttl_s=args.session_ttl, memory_mb=args.memory_mb,
                          max_queue=args.max_queue)
    missing = [name for name in ("fastapi", "uvicorn", "python_multipart") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"lesionseg serve needs {', '.join(missing)}: pip install 'lesionseg[server]' "
                         "(or pip install -r requirements.txt)")
    from .. import __version__
    from . import Terminated
    from ..registry import resolve_device
    from ..server import API_VERSION

    device = resolve_device(config.device)
    sock = bind(config.host, config.port)
    try:
        import uvicorn

        from ..server.app import create_app, work

        app = create_app(config, device)
        port = sock.getsockname()[1]
        shown = f"[{config.host}]" if ":" in config.host else config.host
        info = work.device_info(device)
        print(f"LesionSeg server {__version__} (API {API_VERSION}) on {info['device_name']} ({device}), listening "
              f"on http://{shown}:{port}" + (" with a token" if config.token else " (loopback only, no token)"),
              flush=True)
        if config.token and not config.host.startswith("127.") and config.host not in ("localhost", "::1"):
            log.warning("traffic to this server is not encrypted: prefer an SSH tunnel to a loopback server, or a "
                        "TLS reverse proxy in front of it")
        level = "info" if args.verbose else "warning"
        server = uvicorn.Server(uvicorn.Config(app, log_level=level, access_log=bool(args.verbose),
                                               timeout_keep_alive=30))
        try:
            server.run(sockets=[sock])
        except (Terminated, KeyboardInterrupt):  # uvicorn shut down cleanly, then passed the signal on
            pass
    finally:
        sock.close()
    print("LesionSeg server stopped", flush=True)
    return 0
