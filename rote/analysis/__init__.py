"""Per-example memorisation scores, read from a run's per-example record.

Pure numpy, and it imports nothing from experiments, the CLI or reporting, so
a score can be recomputed from ``examples.npz`` alone, anywhere:

- ``examples``: the record itself (``examples.npz``), shared by writer and reader.
- ``scores``: the training-dynamics scores of the literature, one value per example.
- ``detection``: how well each score finds the labels rote changed.
- ``memorization``: Feldman & Zhang's estimator from models trained on subsets.
"""
