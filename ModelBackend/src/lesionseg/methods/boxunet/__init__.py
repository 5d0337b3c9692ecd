"""``box-unet``: the lesion-agnostic box model (lung nodules, soft-tissue sarcomas, abdominal lesions in CT).

Importing this package registers the ``box-unet`` method.
"""
from __future__ import annotations

from .segmenter import BoxUNet

__all__ = ["BoxUNet"]
