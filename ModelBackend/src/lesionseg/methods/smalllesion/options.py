"""Predict-time settings of ``small-lesion-il``: the flags of ``lesionseg predict small-lesion-il`` (and of
``lesionseg evaluate small-lesion-il``), from which the Slicer settings are built too. No torch here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ...errors import InputError
from ...options import Options, option
from ...prompts import Box
from .prior import IntensityPrior, check_gaussian


@dataclass(frozen=True)
class SmallLesionOptions(Options):
    """Predict-time settings of ``small-lesion-il`` (the flags of ``lesionseg predict small-lesion-il``).

    A user prior (``prior_mean`` + ``prior_sd``: a Gaussian in HU; or ``prior_table``: a ``.json`` prior or a
    ``hu,likelihood`` ``.csv``) is applied as post-processing ``P x L(smoothed HU)`` to any variant, and is the
    input channel of ``seg+il-in``. ``roi``: corners ``(x0, y0, z0, x1, y1, z1)`` in LPS mm; the label is 0 outside.
    ``variant``: ``"seg+pp"`` runs a ``seg`` model with its own prior as post-processing (None: the trained
    variant). The prior bounds are those of :func:`.prior.check_gaussian` (mean in -1024..3071 HU, SD in
    (0, 1000] HU).
    """

    prior_mean: Optional[float] = option(None, "Gaussian prior mean, with --prior-sd", unit="HU", metavar="HU")
    prior_sd: Optional[float] = option(None, "Gaussian prior SD > 0, with --prior-mean", unit="HU", metavar="HU")
    prior_table: Optional[Path] = option(None, "prior .json or .csv (hu,likelihood)", metavar="FILE", slicer=False)
    roi: Optional[tuple[float, float, float, float, float, float]] = option(
        None, "region of interest corners in LPS mm (the label is 0 outside)",
        metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"), slicer=False)
    variant: Optional[str] = option(None, "seg+pp: P x L(HU) of a seg model's own prior", choices=("seg+pp",),
                                    advanced=True)

    def __post_init__(self) -> None:
        if self.prior_table is not None and (self.prior_mean is not None or self.prior_sd is not None):
            raise InputError(f"give either {self.flag('prior_table')} or {self.flag('prior_mean')}/"
                             f"{self.flag('prior_sd')}, not both")
        if (self.prior_mean is None) != (self.prior_sd is None):
            raise InputError(f"{self.flag('prior_mean')} and {self.flag('prior_sd')} go together")
        if self.prior_mean is not None:
            check_gaussian(self.prior_mean, self.prior_sd, self.flag("prior_mean"), self.flag("prior_sd"))
        if self.roi is not None and (len(self.roi) != 6 or not all(math.isfinite(v) for v in self.roi)):
            raise InputError(f"{self.flag('roi')} takes 6 finite numbers (two LPS corners in mm), got {self.roi}")
        if self.variant not in (None, "seg+pp"):
            raise InputError(f"{self.flag('variant')} takes seg+pp (or nothing: the trained variant), not "
                             f"{self.variant!r}")

    def prior_key(self) -> tuple:
        """What identifies the prior these options name (equal keys: the same prior)."""
        return (self.prior_mean, self.prior_sd, None if self.prior_table is None else str(self.prior_table))

    def intensity_prior(self) -> Optional[IntensityPrior]:
        """The prior these options name (the table is read now), or None."""
        if self.prior_table is not None:
            return IntensityPrior.load(self.prior_table)
        if self.prior_mean is not None:
            return IntensityPrior.gaussian(self.prior_mean, self.prior_sd)
        return None

    def roi_box(self) -> Optional[Box]:
        """The ROI as a :class:`~lesionseg.prompts.Box` (LPS mm), or None."""
        return None if self.roi is None else Box(self.roi[:3], self.roi[3:])
