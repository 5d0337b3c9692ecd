"""Method registry (after segment-anything's ``sam_model_registry``).

One ``@register("name", ...)`` per method feeds the CLI choices, the Slicer combo boxes and the
parametrised tests. It records the method's :class:`MethodSpec`: the segmenter, its predict-time
``Options`` (from which CLI flags and Slicer settings are made), its label classes, and — named as
``"module:attribute"`` so that nothing heavy is imported until used and no import cycle arises — its training
entry, its evaluation, its synthetic-dataset generator, its input reader, its extra outputs and its own CLI
verbs. Built-in methods are imported on first use of :func:`list_methods` or :func:`build`, so importing
:mod:`lesionseg` stays light.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from .errors import InputError, WeightsError
from .modelfolder import find_model_folder
from .options import Options
from .segmenter import Segmenter

BUILTIN_MODULES = (
    "lesionseg.methods.classical",
    "lesionseg.methods.recist.segmenter",
    "lesionseg.methods.tsfcn",
    "lesionseg.methods.boxunet",
    "lesionseg.methods.boxunet.recist3d",
    "lesionseg.methods.s4c.segmenter",
    "lesionseg.methods.autopet.segmenter",
    "lesionseg.methods.smalllesion.segmenter",
)
"""Modules whose import registers the built-in methods (each method issue adds its module here)."""

PROMPT_KINDS = ("box", "recist", "none")

_REGISTRY: dict[str, type[Segmenter]] = {}
_loaded = False
S = TypeVar("S", bound=type[Segmenter])


def load_object(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names (imported now)."""
    module, _, attribute = reference.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class OutputSpec:
    """An extra output of ``lesionseg predict`` besides the label image (e.g. ``--table``, ``--mip``).

    ``writer`` names ``write(segmenter, label, path, overwrite) -> Path``, called after ``predict``; every
    output of one run is published together with the label (:func:`lesionseg.outputs.publish_together`).
    """

    name: str
    suffixes: tuple[str, ...]
    help: str
    writer: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class MethodSpec:
    """Everything the CLI, the Slicer panels, training and evaluation know about one method.

    Attributes:
        name, segmenter, prompt, summary, inputs, needs_weights: as given to :func:`register`.
        classes: label classes in value order, background first (``("background", "lesion")``).
        options: the predict-time settings dataclass (:class:`lesionseg.options.Options` subclass).
        optional_inputs: how many trailing ``inputs`` may be left out (e.g. a PET/CT method run on PET only).
        training: ``"module:attribute"`` of the method's :class:`lesionseg.train_job.Training` (None: no
            ``lesionseg train``).
        evaluation: ``"module:attribute"`` of its :class:`lesionseg.evaluation.Evaluation` subclass.
        synthetic: ``"module:attribute"`` of its synthetic-dataset generator (``lesionseg data synthetic``).
        reader: ``"module:attribute"`` of ``read(paths, options, series) -> images`` for inputs that need more
            than :func:`lesionseg.io.read_image` (a PET in SUV); None: read_image.
        outputs: extra outputs of ``lesionseg predict``.
        verbs: modules adding their own subcommands (``add_parser(subparsers)`` and ``run(args)``).
        demo_case: the demo phantom it runs on.
    """

    name: str
    segmenter: type[Segmenter]
    prompt: str
    summary: str
    inputs: tuple[str, ...]
    needs_weights: bool
    classes: tuple[str, ...]
    options: type[Options]
    optional_inputs: int = 0
    training: Optional[str] = None
    evaluation: Optional[str] = None
    synthetic: Optional[str] = None
    reader: Optional[str] = None
    outputs: tuple[OutputSpec, ...] = ()
    verbs: tuple[str, ...] = ()
    demo_case: str = "chest_ct"

    def load(self, what: str) -> Any:
        """The object behind the reference in field ``what`` (``"training"``, ``"evaluation"``, ...)."""
        reference = getattr(self, what)
        if reference is None:
            raise InputError(f"method {self.name!r} has no {what}")
        return load_object(reference)


def register(name: str, *, prompt: str, summary: str, inputs: tuple[str, ...] = ("image",),
             needs_weights: bool = True, classes: tuple[str, ...] = ("background", "lesion"),
             options: Optional[type[Options]] = None, optional_inputs: int = 0, training: Optional[str] = None,
             evaluation: Optional[str] = None, synthetic: Optional[str] = None, reader: Optional[str] = None,
             outputs: tuple[OutputSpec, ...] = (), verbs: tuple[str, ...] = (),
             demo_case: Optional[str] = None, weights_of: Optional[str] = None) -> Callable[[S], S]:
    """Class decorator registering a :class:`Segmenter` subclass under ``name`` with its :class:`MethodSpec`.

    Args:
        name: CLI / Slicer name, e.g. ``"tsfcn"``.
        prompt: ``"box"``, ``"recist"`` or ``"none"``.
        summary: one line for ``lesionseg methods`` and the Slicer panels.
        inputs: names of the images ``set_image`` takes, in order (a dataset's channel names).
        needs_weights: whether :func:`build` must find a model folder.
        classes, options, optional_inputs, training, evaluation, synthetic, reader, outputs, verbs,
        demo_case: see :class:`MethodSpec` (``options`` default: the class's ``Options`` attribute).
        weights_of: the method whose model folder this one runs on (e.g. ``recist-3d`` on ``box-unet``'s);
            default: its own (``weights/<name>``).
    """
    if prompt not in PROMPT_KINDS:
        raise ValueError(f"prompt must be one of {PROMPT_KINDS}")
    if not 0 <= optional_inputs < len(inputs):
        raise ValueError("optional_inputs must leave at least one required input")

    def deco(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice")
        opts = options or getattr(cls, "Options", Options)
        cls.name, cls.prompt_kind, cls.summary = name, prompt, summary
        cls.inputs, cls.needs_weights, cls.Options = tuple(inputs), needs_weights, opts
        cls.optional_inputs = optional_inputs
        cls.spec = MethodSpec(name, cls, prompt, summary, tuple(inputs), needs_weights, tuple(classes), opts,
                              optional_inputs, training, evaluation, synthetic, reader, tuple(outputs),
                              tuple(verbs), demo_case or getattr(cls, "demo_case", "chest_ct"))
        _REGISTRY[name] = cls
        if weights_of is not None:
            from .modelfolder import WEIGHTS_OF

            WEIGHTS_OF[name] = weights_of
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


def list_specs() -> list[MethodSpec]:
    """The :class:`MethodSpec` of every registered method, sorted by name."""
    return [cls.spec for cls in list_methods()]


def get_spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``; :class:`InputError` listing the choices otherwise."""
    return get_method(name).spec


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


def build(name: str, weights: Optional[os.PathLike | str] = None, device: str = "auto",
          options: Optional[Options] = None) -> Segmenter:
    """Instantiate method ``name`` with its model folder (explicit ``weights``, env var, package) and its
    predict-time ``options`` (default: the method's defaults)."""
    cls = get_method(name)
    model = find_model_folder(name, weights)
    if cls.needs_weights and model is None:
        raise WeightsError(
            f"no trained model found for {name!r}: pass --weights DIR, set LESIONSEG_WEIGHTS, or train one "
            f"with 'lesionseg train {name} --data DIR -o MODEL_DIR'"
        )
    if options is None:
        return cls(model=model, device=resolve_device(device))
    return cls(model=model, device=resolve_device(device), options=options)
