"""The dataset convention every method reads and writes (nnU-Net v2 raw layout): reading and checking
(:mod:`.dataset`), folds that never split a patient (:mod:`.splits`), label maps onto a method's classes
(:mod:`.labels`), writing (:mod:`.writer`) and importers of public layouts (:mod:`.importers`). No torch.
"""
from __future__ import annotations

from .dataset import Case, Dataset, is_dataset
from .labels import class_map
from .splits import Split, deal_patients, fold_split, holdout_split
from .writer import DatasetWriter

__all__ = ["Case", "Dataset", "DatasetWriter", "Split", "class_map", "deal_patients", "fold_split",
           "holdout_split", "is_dataset"]
