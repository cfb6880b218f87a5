"""The verdict: is a model's test macro-F1 different from the base model's, beyond test-set and seed noise?

Paired bootstrap over test documents. Both models were evaluated on the same test documents with the same
few-shot training samples (seed s draws the same sample for every model), so the comparison is paired twice:
by document and by seed. One bootstrap resample draws T test documents with replacement; on that resample
the statistic is the mean over seeds of macro-F1(model, seed s) - macro-F1(base, seed s). The 95% interval
is the 2.5 / 97.5 percentiles of the statistic over the resamples, and the verdict reads it:
"better" (interval above 0), "worse" (below 0), "no different" (it contains 0).

The interval covers the test-set sampling noise of the seed-averaged difference. The spread over seeds (the
sample std of the per-seed differences) is reported beside it: it says how much one seed's conclusion
could differ from another's.

Macro-F1 on a resample is the definition of `metrics.macro_f1` (classes present in the resample's labels or
predictions, zero_division 0), computed for all resamples at once from document weights:
w_BxT[b, t] = number of times resample b drew document t, so that every count of the confusion matrix that
macro-F1 needs is a matmul w_BxT @ indicator_TxC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

VERDICTS = ("better", "no different", "worse")


BLOCK = 250   # resamples scored together: bounds memory at BLOCK x T weights (T = 20,000 test docs: 20 MB)


def resample_weights(n_docs: int, n_boot: int, seed: int) -> np.ndarray:
  """float32 [n_boot, n_docs]: how many times each bootstrap resample drew each document (rows sum to n_docs).

  Row b is drawn as the b-th row of rng.integers(0, n_docs, size=(n_boot, n_docs)) for
  rng = default_rng(seed), so a plain loop over those rows draws the same resamples."""
  return np.concatenate([w for w in _weight_blocks(n_docs, n_boot, seed)])


def _weight_blocks(n_docs: int, n_boot: int, seed: int):
  # Drawing row blocks one after another consumes the generator's stream in the same order as one
  # (n_boot, n_docs) draw, so the resamples do not depend on BLOCK.
  rng = np.random.default_rng(seed)
  for start in range(0, n_boot, BLOCK):
    b = min(BLOCK, n_boot - start)
    draws_BxT = rng.integers(0, n_docs, size=(b, n_docs))
    flat = (np.arange(b)[:, None] * n_docs + draws_BxT).ravel()
    yield np.bincount(flat, minlength=b * n_docs).reshape(b, n_docs).astype(np.float32)


def weighted_macro_f1(w_BxT: np.ndarray, y_T: np.ndarray, pred_T: np.ndarray, num_classes: int) -> np.ndarray:
  """float64 [B]: macro-F1 of predictions pred_T against y_T on each weighted resample (row of w_BxT).

  With a row of ones this is metrics.macro_f1 (2 TP / (2 TP + FP + FN), averaged over classes present in
  labels or predictions)."""
  eye_CxC = np.eye(num_classes, dtype=np.float32)
  true_TxC, pred_TxC = eye_CxC[np.asarray(y_T)], eye_CxC[np.asarray(pred_T)]
  # one matmul for all three counts; float32 sums of integer weights are exact below 2^24 documents
  counts_Bx2C = (np.asarray(w_BxT, np.float32) @ np.concatenate([true_TxC * pred_TxC, true_TxC + pred_TxC], 1))
  tp_BxC = counts_Bx2C[:, :num_classes].astype(np.float64)
  denom_BxC = counts_Bx2C[:, num_classes:].astype(np.float64)   # 2 TP + FP + FN
  present_BxC = denom_BxC > 0
  f1_BxC = np.divide(2 * tp_BxC, denom_BxC, out=np.zeros_like(tp_BxC), where=present_BxC)
  return f1_BxC.sum(1) / np.maximum(present_BxC.sum(1), 1)


def paired_bootstrap(y_T: np.ndarray, pred_model_SxT: np.ndarray, pred_base_SxT: np.ndarray, *, num_classes: int,
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
  """The paired difference in test macro-F1 between a model and the base, with its interval and verdict.

  y_T: true class of each test document; pred_*_SxT: predicted class per (seed, document), row s of both
  from the same seed (the same training sample). Returns diff (mean over seeds of the per-seed differences on
  the full test set), ci_low / ci_high (percentile interval of the same statistic over `n_boot` resamples of
  the test documents, seeded by `seed`), seed_std (sample std of the per-seed differences, 0 for one seed),
  n_seeds, n_test, n_boot, level and verdict.
  """
  pred_model_SxT, pred_base_SxT = np.atleast_2d(pred_model_SxT), np.atleast_2d(pred_base_SxT)
  n_seeds, n_test = pred_model_SxT.shape
  if pred_base_SxT.shape != (n_seeds, n_test) or len(y_T) != n_test or n_seeds == 0 or n_test == 0:
    raise ValueError(f"paired predictions need equal non-empty shapes: model {pred_model_SxT.shape}, "
                     f"base {pred_base_SxT.shape}, labels {np.shape(y_T)}")
  diff_of = lambda w_BxT, s: (weighted_macro_f1(w_BxT, y_T, pred_model_SxT[s], num_classes)
                              - weighted_macro_f1(w_BxT, y_T, pred_base_SxT[s], num_classes))
  diff_S = np.array([diff_of(np.ones((1, n_test)), s)[0] for s in range(n_seeds)])
  # the same resamples for every seed and both models: the pairing by document
  boot_B = np.concatenate([np.mean([diff_of(w_BxT, s) for s in range(n_seeds)], axis=0)
                           for w_BxT in _weight_blocks(n_test, n_boot, seed)])
  alpha = (1.0 - level) / 2
  lo, hi = np.quantile(boot_B, [alpha, 1.0 - alpha])
  verdict = "better" if lo > 0 else "worse" if hi < 0 else "no different"
  return {"diff": float(diff_S.mean()), "ci_low": float(lo), "ci_high": float(hi),
          "seed_std": float(diff_S.std(ddof=1)) if n_seeds > 1 else 0.0, "n_seeds": int(n_seeds),
          "n_test": int(n_test), "n_boot": int(n_boot), "level": float(level), "verdict": verdict}


def verdict_rows(preds: dict[tuple, np.ndarray], y_T: np.ndarray, base: str, models: list[str], *,
                 num_classes: int, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[dict[str, Any]]:
  """One verdict per (model other than `base`, mode, shots) that both the model and the base have.

  preds: (model, mode, shots, seed) -> predicted class of every test document [T]. Only seeds both models
  have are paired (a failed fine-tune seed of either side drops out, counted in n_seeds).
  """
  out = []
  cells = list(dict.fromkeys((m, mode, shots) for (m, mode, shots, _) in preds))
  for model in models:
    if model == base:
      continue
    for (m, mode, shots) in cells:
      if m != model:
        continue
      seeds = [s for (mm, md, sh, s) in preds if (mm, md, sh) == (model, mode, shots)
               and (base, mode, shots, s) in preds]
      if not seeds:
        continue
      res = paired_bootstrap(y_T, np.stack([preds[(model, mode, shots, s)] for s in seeds]),
                             np.stack([preds[(base, mode, shots, s)] for s in seeds]),
                             num_classes=num_classes, n_boot=n_boot, seed=seed, level=level)
      out.append({"model": model, "base": base, "mode": mode, "shots": shots, "metric": "macro_f1",
                  "split": "test", **res})
  return out


def chosen_on_validation(runs: list[dict[str, Any]], plan) -> list[dict[str, Any]]:
  """For each model listed with several embeddings (config.models entries of one model spec, e.g. `minilm`
  and `minilm#window=128#pooling=mean`), per (mode, shots): the entry with the best validation macro-F1, mean
  over seeds (ties: the entry listed first). The test split plays no part in the choice; its test score and
  verdict are then read from the rows of the chosen entry.

  runs: results.json rows; plan: evaluators.Plan. Returns rows {model, mode, shots, chosen, embedding,
  val_macro_f1: {entry: mean}}."""
  groups: dict[str, list[str]] = {}
  for entry in plan.models:
    groups.setdefault(plan.model_spec(entry), []).append(entry)
  out = []
  for spec, entries in groups.items():
    if len(entries) < 2:
      continue
    cells = list(dict.fromkeys((r["mode"], r["shots"]) for r in runs if r["model"] in entries))
    for mode, shots in cells:
      val = {e: [r["macro_f1"] for r in runs if (r["model"], r["mode"], r["shots"], r["split"])
                 == (e, mode, shots, "validation") and r.get("macro_f1") is not None] for e in entries}
      means = {e: float(np.mean(v)) for e, v in val.items() if v}
      if len(means) < 2:
        continue
      best = max(means, key=lambda e: (means[e], -entries.index(e)))
      out.append({"model": spec, "mode": mode, "shots": shots, "chosen": best,
                  "embedding": plan.embedding_label(best, mode), "val_macro_f1": means})
  return out


def paired_bootstrap_mean(model_T: np.ndarray, base_T: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                          level: float = 0.95) -> dict[str, Any]:
  """The paired difference of a per-item score's mean (e.g. nDCG@10 per test query) between a model and a
  base, scored on the same items: diff = mean(model_T - base_T), its percentile interval over `n_boot`
  resamples of the items (the resamples of `resample_weights(T, n_boot, seed)`), and the verdict."""
  model_T, base_T = np.asarray(model_T, np.float64), np.asarray(base_T, np.float64)
  if model_T.shape != base_T.shape or model_T.ndim != 1 or len(model_T) == 0:
    raise ValueError(f"paired scores need equal non-empty 1-D shapes: {model_T.shape} vs {base_T.shape}")
  d_T = model_T - base_T
  n = len(d_T)
  boot_B = np.concatenate([w_BxT.astype(np.float64) @ d_T / n for w_BxT in _weight_blocks(n, n_boot, seed)])
  alpha = (1.0 - level) / 2
  lo, hi = np.quantile(boot_B, [alpha, 1.0 - alpha])
  verdict = "better" if lo > 0 else "worse" if hi < 0 else "no different"
  return {"diff": float(d_T.mean()), "ci_low": float(lo), "ci_high": float(hi), "n_test": int(n),
          "n_boot": int(n_boot), "level": float(level), "verdict": verdict}


def score_verdict_rows(scores: dict[tuple[str, str], dict[str, np.ndarray]], references: list[tuple[str, str]], *,
                       metric: str, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict[str, Any]]:
  """One verdict per (row, reference) for rows scored per test item (retrieval: per query).

  scores: (model, mode) -> {metric: float [T]}, every row over the same T items in the same order.
  references: the (model, mode) rows to compare every other row with (the base's dense row, BM25's row), in
  order; a row is not compared with itself."""
  out = []
  for ref in references:
    if ref not in scores:
      continue
    for row, per in scores.items():
      if row == ref or metric not in per:
        continue
      res = paired_bootstrap_mean(per[metric], scores[ref][metric], n_boot=n_boot, seed=seed, level=level)
      out.append({"model": row[0], "base": ref[0], "mode": row[1], "base_mode": ref[1], "shots": None,
                  "metric": metric, "split": "test", "n_seeds": 1, "seed_std": 0.0, **res})
  return out
