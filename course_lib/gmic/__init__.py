"""GMIC, the globally-aware multiple instance classifier (Shen et al., Medical Image Analysis 2021),
used by notebook ``05_gmic_saliency`` (and by ``01_dicom_and_preprocessing`` for its preprocessing).

What lives where:

- :mod:`~course_lib.gmic.config`: the numbers, written once and without torch:
  :class:`~course_lib.gmic.config.GMICGeometry` (window, crop margin and erosions, ROI size;
  ``official()``, ``quarter()``, ``eighth()``), :class:`~course_lib.gmic.config.GMICConfig`
  (top-t%, number of ROIs) and the phantom-training recipe;
- :mod:`~course_lib.gmic.preprocess`: stage 1 (crop), stage 2 (optimal centre), the model
  window, masks into the model frame, and the per-image step of ``course-kit preprocess --for gmic``;
- :mod:`~course_lib.gmic.model`: the network, the six steps of the paper top to bottom
  (torch); :mod:`~course_lib.gmic.compact_map`: its exact padding skip;
- :mod:`~course_lib.gmic.weights`: the official weights (registry) and the kit's phantom weights;
- :mod:`~course_lib.gmic.predict`: ``run.sh`` as a function: exam list -> ``predictions.csv`` and figures;
- :mod:`~course_lib.gmic.train`: the paper's loss and the training loop;
- :mod:`~course_lib.gmic.evaluate`: image AUC, pointing game and saliency Dice on phantoms;
- :mod:`~course_lib.gmic.gradcam`: Grad-CAM of the global network, for comparison;
- :mod:`~course_lib.gmic.figures`: the official per-image figure;
- :mod:`~course_lib.gmic.data`: GMIC's sample-data layout written with phantoms;
- :mod:`~course_lib.gmic.exercises`: the checks of lesson 05's exercises;
- :mod:`~course_lib.gmic.cli`: ``course-kit gmic predict`` and ``course-kit gmic train``.
"""
