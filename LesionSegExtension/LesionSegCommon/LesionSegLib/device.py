"""The auto / cpu / cuda choice offered by the panels (pure Python; torch imported only if installed).

The panels keep the user's *choice* (``"auto"`` by default) in their parameter node and hand it to the
backend, which resolves it (``lesionseg.registry.resolve_device``). This module only tells the panels what
the choices mean on this machine, without installing or importing anything that is missing; :func:`describe`
(shown when a panel is shown) never imports torch either: importing it takes seconds and freezes the GUI, so it
says what it knows only once torch was imported by a run.
"""
from __future__ import annotations

import importlib.util
import sys
from typing import Callable, Optional

DEVICE_CHOICES = ("auto", "cpu", "cuda")
"""Values of the ``device`` parameter, in display order."""


def cuda_available(find_spec: Callable[[str], object] = importlib.util.find_spec) -> bool:
    """True when torch is installed and sees a CUDA GPU (False when torch is missing)."""
    if find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def cuda_if_imported() -> Optional[bool]:
    """Whether torch sees a CUDA GPU when torch is already imported; ``None`` otherwise (nothing is imported)."""
    torch = sys.modules.get("torch")
    return None if torch is None else bool(torch.cuda.is_available())


def check_choice(choice: str) -> str:
    """``choice`` itself when it is one of :data:`DEVICE_CHOICES`; ``ValueError`` otherwise."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, not {choice!r}")
    return choice


def resolve(choice: str, cuda: Optional[bool] = None) -> str:
    """The device a choice runs on: ``auto`` -> ``cuda`` when available else ``cpu``.

    Raises:
        ValueError: unknown choice, or ``cuda`` asked for without a CUDA GPU.
    """
    check_choice(choice)
    if choice == "cpu":
        return "cpu"
    has_cuda = cuda_available() if cuda is None else cuda
    if choice == "cuda" and not has_cuda:
        raise ValueError("the CUDA device was chosen but torch sees no CUDA GPU; choose auto or cpu")
    return "cuda" if has_cuda else "cpu"


def describe(choice: str, cuda: Optional[bool] = None) -> str:
    """One line for a tooltip or status label, e.g. ``"auto: runs on the CPU (no CUDA GPU found)"``; ``cuda``
    ``None``: known only when torch is already imported (:func:`cuda_if_imported`), else said in general terms."""
    has_cuda = cuda_if_imported() if cuda is None else cuda
    if has_cuda is None:
        return {"auto": "auto: the CUDA GPU when torch finds one, else the CPU",
                "cuda": "cuda: needs a CUDA GPU that torch can use"}.get(check_choice(choice), "cpu: runs on the CPU")
    where = "the CUDA GPU" if has_cuda else "the CPU"
    if choice == "auto":
        return f"auto: runs on {where}" + ("" if has_cuda else " (no CUDA GPU found)")
    if choice == "cuda" and not has_cuda:
        return "cuda: not available here (no CUDA GPU found)"
    return f"{check_choice(choice)}: runs on {'the CUDA GPU' if choice == 'cuda' else 'the CPU'}"
