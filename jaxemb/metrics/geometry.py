"""Embedding-space geometry by category: alignment, uniformity, silhouette, k-means NMI/ARI, kNN accuracy (the
2-D map is `jaxemb/eval/maps.py`).

Alignment and uniformity follow Wang & Isola (2020) on L2-normalised embeddings, with "positive pairs" =
distinct documents of the same category:
  alignment  = mean ||x - y||^2 over same-category pairs (lower = categories tighter; 0 = collapsed);
  uniformity = log mean exp(-2 ||x - y||^2) over all distinct pairs (lower = more spread on the sphere).
Both come from pair sums in closed form (no N^2 Python loop); tests check them against a double loop.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def l2_normalize(z_NxD: np.ndarray) -> np.ndarray:
  z_NxD = np.asarray(z_NxD, np.float64)
  return z_NxD / np.maximum(np.linalg.norm(z_NxD, axis=1, keepdims=True), 1e-12)


def alignment(z_NxD: np.ndarray, labels_N: np.ndarray) -> float:
  """Mean squared distance over unordered same-label pairs of distinct rows (inputs already normalised).

  Per category c with rows z_1..z_n: sum_{i<j} ||z_i - z_j||^2 = n * sum_i ||z_i||^2 - ||sum_i z_i||^2.
  NaN when no category has two members.
  """
  labels_N = np.asarray(labels_N)
  total, pairs = 0.0, 0
  for c in np.unique(labels_N):
    zc = np.asarray(z_NxD[labels_N == c], np.float64)
    n = len(zc)
    if n < 2:
      continue
    total += n * float((zc ** 2).sum()) - float((zc.sum(0) ** 2).sum())
    pairs += n * (n - 1) // 2
  return total / pairs if pairs else float("nan")


def uniformity(z_NxD: np.ndarray, t: float = 2.0, block: int = 2048) -> float:
  """log mean_{i<j} exp(-t ||z_i - z_j||^2), computed in row blocks with a stable log-sum-exp."""
  z = np.asarray(z_NxD, np.float64)
  n = len(z)
  if n < 2:
    return float("nan")
  sq_N = (z ** 2).sum(1)
  logs, counts = [], 0
  for start in range(0, n, block):
    zb = z[start:start + block]
    d2_BxN = np.maximum(sq_N[start:start + block, None] + sq_N[None, :] - 2 * zb @ z.T, 0.0)
    # keep j > i only: each unordered pair once, no self pairs
    upper_BxN = np.arange(n)[None, :] > np.arange(start, start + len(zb))[:, None]
    vals = -t * d2_BxN[upper_BxN]
    if len(vals):
      m = vals.max()
      logs.append(m + np.log(np.exp(vals - m).sum()))
      counts += len(vals)
  return float(np.logaddexp.reduce(logs) - np.log(counts))


def knn_accuracy(z_NxD: np.ndarray, labels_N: np.ndarray, k: int = 5) -> float:
  """Leave-one-out kNN accuracy with cosine similarity; majority vote, ties broken by summed similarity."""
  z = l2_normalize(z_NxD)
  labels_N = np.asarray(labels_N)
  n = len(z)
  if n < 2:
    return float("nan")
  k = min(k, n - 1)
  _, inv_N = np.unique(labels_N, return_inverse=True)
  sim_NxN = z @ z.T
  np.fill_diagonal(sim_NxN, -np.inf)  # leave one out
  nbr_NxK = np.argpartition(-sim_NxN, k - 1, axis=1)[:, :k]
  votes_NxC = np.zeros((n, inv_N.max() + 1))
  simsum_NxC = np.zeros_like(votes_NxC)
  rows_NxK = np.repeat(np.arange(n)[:, None], k, 1)
  np.add.at(votes_NxC, (rows_NxK, inv_N[nbr_NxK]), 1.0)
  np.add.at(simsum_NxC, (rows_NxK, inv_N[nbr_NxK]), sim_NxN[rows_NxK, nbr_NxK])
  # votes dominate; similarity (|sum| <= k < 1e3) only breaks ties
  pred_N = (votes_NxC * 1e3 + simsum_NxC).argmax(1)
  return float((pred_N == inv_N).mean())


def embedding_geometry(z_NxD: np.ndarray, labels_N: Sequence[Any], *, knn_k: int = 5,
                       kmeans_seed: int = 0) -> dict[str, float]:
  """All scalar geometry measures of one embedding set under one categorisation.

  Silhouette (cosine) and k-means need >= 2 categories and fewer categories than points; otherwise NaN.
  k-means runs on the normalised embeddings with k = number of categories, n_init=10, fixed seed.
  """
  from sklearn.cluster import KMeans
  from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

  labels_N = np.asarray(labels_N)
  z = l2_normalize(z_NxD)
  k = len(np.unique(labels_N))
  out = {"n": int(len(z)), "n_categories": int(k), "alignment": alignment(z, labels_N),
         "uniformity": uniformity(z), "knn_accuracy": knn_accuracy(z, labels_N, knn_k),
         "silhouette": float("nan"), "kmeans_nmi": float("nan"), "kmeans_ari": float("nan")}
  if 2 <= k < len(z):
    out["silhouette"] = float(silhouette_score(z, labels_N, metric="cosine"))
    clusters_N = KMeans(n_clusters=k, n_init=10, random_state=kmeans_seed).fit_predict(z)
    out["kmeans_nmi"] = float(normalized_mutual_info_score(labels_N, clusters_N))
    out["kmeans_ari"] = float(adjusted_rand_score(labels_N, clusters_N))
  return out
