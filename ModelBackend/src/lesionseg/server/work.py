"""What the routes do, without HTTP: parse a request's values with the backend's own checks, run a prediction or a
refinement (on the device queue's thread), encode the label, describe the server and its methods.

Every parse error is the :class:`~lesionseg.errors.InputError` the CLI would raise for the same value. Option
fields of type path (e.g. small-lesion-il's ``--prior-table``) never name a file on the server: the client sends the
file's content, stored in the session's folder under a name the server chooses. No fastapi here.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import InputError, LesionSegError
from ..image import Image
from ..options import Options
from ..prompts import Box, Points, Prompt, RecistLine, prompt_from_dict
from ..registry import MethodSpec, list_specs
from .errors import NotFound
from .sessions import Session

PROMPT_TYPES = {"box": Box, "recist": RecistLine}
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,8}){1,2}$")


@dataclass(frozen=True)
class Prediction:
    """A label with ``timings`` (seconds), backend ``warnings`` and ``info`` about the segmenter (method, device,
    mode) for the answer's headers."""

    label: Image
    timings: dict
    info: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def with_warnings(self, messages: Sequence[str]) -> "Prediction":
        return replace(self, warnings=tuple(messages))


def get_spec(name: Any) -> MethodSpec:
    """The spec of method ``name``; NotFound with the registry's message (it lists the methods) otherwise."""
    from ..registry import get_spec as lookup

    if not isinstance(name, str) or not name:
        raise InputError("give the method, e.g. {\"method\": \"tsfcn\"}")
    try:
        return lookup(name)
    except InputError as exc:
        raise NotFound(str(exc)) from None


def parse_prompt(spec: MethodSpec, data: Any) -> Prompt:
    """The prompt of a request (``Box``/``RecistLine`` ``to_dict()`` or null), of the kind the method takes."""
    if spec.prompt == "none":
        if data is not None:
            raise InputError(f"{spec.name} is automatic and takes no prompt; send \"prompt\": null")
        return None
    if not isinstance(data, dict):
        raise InputError(f"{spec.name} needs a {spec.prompt} prompt in LPS mm, e.g. "
                         + ('{"kind": "box", "corner_a": [x, y, z], "corner_b": [x, y, z]}' if spec.prompt == "box"
                            else '{"kind": "recist", "long": [[x, y, z], [x, y, z]]}'))
    try:
        prompt = prompt_from_dict(data)
    except (KeyError, TypeError, IndexError) as exc:
        raise InputError(f"a {data.get('kind')} prompt needs the field {exc}") from None
    if not isinstance(prompt, PROMPT_TYPES[spec.prompt]):
        raise InputError(f"{spec.name} takes a {spec.prompt} prompt, not {data.get('kind')!r}")
    return prompt


def _path_fields(spec: MethodSpec) -> set[str]:
    return {d["name"] for d in spec.options.describe() if d["type"].startswith("path")}


def parse_options(spec: MethodSpec, values: Any, files: Any, folder: Optional[Path] = None) -> Options:
    """The method's options from JSON ``values`` (``Options.to_dict()``); path fields only from ``files``
    (``{field: {"name": file name, "data": base64}}``), written into ``folder``.

    Raises:
        InputError: not an object, unknown fields, bad values (the Options' own checks), a path value without its
            file's content.
    """
    if not isinstance(values, dict):
        raise InputError("\"options\" must be a JSON object of the method's settings")
    values = dict(values)
    paths = _path_fields(spec)
    for name in paths:
        if values.get(name) is not None and name not in (files or {}):
            raise InputError(f"{spec.options.flag(name)} names a file on the client; the server never opens a "
                             "client's paths: send its content in \"files\" (lesionseg.client does)")
    for name, item in (files or {}).items():
        if name not in paths:
            known = ", ".join(sorted(paths)) or "none"
            raise InputError(f"\"files\" may only hold path settings of {spec.name} ({known}), not {name!r}")
        if folder is None:
            raise InputError("send files with a prediction, not with the upload")
        try:
            data = base64.b64decode(item["data"], validate=True)
            shown = str(item.get("name", name))
        except (KeyError, TypeError, binascii.Error) as exc:
            raise InputError(f"files[{name!r}] must be {{\"name\": ..., \"data\": base64}} ({exc})") from None
        suffix = _SUFFIX.search(Path(shown).name)
        # Named by content: a changed file is a new path, so a method caching what the path named re-reads it.
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = folder / f"option-{name}-{digest}{suffix.group(0).lower() if suffix else ''}"
        if not path.exists():
            path.write_bytes(data)
        values[name] = str(path)
    return spec.options.from_dict(values)


def json_field(upload: Any, name: str, default: Any) -> Any:
    """The JSON value of an upload's text field ``name`` (``default`` when absent)."""
    text = upload.value(name)
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"the field {name!r} is not valid JSON ({exc})") from None


def parse_meta(upload: Any) -> list[dict]:
    """The ``meta`` field of an upload: a JSON list of dicts (one per image), or nothing."""
    meta = json_field(upload, "meta", [])
    if not isinstance(meta, list) or not all(isinstance(m, dict) for m in meta):
        raise InputError("\"meta\" must be a JSON list with one object per image")
    return meta


def read_named(session: Session, spec: Optional[MethodSpec], options: Optional[Options],
               names: Sequence[str]) -> tuple[Image, ...]:
    """:meth:`Session.read_images`, with the server's file names in error messages replaced by the client's."""
    try:
        return session.read_images(spec, options)
    except LesionSegError as exc:
        message = str(exc)
        for path, name in sorted(zip(session.files, names), key=lambda item: -len(str(item[0]))):
            message = message.replace(str(path), name)
        message = message.replace(str(session.folder), "the upload")
        raise type(exc)(message) from None


