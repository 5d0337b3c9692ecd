"""S4C (Zhu et al.): screening for pancreatic tumours by 4-class segmentation and connected-component rules.

Importing this package imports no torch; importing :mod:`.segmenter` registers the ``s4c`` method.
"""
