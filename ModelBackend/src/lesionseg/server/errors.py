"""Errors of the server with their HTTP status, and the JSON body every error answer has.

A :class:`~lesionseg.errors.LesionSegError` raised while handling a request keeps its message (the one the CLI
prints for the same input) and gets a 4xx status: 400 by default, the ``status`` of the classes below otherwise.
No fastapi here.
"""
from __future__ import annotations

from ..errors import InputError, LesionSegError


class HTTPStatusError(LesionSegError):
    """A user error with its own HTTP status and a machine-readable ``code``."""

    status = 400
    code = "bad_input"


class Unauthorized(HTTPStatusError):
    status, code = 401, "unauthorized"


class NotFound(HTTPStatusError, InputError):
    status, code = 404, "not_found"


class SessionNotFound(NotFound):
    """Unknown or expired session: the client uploads its image again."""

    code = "session_expired"


class ImageCountError(HTTPStatusError, InputError):
    status, code = 409, "image_count"


class TooLarge(HTTPStatusError, InputError):
    status, code = 413, "too_large"


class Busy(HTTPStatusError):
    """More predictions are waiting than ``--max-queue`` allows (503: try again later)."""

    status, code = 503, "busy"


def error_status(exc: LesionSegError) -> tuple[int, str]:
    """``(HTTP status, code)`` of a backend error."""
    if isinstance(exc, HTTPStatusError):
        return exc.status, exc.code
    return 400, type(exc).__name__.replace("Error", "").lower() or "bad_input"


def error_body(exc: LesionSegError) -> dict:
    """``{"error": message, "type": class name of the nearest public backend error, "code"}``."""
    from .. import errors

    kind = next(cls.__name__ for cls in type(exc).__mro__ if getattr(errors, cls.__name__, None) is cls)
    return {"error": str(exc), "type": kind, "code": error_status(exc)[1]}
