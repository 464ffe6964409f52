"""end2end: Shen et al.'s patch classifier -> whole-image classifier, in Keras 3 (lesson 03).

Shen L., Margolies L. R., Rothstein J. H. et al., *Deep learning to improve breast
cancer detection on screening mammography*, Scientific Reports 9:12495 (2019);
public repository lishen/end2end-all-conv. Written from the paper and measured
facts, not from the original code. Used by ``notebooks/03_patch_to_whole_image.ipynb``.

What lives where (each module imports its heavy libraries itself; importing this
package imports neither TensorFlow nor pandas):

- :mod:`~course_lib.end2end.scaling`: the intensity rule, stated once (rescale
  factor from the data's real bit depth; featurewise mean).
- :mod:`~course_lib.end2end.patches`: patch sampling from images and ROI masks
  (overlap rules, hard negatives, background, patient-level split, 3/5 classes,
  16-bit PNG patches and ``index.csv``).
- :mod:`~course_lib.end2end.data`: SYNTHETIC phantom folders in the converted
  CBIS-DDSM layout; loading whole images and their lesion masks.
- :mod:`~course_lib.end2end.model`: patch classifiers (``kit_small``, ResNet50,
  VGG16), the whole-image model (trunk + ResNet- or VGG-style top blocks) and the
  fully convolutional heatmap model.
- :mod:`~course_lib.end2end.train`: determinism, the three-stage patch schedule,
  the two-stage whole-image schedule, float16 weights with a model card.
- :mod:`~course_lib.end2end.predict`: model input, flip TTA, model averaging,
  the one-pass heatmap and its patch-loop check, Grad-CAM.
- :mod:`~course_lib.end2end.evaluate`: ROC AUC with a bootstrap interval,
  calibration, operating points, the pointing game.
- :mod:`~course_lib.end2end.pipeline`: the lesson's whole run in one call.
- :mod:`~course_lib.end2end.cli`: ``course-kit end2end sample-patches | train | predict``.
- :mod:`~course_lib.end2end.exercises`: the checks of the lesson's exercises.
"""
