"""What ``lesionseg train METHOD`` hands a method: one :class:`TrainJob`, the same for every method.

The CLI (or Python) reads the dataset (:class:`lesionseg.data.Dataset`), checks the output folder, resolves
the label map onto the method's classes, makes the split (a fold of a patient-wise cross-validation, or a
held-out share of the patients) and parses the method's own training settings (a
:class:`lesionseg.options.Settings` dataclass, the method's :attr:`Training.settings`). The method's
:attr:`Training.train` gets the job and returns the saved :class:`~lesionseg.modelfolder.ModelFolder`.

Common flags, the same for every method: ``--data``, ``-o``, ``--labels``, ``--folds K --fold F`` or
``--val-fraction``, ``--seed``, ``--minutes`` (the wall-clock budget; a method with several stages documents
how it splits it), ``--device``, ``--init MODEL`` (start from a model's weights), ``--resume`` (continue from the
checkpoints in ``OUT.checkpoints/``), ``--checkpoint-minutes``, ``--overwrite``. No torch here.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .data import Dataset, Split
from .errors import InputError
from .options import Settings, option


@dataclass(frozen=True)
class CommonTrainSettings(Settings):
    """Training flags every method shares (see the module docstring)."""

    labels: Optional[str] = option(None, "map the dataset's labels onto the method's classes, e.g. "
                                         "pancreas=1,tumour=2 (or a JSON file); default: by name", metavar="MAP")
    folds: int = option(0, "cross-validation folds (0: hold out --val-fraction of the patients instead)")
    fold: int = option(0, "the fold held out with --folds")
    val_fraction: float = option(0.2, "share of the patients held out for validation when --folds is 0")
    seed: int = option(0, "random seed (splits, sampling, initial weights)")
    minutes: Optional[float] = option(None, "wall-clock training budget in minutes (default: the method's)", unit="min")
    device: str = option("auto", "where to train", choices=("auto", "cpu", "cuda"))
    init: Optional[Path] = option(None, "start from this model folder's weights (fine-tuning)", metavar="MODEL")
    resume: bool = option(False, "continue an interrupted run from OUT.checkpoints/")
    checkpoint_minutes: float = option(10.0, "minutes between checkpoints", unit="min")

    def __post_init__(self) -> None:
        if self.folds and not (2 <= self.folds and 0 <= self.fold < self.folds):
            raise InputError(f"--fold must be in 0..{self.folds - 1} with --folds {self.folds}")
        if self.folds == 1 or self.folds < 0:
            raise InputError("--folds must be 0 (no cross-validation) or at least 2")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.minutes is not None and not self.minutes > 0:
            raise InputError(f"--minutes must be > 0, got {self.minutes}")
        if not self.checkpoint_minutes > 0:
            raise InputError(f"--checkpoint-minutes must be > 0, got {self.checkpoint_minutes}")


@dataclass
class TrainJob:
    """One training run of one method (see the module docstring).

    Attributes:
        method: the registered method name.
        dataset: the training dataset.
        output: the model folder to write (checked free before training).
        split: training and held-out case names.
        label_map: ``{class index: [dataset label values]}`` (:func:`lesionseg.data.labels.resolve`).
        common: the common settings; settings: the method's own.
        overwrite: replace an earlier model at ``output``.
        command: the command line, for the card.
    """

    method: str
    dataset: Dataset
    output: Path
    split: Split
    label_map: dict[int, list[int]]
    common: CommonTrainSettings
    settings: Settings
    overwrite: bool = False
    command: str = ""
    progress: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def checkpoints(self) -> Path:
        """``OUT.checkpoints/``: where checkpoints go during training (removed after the model is saved)."""
        return self.output.parent / f"{self.output.name}.checkpoints"

    def checkpoint(self, name: str) -> Path:
        """The checkpoint file of one training stage (e.g. ``"seg"``), in :attr:`checkpoints`."""
        self.checkpoints.mkdir(exist_ok=True)
        return self.checkpoints / f"{name}.ckpt"

    def train_cases(self):
        """The training cases (:class:`lesionseg.data.Case`)."""
        return self.dataset.select(self.split.train)

    def held_out_cases(self):
        """The held-out cases."""
        return self.dataset.select(self.split.held_out)

    def training_record(self, **extra: Any) -> dict:
        """The card's ``training`` section every method writes, plus ``extra``: data, synthetic, command,
        seed, split, label map, common settings and method settings."""
        from .data.labels import describe
        from .registry import get_spec

        classes = get_spec(self.method).classes
        return {"data": str(self.dataset.root), "dataset": self.dataset.name, "synthetic": self.dataset.synthetic,
                "command": self.command, "seed": self.common.seed, **self.split.to_dict(),
                "label_map": describe(classes, self.label_map), "settings": self.settings.to_dict(),
                "common": self.common.to_dict(), **extra}


@dataclass(frozen=True)
class Training:
    """A method's training entry, named in its :class:`~lesionseg.registry.MethodSpec` (``training=``).

    ``settings``: the dataclass of its own flags; ``train(job) -> ModelFolder``; ``stratify``: an optional
    case -> group function for the split (e.g. positive / negative cases), given the dataset's label map.
    """

    settings: type[Settings]
    train: Callable[[TrainJob], Any]
    stratify: Optional[Callable[..., Any]] = None


def make_job(method: str, data: Path, output: Path, common: CommonTrainSettings, settings: Settings,
             overwrite: bool = False, command: Optional[str] = None, stratify: Optional[Callable] = None) -> TrainJob:
    """Check everything that can be checked before training and build the :class:`TrainJob`.

    Raises :class:`InputError` for a missing or broken dataset, labels that do not map onto the method's
    classes, an impossible split, and an output that cannot be written (before any minute is spent).
    """
    from .data import fold_split, holdout_split
    from .data.labels import resolve
    from .io import check_output_folder
    from .registry import get_spec

    spec = get_spec(method)
    check_output_folder(output, overwrite)
    dataset = Dataset(data)
    if len(dataset.channel_names) < len(spec.inputs) - spec.optional_inputs:
        raise InputError(f"{method} needs channels {', '.join(spec.inputs)}; {data} has "
                         f"{', '.join(dataset.channel_names)}")
    label_map = resolve(spec.classes, dataset.labels, common.labels)
    group = None if stratify is None else (lambda case: stratify(case, label_map))
    split = (fold_split(dataset, common.folds, common.fold, common.seed, group) if common.folds
             else holdout_split(dataset, common.val_fraction, common.seed, group))
    if common.resume and not (output.parent / f"{output.name}.checkpoints").is_dir():
        raise InputError(f"--resume: there is no {output.name}.checkpoints folder beside {output} to resume from")
    return TrainJob(method, dataset, Path(output), split, label_map, common, settings, overwrite,
                    command if command is not None else "lesionseg " + " ".join(sys.argv[1:]))
