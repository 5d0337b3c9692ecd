"""S4C (Zhu et al.): screening for pancreatic tumours by 4-class segmentation and connected-component rules.

Importing this package registers the ``s4c`` method.
"""
from .segmenter import S4CPreprocessing, S4CSegmenter

__all__ = ["S4CPreprocessing", "S4CSegmenter"]
