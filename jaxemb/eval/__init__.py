"""The evaluator: loads encoders, embeds a labelled corpus once (cached), and judges it.

dataset.py (load/split/label decisions, EvalError) -> cache.py (embedding cache keyed by model identity,
texts, settings) -> fewshot.py (seeded N-per-class samples) -> probe.py (frozen encoder: heads on cached
embeddings, vmapped over seeds) / finetune.py (encoder + head) / tfidf.py (non-neural reference) ->
metrics.py (NumPy metrics) and geometry.py (alignment, uniformity, clustering, 2-D maps) -> report.py
(results.json / .csv / report.md / plots). heads.py holds the classification heads; embed.py is the
`python -m jaxemb.eval.embed` entry point. The CLI is eval.py at the repository root.
"""
