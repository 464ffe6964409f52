"""A-MIL: attention-based multiple-instance learning on BreakHis histology (lesson 04).

The lesson ``notebooks/04_amil_breakhis.ipynb`` reproduces Patil et al.,
*Breast cancer histopathology image classification and localization using
multiple instance learning* (WIECON-ECE 2019), which applies the attention MIL
of Ilse, Tomczak and Welling (ICML 2018) to BreakHis (Spanhol et al., IEEE TBME
2016), and measures its claim that attention localises tumour better than
Grad-CAM.

What lives where:

- ``data``: BreakHis tables (all layouts) and patient-level splits, bags of
  400 patches built with ``unfold``, padded bags with masks, safe archive
  extraction, SYNTHETIC phantom patients, the UCSB MIL bags;
- ``model``: the instance feature extractor, attention and gated-attention
  pooling, :class:`~course_lib.amil.model.AttentionMIL` (491,828 parameters),
  the clamped Bernoulli loss;
- ``train``: deterministic training (one bag or padded batches per step), the
  CNN baseline's training, kit weights and model cards (``pretrained/``);
- ``evaluate``: accuracy and AUC with patient-bootstrap intervals, localisation
  AUC against tumour masks, the UCSB cross-validation benchmark;
- ``explain``: attention maps stitched onto the image, the CNN baseline,
  Grad-CAM by hand and through ``pytorch-grad-cam``;
- ``cli``: ``course-kit amil train | table | extract | export``;
- ``exercises``: the checks of the lesson's exercises.

Importing this package imports no torch; the modules that need it do.
"""
