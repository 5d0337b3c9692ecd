"""Pure helpers of the LesionSeg Screening module (no ``slicer`` import at module level).

* :mod:`LesionSegScreeningLib.screening` -- inputs -> ``lesionseg screen`` arguments, ``report.json`` ->
  verdict banner and reasons, findings -> jump-to targets (LPS -> RAS), phases -> segment names and colours.
* :mod:`LesionSegScreeningLib.scenarios` -- the in-Slicer self-test scenarios (need Slicer).
"""
