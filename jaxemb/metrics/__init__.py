"""Pure metrics, below training and evaluation alike (as big_vision's evaluators serve both): classification
metrics and macro-F1 (`classification.py`), the paired bootstrap verdict (`compare.py`), embedding geometry
(`geometry.py`: alignment, uniformity, kNN, clustering), the cross-validated probe that scores a validation
split (`cv_probe.py`) and retrieval (`retrieval.py`: exact dense search in blocks, pytrec_eval's per-query IR
metrics, one-corpus judgements). NumPy / scikit-learn / pytrec_eval on host arrays (the dense search's blocks
run on the default jax device); no jaxemb module above `jaxemb.metrics` is imported.
"""
