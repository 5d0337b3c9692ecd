"""TS-FCN (Ray 2016): box-prompt lung-tumour segmentation with a 2D FCN per axial slice.

Importing this package registers the ``tsfcn`` method.
"""
from __future__ import annotations

from .segmenter import TSFCN

__all__ = ["TSFCN"]
