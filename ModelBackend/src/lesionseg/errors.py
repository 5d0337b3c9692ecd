"""Exceptions and warnings raised by the backend.

Every error a user can cause derives from :class:`LesionSegError`; the command line prints its message
as one line on stderr and exits with status 2. Recoverable oddities (a box partly outside the image, an
intensity range that does not look like CT) are :class:`LesionSegWarning` warnings.
"""
from __future__ import annotations


class LesionSegError(Exception):
    """Base class for errors caused by input, weights or environment (never a bug)."""


class InputError(LesionSegError, ValueError):
    """An image, prompt or argument that cannot be used as given."""


class WeightsError(LesionSegError):
    """A model folder that is missing, incomplete or fails its sha256 check."""


class OutputExistsError(LesionSegError, FileExistsError):
    """An output path exists and overwriting was not asked for."""


class OutputError(LesionSegError, OSError):
    """An output that cannot be written where asked (a folder in the way, no permission, no space left)."""


class LesionSegWarning(UserWarning):
    """Something was adjusted or looks unusual; the result is still produced."""