def predict(session: Session, spec: MethodSpec, prompt: Prompt, options: Options, device: str) -> Prediction:
    """One prompt on the session's warm segmenter of ``spec``; the session's memory is measured again (device
    queue thread only: nothing else changes the session meanwhile)."""
    seg, set_s = session.segmenter(spec, options, device)
    t0 = time.perf_counter()
    label = seg.predict(prompt)
    predict_s = time.perf_counter() - t0
    session.measure()
    info = {"method": spec.name, "device": getattr(seg, "device", device)}
    if isinstance(getattr(seg, "mode", None), str):
        info["mode"] = seg.mode
    return Prediction(label, {"set_image_s": round(set_s, 4), "predict_s": round(predict_s, 4)}, info)


@dataclass(frozen=True)
class RefineRequest:
    """A refinement: ``(K, J, I)`` 0/1 mask on the session's grid, stroke points ``(N, 3)`` LPS mm, settings."""

    mask: np.ndarray
    fg: Optional[np.ndarray]
    bg: Optional[np.ndarray]
    settings: Any


def _points(value: Any, name: str) -> Optional[np.ndarray]:
    if value is None:
        return None
    try:
        points = np.asarray(value, dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise InputError(f"\"{name}\" must be a list of [x, y, z] LPS points") from None
    return points if len(points) else None


def parse_refine(body: dict) -> RefineRequest:
    """``{"mask": {"shape": [K, J, I], "packbits": base64 of np.packbits}, "fg", "bg", "settings"}``; the settings
    are those of ``lesionseg refine`` (:class:`lesionseg.methods.recist.cli_refine.RefineSettings`)."""
    from ..methods.recist.cli_refine import RefineSettings

    mask = body.get("mask")
    try:
        shape = tuple(int(n) for n in mask["shape"])
        bits = np.frombuffer(base64.b64decode(mask["packbits"], validate=True), np.uint8)
        if len(shape) != 3 or min(shape) < 1 or bits.size * 8 < int(np.prod(shape)):
            raise ValueError(f"{bits.size} bytes for shape {shape}")
        array = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise InputError(f"\"mask\" must be {{\"shape\": [K, J, I], \"packbits\": base64}} ({exc})") from None
    settings = body.get("settings") or {}
    if not isinstance(settings, dict):
        raise InputError("\"settings\" must be a JSON object (the settings of lesionseg refine)")
    return RefineRequest(array, _points(body.get("fg"), "fg"), _points(body.get("bg"), "bg"),
                         RefineSettings.from_dict(settings))


def refine(session: Session, request: RefineRequest) -> Prediction:
    """GrabCut + DenseCRF of a mask with strokes on the session's first image, as ``lesionseg refine`` does."""
    from ..refiners import DenseCRFRefiner, refine_with_scribbles

    image = session.read_images()[0]
    if request.mask.shape != image.shape:
        raise InputError(f"the mask is not on the session's grid (shape (K, J, I) {request.mask.shape} vs "
                         f"{image.shape})")
    s = request.settings
    mask = (request.mask == s.label) if s.label else request.mask > 0
    if not mask.any() and request.fg is None:
        raise InputError("the mask is empty and no foreground stroke was given: nothing to refine")
    if s.use_crf and importlib.util.find_spec("pydensecrf") is None:
        raise InputError("DenseCRF (pydensecrf2) is not installed on the server; refine with use_crf false")
    t0 = time.perf_counter()
    crf = DenseCRFRefiner(s.crf_iterations, seed_radius_mm=s.radius_mm, **s.crf_settings())
    out = refine_with_scribbles(image, image.with_array(mask.astype(np.uint8)),
                                fg=None if request.fg is None else Points(request.fg, np.ones(len(request.fg))),
                                bg=None if request.bg is None else Points(request.bg, np.zeros(len(request.bg))),
                                radius_mm=s.radius_mm, band_mm=s.band_mm, iterations=s.iterations, crf=crf,
                                use_crf=s.use_crf)
    return Prediction(out.with_array((np.asarray(out.array) > 0).astype(np.uint8)),
                      {"refine_s": round(time.perf_counter() - t0, 4)}, {"method": "refine"})


def device_info(device: str) -> dict:
    """``{"device": "cuda"|"cpu", "device_name": ...}`` (the GPU's name, or the CPU count)."""
    torch = sys.modules.get("torch")
    if device == "cuda" and torch is not None:
        return {"device": device, "device_name": torch.cuda.get_device_name(0)}
    return {"device": device, "device_name": f"CPU ({os.cpu_count()} cores)"}


def methods_info() -> list[dict]:
    """Each registered method: prompt kind, inputs, classes, options, and whether its weights are found."""
    from ..modelfolder import find_model_folder

    out = []
    for spec in list_specs():
        try:
            found = find_model_folder(spec.name)
            weights = "found" if found else ("not needed" if not spec.needs_weights else "missing")
        except LesionSegError as exc:
            weights = f"invalid: {exc}"
        out.append({"name": spec.name, "prompt": spec.prompt, "summary": spec.summary, "inputs": list(spec.inputs),
                    "optional_inputs": spec.optional_inputs, "classes": list(spec.classes),
                    "needs_weights": spec.needs_weights, "weights": weights,
                    "ready": weights in ("found", "not needed"), "options": spec.options.describe()})
    return out


def refine_info() -> dict:
    """What ``/refine`` can do here: ``{"densecrf": installed}``."""
    return {"densecrf": importlib.util.find_spec("pydensecrf") is not None}
