"""autopet-l2snet: whole-body FDG-PET/CT lesion segmentation after L2SNet (localisation-to-segmentation,
autoPET-II 2023), with the per-lesion SUV table (:mod:`.lesion_table`) and the coronal MIP picture (:mod:`.mip`).

Importing this package imports nothing; the table and the picture import no torch.
"""
