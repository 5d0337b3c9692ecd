"""Helpers of the LesionSeg small-lesion module (no ``slicer`` and no backend import at module level).

* :mod:`LesionSegSmallLesionLib.smalllesion` -- the prior choice, ``lesionseg predict small-lesion-il`` and
  ``lesionseg prior`` arguments, the ROI in the volume's LPS frame, the crop a segment's prior is learnt from,
  segment names ``"Lesion 1 (41 mm³)"`` (pure).
* :mod:`LesionSegSmallLesionLib.preview` -- the likelihood plot of the prior choice, drawn in the background.
* :mod:`LesionSegSmallLesionLib.run` -- the scene side: inputs -> files, start of a run (``lesionseg prior`` then
  ``predict``), its outputs -> segments, preview files.
* :mod:`LesionSegSmallLesionLib.scenarios` -- the in-Slicer self-test scenarios (need Slicer).

The run, its loading and the lesion table are the shared ones of ``LesionSegLib.wholevolume`` and
``LesionSegLib.lesiontable``.
"""
