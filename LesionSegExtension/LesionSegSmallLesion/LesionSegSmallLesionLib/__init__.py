"""Helpers of the LesionSeg small-lesion module (no ``slicer`` and no backend import at module level).

* :mod:`LesionSegSmallLesionLib.smalllesion` -- the prior choice, ``lesionseg predict small-lesion-il`` and
  ``lesionseg prior`` arguments, the ROI in the volume's LPS frame, the crop a segment's prior is learnt from,
  the run record (pure).
* :mod:`LesionSegSmallLesionLib.lesions` -- the backend's lesion table -> rows (LPS -> RAS), rows <-> connected
  components of the mask, segment names ``"Lesion 1 (41 mm³)"`` and specs (pure).
* :mod:`LesionSegSmallLesionLib.steps` -- several backend commands as one background run (progress, Cancel).
* :mod:`LesionSegSmallLesionLib.preview` -- the likelihood plot of the prior choice, drawn in the background.
* :mod:`LesionSegSmallLesionLib.run` -- the scene side: inputs -> files, start of a run, its end, preview files.
* :mod:`LesionSegSmallLesionLib.loading` -- a finished run's outputs -> segments (imported by the logic only).
* :mod:`LesionSegSmallLesionLib.scenarios` -- the in-Slicer self-test scenarios (need Slicer).
"""
