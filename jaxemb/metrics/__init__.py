"""Pure metrics, below training and evaluation alike (as big_vision's evaluators serve both): classification
metrics and macro-F1 (`classification.py`), the paired bootstrap verdict (`compare.py`), embedding geometry
(`geometry.py`: alignment, uniformity, kNN, clustering) and the cross-validated probe that scores a validation
split (`cv_probe.py`). NumPy / scikit-learn on host arrays; no jaxemb module above `jaxemb.metrics` is imported.
"""
