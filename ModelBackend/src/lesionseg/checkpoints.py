"""Training checkpoints: what :class:`lesionseg.training.Trainer` saves and how it checks one before resuming.

A checkpoint is a ``torch.save`` of tensors and plain Python values only (:func:`plain`), so that it is read
with ``torch.load(weights_only=True)`` (:func:`read_checkpoint`); the random states of Python, numpy, torch and
a trainer's own generator are kept with it (:func:`rng_state`, :func:`set_rng_state`). A resume must continue the
same training: :func:`check_compatible` refuses another network or other :data:`RESUME_MUST_MATCH` settings.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1
RESUME_MUST_MATCH = ("optimizer", "lr", "weight_decay", "schedule", "warmup_epochs", "seed", "grad_clip", "keep",
                     "steps_per_epoch")
"""Config fields a resumed training must share with its checkpoint."""


def plain(value: Any) -> Any:
    """``value`` with numpy values, tuples and paths as Python numbers, lists and strings (tensors kept), so
    that ``torch.load(weights_only=True)`` reads it back."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    return str(value)


def rng_state(rng: np.random.Generator) -> dict:
    """The states of Python's, numpy's, torch's (CPU, CUDA once used) generators and of ``rng`` (copies;
    :func:`plain` makes them checkpoint values)."""
    cuda = list(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else []
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": cuda, "trainer": rng.bit_generator.state}


def set_rng_state(state: dict, rng: np.random.Generator) -> None:
    """Set what :func:`rng_state` returned, as is or through :func:`plain` (CUDA only on as many devices)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    rng.bit_generator.state = state["trainer"]


def read_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path`` (``torch.load(weights_only=True)``); InputError when missing or not one."""
    if not path.is_file():
        raise InputError(f"cannot resume: there is no checkpoint {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path} is not a readable training checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a training checkpoint of this version (format {CHECKPOINT_FORMAT})")
    return ckpt


def check_compatible(config: dict, model_state: dict, ckpt: dict, path: Path) -> None:
    """InputError unless the checkpoint ``ckpt`` (read from ``path``) holds a network with the parameter shapes of
    ``model_state`` and the :data:`RESUME_MUST_MATCH` settings of ``config``."""
    ours, theirs = config, ckpt.get("config", {})
    differ = [f"{k} {theirs.get(k)!r} -> {ours[k]!r}" for k in RESUME_MUST_MATCH if theirs.get(k) != ours[k]]
    if differ:
        raise InputError(f"{path} was trained with other settings ({'; '.join(differ)}); a resume continues the "
                         "same training: keep its settings, or start a new training from its weights")
    changed = [f"{k} {theirs[k]!r} -> {ours[k]!r}" for k in ours
               if k != "resume" and k in theirs and theirs[k] != ours[k]]
    if changed:
        log.info("resuming with changed settings: %s", ", ".join(changed))
    mine = {k: tuple(v.shape) for k, v in model_state.items()}
    saved = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    if mine != saved:
        diff = sorted(set(mine) ^ set(saved)) + sorted(k for k in set(mine) & set(saved) if mine[k] != saved[k])
        raise InputError(f"{path} holds another network (differing parameters: {', '.join(diff[:5])}"
                         f"{' ...' if len(diff) > 5 else ''}); resume with the network it was trained with")
