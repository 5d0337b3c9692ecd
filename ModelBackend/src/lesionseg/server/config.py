"""The server's settings (``lesionseg serve`` flags) and the safety rules checked before anything is started.

Without a token the server listens on loopback only (``127.0.0.1``, ``::1``, ``localhost``): anyone who can reach
the port could otherwise send it images and use its GPU. Reach such a server from another machine through an SSH
tunnel. No fastapi, no torch here.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import InputError
from . import DEFAULT_PORT

MIN_TOKEN_LENGTH = 16
TOKEN_ENV = "LESIONSEG_TOKEN"
"""Environment variable holding the token (for ``serve`` and ``predict --server``), instead of a flag."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token: Optional[str] = None, token_file: Optional[Path] = None, env: bool = True) -> Optional[str]:
    """The token given as a value, in a file (first line, stripped) or in ``$LESIONSEG_TOKEN``; None if none.

    Raises:
        InputError: both a token and a token file, an unreadable or empty file.
    """
    if token is not None and token_file is not None:
        raise InputError("give --token or --token-file, not both")
    if token_file is not None:
        try:
            lines = Path(token_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputError(f"cannot read the token file {token_file}: {exc.strerror or exc}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise InputError(f"the token file {token_file} is empty")
    if token is None and env:
        token = os.environ.get(TOKEN_ENV) or None
    return token


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one server.

    Attributes:
        host, port: where to listen (port 0: any free port, printed at start).
        device: ``auto``, ``cpu`` or ``cuda`` (resolved when the server starts).
        token: every request must carry it (``Authorization: Bearer``); None: loopback only.
        max_upload_mb: largest upload (all images of a session together; a zipped DICOM series may unpack to
            four times as much).
        max_sessions: sessions kept at once (the least recently used is evicted beyond).
        session_ttl_s: a session unused this long is removed.
        memory_mb: memory budget of all sessions (images and the segmenters' caches, estimated); the least
            recently used sessions are evicted beyond it.
        max_queue: predictions waiting for the device beyond which requests get 503.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    device: str = "auto"
    token: Optional[str] = None
    max_upload_mb: float = 1024.0
    max_sessions: int = 16
    session_ttl_s: float = 1800.0
    memory_mb: float = 8192.0
    max_queue: int = 64

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"--device must be auto, cpu or cuda, not {self.device!r}")
        if not 0 <= int(self.port) <= 65535:
            raise InputError(f"--port must be 0..65535, got {self.port}")
        for flag, value in (("--max-upload-mb", self.max_upload_mb), ("--session-ttl", self.session_ttl_s),
                            ("--memory-mb", self.memory_mb)):
            if not value > 0:
                raise InputError(f"{flag} must be > 0, got {value}")
        for flag, value in (("--max-sessions", self.max_sessions), ("--max-queue", self.max_queue)):
            if int(value) < 1:
                raise InputError(f"{flag} must be >= 1, got {value}")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise InputError(f"the token must have at least {MIN_TOKEN_LENGTH} characters (make one with: python -c "
                             "\"import secrets; print(secrets.token_urlsafe(32))\" > token.txt)")
        if self.token is None and not is_loopback(self.host):
            raise InputError(
                f"refusing to listen on {self.host} without a token: anyone who can reach this machine could send "
                "it images and use it. Give --token-file FILE (or set $LESIONSEG_TOKEN), or keep the default "
                f"--host 127.0.0.1 and reach the server through an SSH tunnel "
                f"(ssh -N -L {self.port or DEFAULT_PORT}:127.0.0.1:{self.port or DEFAULT_PORT} THIS-HOST)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_mb * 1024 * 1024)

    def public(self) -> dict:
        """The limits a client may know (no token)."""
        return {"max_upload_mb": self.max_upload_mb, "max_sessions": self.max_sessions,
                "session_ttl_s": self.session_ttl_s, "memory_mb": self.memory_mb, "max_queue": self.max_queue}
