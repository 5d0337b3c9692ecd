"""Helpers of the LesionSeg PET/CT module (no ``slicer`` and no backend import at module level).

* :mod:`LesionSegAutoPETLib.autopet` -- options -> ``lesionseg predict autopet-l2snet`` arguments, PET units
  (SUV / Bq/mL with weight and dose), the value-range SUV check (pure).
* :mod:`LesionSegAutoPETLib.pairing` -- which CT belongs to a PET: study keys and the choice (pure).
* :mod:`LesionSegAutoPETLib.inputs` -- the scene side of the inputs: DICOM facts, pairing, PET DICOM export.
* :mod:`LesionSegAutoPETLib.run` -- input check, start of the background run, its outputs -> segments, a lesion table
  node and the MIP picture.
* :mod:`LesionSegAutoPETLib.scenarios` -- the in-Slicer self-test scenarios (need Slicer).

The run, its loading and the lesion table are the shared ones of ``LesionSegLib.wholevolume`` and
``LesionSegLib.lesiontable``.
"""
