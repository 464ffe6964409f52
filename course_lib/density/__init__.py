"""The INFN BI-RADS density pipeline (notebook ``02_density``), in Keras 3 on TensorFlow.

Scapicchio C., Lizzi F. et al., ML-INFN use case "CNN breast density classifier
explainability" (2021), github.com/camillascapicchio/MLINFN-CNNBreastDensityClassifier-Explainability;
re-implemented from its description, not from its code.

What lives where:

- :mod:`~course_lib.density.model`: the ResNet (41 convolutions, 2,262,660
  parameters at 650x650), stable layer names, architecture checks on load;
- :mod:`~course_lib.density.keras2_weights`: the INFN's own Keras 2 ``.h5``
  files (``weights-improvement-46-0.80.h5``) mapped onto that model by graph
  position, kind and shapes, never by Keras 2's automatic names;
- :mod:`~course_lib.density.data`: PNG reading and conversion, nearest
  resize, the original's augmentation as Keras preprocessing layers, tf.data;
- :mod:`~course_lib.density.train`: the original recipe and a short CPU
  recipe, determinism;
- :mod:`~course_lib.density.predict`: prediction files in the original's format;
- :mod:`~course_lib.density.evaluate`: accuracy, macro recall/precision,
  projection averaging, weighted kappa with bootstrap intervals, dense vs non-dense;
- :mod:`~course_lib.density.explain`: Grad-CAM figures and scores against
  dense-tissue masks (the Grad-CAM itself is :mod:`course_lib.explain.keras_gradcam`);
- :mod:`~course_lib.density.histogram_model`: NYU's histogram baseline with its weights;
- :mod:`~course_lib.density.preprocess`: INFN-style 8-bit images from DICOM or PNG;
- :mod:`~course_lib.density.cli`: ``course-kit density train|predict``;
- :mod:`~course_lib.density.exercises`: the checks of notebook 02's exercises.

Nothing heavy is imported here.
"""
