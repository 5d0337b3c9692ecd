"""``recist-coseg``: RECIST line -> GrabCut initial mask -> attention co-segmentation -> DenseCRF.

Agarwal et al., "Weakly-supervised lesion segmentation on CT scans using co-segmentation" (arXiv 2001.08590).
Modules: :mod:`.initial_mask` (crop frame, GrabCut seeding from the axes), :mod:`.network` (Siamese
co-segmentation network), :mod:`.dataset` (lesion slices, RECIST from masks), :mod:`.pairs` (k-means pairs),
:mod:`.train`, :mod:`.evaluate`, :mod:`.segmenter` (the registered method), :mod:`.cli_refine`
(``lesionseg refine``). Importing this package imports no torch.
"""
