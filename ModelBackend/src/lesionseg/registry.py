"""Method registry (after segment-anything's ``sam_model_registry``).

One ``@register("name", ...)`` per method feeds the CLI choices, the Slicer combo boxes and the
parametrised tests. Built-in methods are imported on first use of :func:`list_methods` or :func:`build`,
so importing :mod:`lesionseg` stays light.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

from .errors import InputError, WeightsError
from .modelfolder import find_model_folder
from .segmenter import Segmenter

BUILTIN_MODULES = (
    "lesionseg.methods.classical",
    "lesionseg.methods.recist.segmenter",
    "lesionseg.methods.tsfcn",
    "lesionseg.methods.s4c.segmenter",
    "lesionseg.methods.autopet.segmenter",
    "lesionseg.methods.smalllesion.segmenter",
)
"""Modules whose import registers the built-in methods (each method issue adds its module here)."""

PROMPT_KINDS = ("box", "recist", "none")

_REGISTRY: dict[str, type[Segmenter]] = {}
_loaded = False
S = TypeVar("S", bound=type[Segmenter])


def register(name: str, *, prompt: str, summary: str, inputs: tuple[str, ...] = ("image",),
             needs_weights: bool = True) -> Callable[[S], S]:
    """Class decorator registering a :class:`Segmenter` subclass under ``name``.

    Args:
        name: CLI / Slicer name, e.g. ``"tsfcn"``.
        prompt: ``"box"``, ``"recist"`` or ``"none"``.
        summary: one line for ``lesionseg methods`` and the Slicer panels.
        inputs: names of the images ``set_image`` takes, in order.
        needs_weights: whether :func:`build` must find a model folder.
    """
    if prompt not in PROMPT_KINDS:
        raise ValueError(f"prompt must be one of {PROMPT_KINDS}")

    def deco(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice")
        cls.name, cls.prompt_kind, cls.summary = name, prompt, summary
        cls.inputs, cls.needs_weights = tuple(inputs), needs_weights
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for mod in BUILTIN_MODULES:
            importlib.import_module(mod)
        _loaded = True


def list_methods() -> list[type[Segmenter]]:
    """Registered method classes, sorted by name."""
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def method_names() -> list[str]:
    """Registered method names, sorted."""
    return [cls.name for cls in list_methods()]


def get_method(name: str) -> type[Segmenter]:
    """The class registered as ``name``; :class:`InputError` listing the choices otherwise."""
    _load_builtins()
    if name not in _REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; ``"cuda"`` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise InputError("--device cuda was asked for but no CUDA GPU is available to torch")
    return "cpu"


def build(name: str, weights: Optional[os.PathLike | str] = None, device: str = "auto") -> Segmenter:
    """Instantiate method ``name`` with its model folder (explicit ``weights``, env var, package)."""
    cls = get_method(name)
    model = find_model_folder(name, weights)
    if cls.needs_weights and model is None:
        raise WeightsError(
            f"no trained model found for {name!r}: pass --weights DIR, set LESIONSEG_WEIGHTS, or train one "
            f"with 'lesionseg train {name} --data DIR -o MODEL_DIR'"
        )
    return cls(model=model, device=resolve_device(device))
