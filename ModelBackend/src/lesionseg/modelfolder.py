"""Trained models as self-describing folders: ``model.json`` (the card) + weight files.

The card records the method, the network class and its keyword arguments, the pre-processing, label
names, the training data and command, measured scores and the sha256 of every weight file. A folder is
found by explicit path, then ``$LESIONSEG_WEIGHTS/<method>/``, then the package's own
``weights/<method>/``. Nothing is ever downloaded. Loading uses ``torch.load(weights_only=True)`` and a
sha256 mismatch is a :class:`~lesionseg.errors.WeightsError`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from .errors import InputError, WeightsError

CARD_NAME = "model.json"
ENV_VAR = "LESIONSEG_WEIGHTS"
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"


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
        """``torch.load(weights_only=True)`` of a checked weight file, cast to float32."""
        import torch

        state = torch.load(self.file(name), map_location=map_location, weights_only=True)
        return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def load_model_folder(path: os.PathLike | str, method: Optional[str] = None) -> ModelFolder:
    """Read and validate ``path/model.json``; check it belongs to ``method`` when given."""
    folder = Path(path)
    card_path = folder / CARD_NAME
    if not card_path.is_file():
        raise WeightsError(f"{folder} is not a model folder (no {CARD_NAME})")
    try:
        card = json.loads(card_path.read_text())
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
    candidates = []
    env = os.environ.get(ENV_VAR)
    if env:
        candidates.append(Path(env) / method)
    candidates.append(PACKAGE_WEIGHTS / method)
    for cand in candidates:
        if (cand / CARD_NAME).is_file():
            return load_model_folder(cand, method)
    return None


def save_model_folder(folder: os.PathLike | str, card: dict, state_dicts: dict[str, dict],
                      fp16: bool = True, overwrite: bool = False) -> ModelFolder:
    """Write weight files (fp16 floats when ``fp16``) and the card with their sha256s.

    Args:
        folder: target folder (created; an existing card is an error unless ``overwrite``).
        card: card fields; ``files`` is filled in here.
        state_dicts: ``{file_name: state_dict}``.
    """
    import torch

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if (out / CARD_NAME).exists() and not overwrite:
        raise WeightsError(f"{out} already holds a model; pass overwrite=True to replace it")
    files = {}
    for name, state in state_dicts.items():
        cast = {k: (v.detach().half() if fp16 and v.is_floating_point() else v.detach()).cpu().contiguous()
                for k, v in state.items()}
        tmp = out / f".{name}.tmp"
        torch.save(cast, tmp)
        os.replace(tmp, out / name)
        files[name] = sha256_of(out / name)
    card = {**card, "files": files}
    tmp_card = out / f".{CARD_NAME}.tmp"
    tmp_card.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    os.replace(tmp_card, out / CARD_NAME)
    return ModelFolder(out, card)


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
