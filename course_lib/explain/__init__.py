"""Explanation methods shared by the lessons (core: imports no pipeline package).

- :mod:`course_lib.explain.keras_gradcam`: Grad-CAM for any Keras 3
  classifier (target layer by name or automatic, chosen or predicted class,
  pre-softmax score); notebook 02 builds it by hand first, notebook 03 reuses it.

Nothing heavy is imported here: ``from course_lib.explain.keras_gradcam import gradcam``.
"""
