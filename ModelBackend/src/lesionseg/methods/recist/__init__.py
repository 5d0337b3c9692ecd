"""``recist-coseg``: RECIST line -> GrabCut initial mask -> attention co-segmentation -> DenseCRF.

Agarwal et al., "Weakly-supervised lesion segmentation on CT scans using co-segmentation" (arXiv 2001.08590).
Modules: :mod:`.initial_mask` (crop frame, GrabCut seeding from the axes, axes measured on a mask, network
input), :mod:`.network` (Siamese co-segmentation network), :mod:`.segmenter` (the registered method, its
``RecistOptions`` and spec), :mod:`.dataset` (training samples from a dataset in the one convention),
:mod:`.pairs` (k-means pairs), :mod:`.train` (``lesionseg train recist-coseg``), :mod:`.evaluate`
(``lesionseg evaluate recist-coseg``), :mod:`.cli_refine` (``lesionseg refine``). Importing this package
imports no torch.
"""
