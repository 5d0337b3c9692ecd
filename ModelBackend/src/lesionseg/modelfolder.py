"""Trained models as self-describing folders: ``model.json`` (the card) + weight files.

The card records the method, the network class and its keyword arguments, the pre-processing, label
names, the training data and command, measured scores and the sha256 of every weight file. A folder is
found by explicit path, then ``$LESIONSEG_WEIGHTS/<method>/``, then the package's own
``weights/<method>/``. Nothing is ever downloaded. Loading uses ``torch.load(weights_only=True)``.

Everything that can be wrong with a folder is a :class:`~lesionseg.errors.WeightsError` whose message names
the file and what is wrong: a sha256 mismatch, a weight file torch's safe loader refuses (corrupt,
truncated, or carrying code), weights that do not fit the network the card describes, network arguments the
class rejects, and a card field a method needs that is missing (:meth:`ModelFolder.require`,
:meth:`ModelFolder.settings`). Methods load their networks only through :meth:`ModelFolder.load_network`.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, TypeVar, Union

from .errors import InputError, WeightsError

if TYPE_CHECKING:
    from torch import nn

    from .card import ModelCard

CARD_NAME = "model.json"
ENV_VAR = "LESIONSEG_WEIGHTS"
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
T = TypeVar("T")

UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
              LookupError, AttributeError, struct.error, OverflowError, MemoryError)
"""What ``torch.load(weights_only=True)`` raises for bytes it cannot or will not unpickle: refused globals
(code), truncated zip archives, garbage opcodes, an empty file."""
BUILD_ERRORS = (TypeError, ValueError, RuntimeError, LookupError, AttributeError)
"""What a network constructor raises for card arguments of the wrong name, kind or value (e.g. a negative
channel count is a ``RuntimeError`` from torch)."""
NETWORK_FIELD = "the network class and its keyword arguments"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFolder:
    """A model folder on disk and its parsed card."""

    path: Path
    card: dict

    @property
    def method(self) -> str:
        return str(self.card.get("method", ""))

    @property
    def model_card(self) -> "ModelCard":
        """The card as a :class:`lesionseg.card.ModelCard` (old layouts included)."""
        from .card import ModelCard

        return ModelCard.from_dict(self.card, str(self.path / CARD_NAME))

    def file(self, name: str) -> Path:
        """Path of weight file ``name`` after checking its sha256 against the card."""
        expected = self.card.get("files", {}).get(name)
        path = self.path / name
        if expected is None:
            raise WeightsError(f"{self.path / CARD_NAME} lists no file {name!r}")
        if not path.is_file():
            raise WeightsError(f"model folder {self.path} is missing {name}")
        actual = sha256_of(path)
        if actual != expected:
            raise WeightsError(
                f"{path} fails its sha256 check (card {expected[:12]}…, file {actual[:12]}…); "
                "the file is corrupt or was replaced"
            )
        return path

    def load_state_dict(self, name: str = "weights.pt", map_location: Any = "cpu") -> dict:
        """``torch.load(weights_only=True)`` of a checked weight file: ``{parameter name: tensor}``, floating
        tensors cast to float32.

        Raises:
            WeightsError: the sha256 check fails (:meth:`file`); torch's safe loader refuses the file (it is
                corrupt, truncated, not a PyTorch file, or carries Python objects, i.e. code); or it holds
                anything but a dict of tensors. The message names the file and never repeats torch's advice
                to load it with ``weights_only=False``, which would run the code such a file carries.
        """
        import torch

        path = self.file(name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notes on pickle protocols of a file it may refuse
                state = torch.load(path, map_location=map_location, weights_only=True)
        except OSError as exc:
            raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UNREADABLE as exc:
            refused = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", str(exc))
            detail = f"; it refers to the Python object {refused.group(1)}" if refused else ""
            raise WeightsError(
                f"{path} is not a PyTorch weights file LesionSeg can load safely: it is corrupt, truncated, or "
                f"carries code (only plain tensors are accepted){detail}"
            ) from None
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise WeightsError(f"{path} holds a {type(state).__name__} that is not a state dict (parameter names "
                               "-> tensors); it is not a weights file of this model")
        return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}

    @property
    def card_path(self) -> Path:
        """Path of the folder's ``model.json``."""
        return self.path / CARD_NAME

    def lacks(self, names: Iterable[str], what: str) -> WeightsError:
        """The error for card fields ``names`` (dotted for nested ones) that are missing; ``what`` says what
        they hold. Raise what it returns."""
        listed = ", ".join(repr(n) for n in names)
        return WeightsError(f"{self.card_path} lacks {listed} ({what}); retrain or restore the card")

    def require(self, field: str, what: str, kind: type | tuple[type, ...] = dict) -> Any:
        """The card's ``field``, which a method cannot run without.

        Args:
            field: top-level card key, e.g. ``"preprocessing"``.
            what: what the field is, for the message (e.g. "the pre-processing the model was trained with").
            kind: the JSON type(s) the value must have (``dict`` for an object, ``str``, ...).

        Raises:
            WeightsError: the field is missing or null ("<card> lacks 'field' (what); retrain or restore the
                card"), or of another type. Fields a method treats as optional are read with ``card.get``
                and the reason is given in that method's docstring.
        """
        value = self.card.get(field)
        if value is None:
            raise self.lacks([field], what)
        if not isinstance(value, kind):
            expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise WeightsError(f"{self.card_path}: {field!r} ({what}) is a {type(value).__name__}, not a {expected}")
        return value

    def settings(self, cls: type[T], field: str, what: str, required: Iterable[str]) -> T:
        """The card's ``field`` parsed by ``cls.from_dict`` (a dataclass of settings, e.g. a method's
        pre-processing).

        Args:
            cls: the settings class (has ``from_dict``).
            field: its top-level card key; always required.
            what: what the field is, for the message.
            required: entries of ``field`` that must be present, because a missing one would silently become
                the dataclass default, which need not be what the model was trained with. The others may
                fall back to their defaults; the caller's docstring says why (speed-only settings, or settings
                added after cards were written whose default reproduces the earlier behaviour).

        Raises:
            WeightsError: ``field`` or a required entry is missing ("lacks 'preprocessing.mean'"), or
                ``from_dict`` rejects the values (the message names the card).
        """
        data = self.require(field, what)
        missing = [f"{field}.{name}" for name in required if name not in data]
        if missing:
            raise self.lacks(missing, f"part of {what}")
        try:
            return cls.from_dict(data)
        except WeightsError as exc:
            raise WeightsError(f"{self.card_path}: {exc}") from None
        except (TypeError, ValueError) as exc:  # InputError is a ValueError
            raise WeightsError(f"{self.card_path}: its {field!r} is invalid: {exc}") from None

    def network_spec(self, file: str = "weights.pt") -> tuple[str, dict]:
        """``(class name, keyword arguments)`` of the network stored in weight file ``file``: the card's
        ``networks[file]`` when it lists several networks, else its ``network``. Both keys are required.

        Raises:
            WeightsError: the card lacks the entry, its ``class`` or its ``kwargs``, or they have wrong types.
        """
        if "networks" in self.card:
            spec, where = self.require("networks", NETWORK_FIELD).get(file), f"networks.{file}"
        else:
            spec, where = self.require("network", NETWORK_FIELD), "network"
        if not isinstance(spec, dict):
            raise self.lacks([where], f"the network stored in {file}")
        if not isinstance(spec.get("class"), str):
            raise self.lacks([f"{where}.class"], f"the network class of {file}")
        if not isinstance(spec.get("kwargs"), dict):
            raise self.lacks([f"{where}.kwargs"], f"the keyword arguments of the network of {file}")
        return spec["class"], spec["kwargs"]

    def load_network(self, file: str = "weights.pt", build: Optional[Callable[[], "nn.Module"]] = None,
                     map_location: Any = "cpu") -> "nn.Module":
        """The network of weight file ``file`` with its weights loaded (on the CPU, float32, train mode).

        Args:
            file: weight file listed in the card.
            build: makes the empty network; default: the class and kwargs of :meth:`network_spec` through
                :func:`lesionseg.nets.unet.build_network` (a method imports its network module first so its
                class is registered).
            map_location: as for :func:`torch.load`.

        Raises:
            WeightsError: for every way the folder can be broken: see :meth:`load_state_dict`,
                :meth:`network_spec`; arguments the network class rejects; weights with missing, unexpected
                or differently shaped tensors. Each message names the card or the weight file.
        """
        if build is None:
            from .nets.unet import build_network

            class_name, kwargs = self.network_spec(file)
            build = lambda: build_network(class_name, kwargs)  # noqa: E731
        state = self.load_state_dict(file, map_location)
        try:
            net = build()
        except WeightsError as exc:
            raise WeightsError(f"{self.card_path}: {exc}") from None
        except BUILD_ERRORS as exc:
            raise WeightsError(f"{self.card_path}: the network of {file} cannot be built from the card's "
                               f"arguments: {_one_line(exc)}") from None
        _check_fits(net, state, self.path / file)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise WeightsError(f"{self.path / file} does not fit the {type(net).__name__} built for it: "
                               f"{_one_line(exc)}") from None
        return net


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    flat = " ".join(str(exc).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _check_fits(net: "nn.Module", state: dict, path: Path) -> None:
    """WeightsError (one line) unless ``state`` has exactly ``net``'s tensor names and shapes."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing (first {missing[0]!r})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
    if reshaped:
        k = reshaped[0]
        problems.append(f"{len(reshaped)} of another shape (first {k!r}: file {tuple(state[k].shape)}, network "
                        f"{tuple(own[k].shape)})")
    if problems:
        raise WeightsError(f"{path} does not fit the {type(net).__name__} built for it: {'; '.join(problems)}; the "
                           "weights belong to another network or the network arguments are wrong")


WEIGHTS_OF: dict[str, str] = {}
"""Methods that run on another method's model folder (``register(..., weights_of=...)``): ``recist-3d`` uses
``box-unet``'s weights. :func:`load_model_folder` and :func:`find_model_folder` look the folder up by that name."""


def load_model_folder(path: os.PathLike | str, method: Optional[str] = None) -> ModelFolder:
    """Read and validate ``path/model.json``; check it belongs to ``method`` when given (or to the method whose
    weights ``method`` uses, :data:`WEIGHTS_OF`)."""
    method = WEIGHTS_OF.get(method, method) if method is not None else None
    folder = Path(path)
    card_path = folder / CARD_NAME
    if not card_path.is_file():
        raise WeightsError(f"{folder} is not a model folder (no {CARD_NAME})")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read {card_path}: {exc}") from None
    if method is not None and card.get("method") != method:
        raise WeightsError(f"{folder} holds a model for {card.get('method')!r}, not {method!r}")
    if not isinstance(card.get("files"), dict) or not card["files"]:
        raise WeightsError(f"{card_path} lists no weight files with their sha256")
    return ModelFolder(folder, card)


def find_model_folder(method: str, explicit: Optional[os.PathLike | str] = None) -> Optional[ModelFolder]:
    """Locate the model folder of ``method``: explicit path, ``$LESIONSEG_WEIGHTS/<method>``, package.

    Returns ``None`` when no folder exists anywhere; an explicit path that is not a valid folder raises.
    """
    if explicit is not None:
        return load_model_folder(explicit, method)
    method = WEIGHTS_OF.get(method, method)
    candidates = []
    env = os.environ.get(ENV_VAR)
    if env:
        candidates.append(Path(env) / method)
    candidates.append(PACKAGE_WEIGHTS / method)
    for cand in candidates:
        if (cand / CARD_NAME).is_file():
            return load_model_folder(cand, method)
    return None


def save_model_folder(folder: os.PathLike | str, card: Union[dict, "ModelCard"], state_dicts: dict[str, dict],
                      fp16: bool = True, overwrite: bool = False,
                      extra_files: Optional[dict[str, Union[str, bytes]]] = None) -> ModelFolder:
    """Write a model folder atomically: weight files (fp16 floats when ``fp16``), ``extra_files`` (e.g. a
    prior's JSON, ``MODEL_CARD.md``) and the card with the sha256 of every weight file.

    Args:
        folder: target folder: absent or empty, or with ``overwrite`` an earlier model folder written by
            LesionSeg (:func:`lesionseg.outputs.output_folder`: assembled beside it and swapped in at the end);
            missing parent folders are made.
        card: card fields (a dict or a :class:`lesionseg.card.ModelCard`); ``files`` is filled in here.
        state_dicts: ``{file_name: state_dict}``.
    """
    import torch

    from .card import ModelCard
    from .outputs import output_folder

    data = card.to_dict() if isinstance(card, ModelCard) else dict(card)
    out = Path(folder)
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    files = {}
    with output_folder(out, overwrite, command=str(data.get("training", {}).get("command", ""))) as work:
        for name, state in state_dicts.items():
            cast = {k: (v.detach().half() if fp16 and v.is_floating_point() else v.detach()).cpu().contiguous()
                    for k, v in state.items()}
            torch.save(cast, work / name)
            files[name] = sha256_of(work / name)
        for name, content in (extra_files or {}).items():
            target = work / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        data = {**data, "files": files}
        (work / CARD_NAME).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return ModelFolder(out, data)


class CardSettings:
    """Mixin for frozen dataclasses of settings stored in a model card (e.g. a method's preprocessing).

    :meth:`to_dict` gives JSON values (tuples as lists); :meth:`from_dict` rebuilds the dataclass, turning
    unknown fields and values its ``__post_init__`` rejects (:class:`InputError`) into :class:`WeightsError`,
    since a bad card is a broken model, not bad user input.
    """

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict):
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise WeightsError(f"unknown preprocessing fields in the model card: {sorted(unknown)}")
        try:
            return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})
        except InputError as exc:
            raise WeightsError(f"the model card's preprocessing is invalid: {exc}") from None
