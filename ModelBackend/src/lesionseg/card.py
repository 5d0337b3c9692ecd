"""One model card for every method: the typed view of ``model.json``.

Fields (all methods): ``method``; ``networks`` ``{weight file: {"class": ..., "kwargs": {...}}}``;
``preprocessing`` (what the segmenter needs to reproduce the training input); ``labels`` ``{name: value}``
(the method's classes); ``training`` (data, ``synthetic``, ``command``, ``seed``, the split as
``train_cases`` / ``held_out_cases`` / ``fold`` / ``folds``, ``label_map``, the optimiser config, minutes, steps,
history); ``metrics`` (measured scores, with the data they were measured on); ``files`` (sha256 of each weight
file, filled in when saved); ``extra``: method-specific fields kept at the top level of ``model.json``
(s4c's ``rule``, small-lesion's ``variant`` and ``prior``, ``postprocessing``, ``paper``).

Old cards still load: a single ``network`` becomes ``networks[<its file>]`` (``weights.pt`` unless the card's
``files`` name one other file), and recist's ``heldout_patients`` and tsfcn's ``split.validation_patients``
are read by :attr:`ModelCard.held_out_patients`. No torch here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .errors import WeightsError

CARD_VERSION = 2
KNOWN = ("method", "networks", "network", "preprocessing", "labels", "training", "metrics", "files", "card_version")


@dataclass
class ModelCard:
    """The parsed ``model.json`` of a model folder (see the module docstring)."""

    method: str
    networks: dict[str, dict] = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model.json") -> "ModelCard":
        """Parse a card (new or old layout); :class:`WeightsError` naming ``where`` for a malformed one."""
        if not isinstance(data, Mapping):
            raise WeightsError(f"{where} is not a JSON object")
        if not isinstance(data.get("method"), str) or not data["method"]:
            raise WeightsError(f"{where} lacks 'method' (the registered method name)")
        networks = data.get("networks")
        if networks is None and data.get("network") is not None:
            files = list((data.get("files") or {}).keys())
            networks = {files[0] if len(files) == 1 else "weights.pt": data["network"]}
        for name, value in (("networks", networks), ("preprocessing", data.get("preprocessing")),
                            ("labels", data.get("labels")), ("training", data.get("training")),
                            ("metrics", data.get("metrics")), ("files", data.get("files"))):
            if value is not None and not isinstance(value, Mapping):
                raise WeightsError(f"{where}: '{name}' must be a JSON object")
        return cls(method=data["method"], networks=dict(networks or {}), preprocessing=dict(data.get("preprocessing") or {}),
                   labels=dict(data.get("labels") or {}), training=dict(data.get("training") or {}),
                   metrics=dict(data.get("metrics") or {}), files=dict(data.get("files") or {}),
                   extra={k: v for k, v in data.items() if k not in KNOWN})

    def to_dict(self) -> dict:
        """The JSON object to write (new layout: ``networks``, ``card_version``)."""
        out = {"card_version": CARD_VERSION, "method": self.method, "networks": self.networks,
               "preprocessing": self.preprocessing, "labels": self.labels, **self.extra,
               "training": self.training, "metrics": self.metrics}
        if self.files:
            out["files"] = self.files
        return out

    def replace(self, **changes) -> "ModelCard":
        return dataclasses.replace(self, **changes)

    @property
    def held_out_cases(self) -> list[str]:
        """Case names the model never trained on (``training.held_out_cases``; ``[]`` when none recorded)."""
        return [str(c) for c in self.training.get("held_out_cases") or []]

    @property
    def held_out_patients(self) -> list[str]:
        """Patients the model never trained on, where the card records patients rather than cases (old recist
        and tsfcn cards) or both."""
        split = self.training.get("split") if isinstance(self.training.get("split"), Mapping) else {}
        found = (self.training.get("held_out_patients") or self.training.get("heldout_patients")
                 or split.get("validation_patients") or [])
        return [str(p) for p in found]

    @property
    def synthetic(self) -> Optional[bool]:
        """Whether the training data was synthetic (None when the card does not say)."""
        value = self.training.get("synthetic")
        return None if value is None else bool(value)
