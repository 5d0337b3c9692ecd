"""The "Lesion GrabCut/CRF" Segment Editor effect (:mod:`.SegmentEditorEffect`, needs Slicer).

Slicer loads ``SegmentEditorEffect.py`` as a module named after this folder, so the effect imports nothing from
here; its pure computation is :mod:`LesionSegLib.refine` (tested offline).
"""
