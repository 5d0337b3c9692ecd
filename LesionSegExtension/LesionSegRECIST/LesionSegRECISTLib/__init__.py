"""Pure helpers of the LesionSeg RECIST module (no ``slicer`` import; tested offline).

* :mod:`LesionSegRECISTLib.recist` -- segment one RECIST prompt with a warm session, measure the result's
  axes, and format drawn vs measured axes for the panel.
"""
