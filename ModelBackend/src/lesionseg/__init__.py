"""LesionSeg backend: five published lesion-segmentation methods behind one protocol.

>>> import lesionseg
>>> seg = lesionseg.build("tsfcn")                        # doctest: +SKIP
>>> seg.set_image(lesionseg.read_image("ct.nii.gz"))      # doctest: +SKIP
>>> mask = seg.predict(lesionseg.Box((10, 20, 30), (40, 50, 36)))  # doctest: +SKIP

Importing this package does not import torch; methods load it when built.
"""
from __future__ import annotations

from .errors import InputError, LesionSegError, LesionSegWarning, OutputExistsError, WeightsError
from .image import Image
from .io import read_image, write_image
from .prompts import Box, Points, Prompt, RecistLine
from .registry import build, get_method, list_methods, method_names, register
from .segmenter import Segmenter

__version__ = "0.1.0"
__all__ = [
    "Box", "Image", "InputError", "LesionSegError", "LesionSegWarning", "OutputExistsError", "Points",
    "Prompt", "RecistLine", "Segmenter", "WeightsError", "build", "get_method", "list_methods",
    "method_names", "read_image", "register", "write_image",
]
