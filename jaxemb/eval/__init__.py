"""The evaluator: loads encoders, embeds a labelled corpus once (cached), and judges it.

dataset.py (load/split/label decisions, EvalError) -> cache.py (embedding cache keyed by model identity,
texts, settings) -> fewshot.py (seeded N-per-class samples) -> evaluators/ (the plug-ins eval.py runs, one
module each: probe, geometry, finetune, tfidf; they call probe.py (frozen encoder: heads on cached
embeddings, vmapped over seeds), finetune.py (encoder + head), tfidf.py (non-neural reference) and
geometry.py (alignment, uniformity, clustering, 2-D maps)) -> metrics.py (NumPy metrics) -> compare.py (the
verdict: paired bootstrap against the base model) -> report.py (results.json / .csv / report.md / plots).
resume.py keeps results.json after every unit and reads it back on a rerun. heads.py holds the
classification heads; embed.py is the `python -m jaxemb.eval.embed` entry point. The CLI is eval.py at the
repository root.
"""
