"""small-lesion-il: small-lesion segmentation with intensity-distribution supervision (arXiv 2207.14700).

A 3D U-Net with a second output channel that predicts the voxel-wise intensity likelihood ``L(HU)`` of
the lesions, a kernel density estimate of lesion HU on the anisotropic-diffusion-smoothed CT
(:mod:`.prior`), a seeded synthetic small-bowel cohort and real CTs with inserted lesions written as a dataset
(:mod:`.data`), training (:mod:`.train`), the paper's Table 1 (:mod:`.evaluate`), the predict-time options
(:mod:`.options`) and the ``lesionseg prior`` command (:mod:`.cli_prior`). Importing this package imports no
torch; importing :mod:`.segmenter` registers the ``small-lesion-il`` method and its spec.
"""
