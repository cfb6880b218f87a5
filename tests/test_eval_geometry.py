"""Embedding geometry on constructed clusters, and the closed forms against direct double loops."""

import numpy as np
import pytest

from jaxemb.metrics.geometry import alignment, embedding_geometry, knn_accuracy, l2_normalize, uniformity


def _two_tight_far_clusters(n_per=20, d=8, seed=0):
  rng = np.random.default_rng(seed)
  a, b = np.zeros(d), np.zeros(d)
  a[0], b[1] = 1.0, 1.0  # orthogonal directions: far apart on the sphere
  z = np.concatenate([a + 1e-3 * rng.normal(size=(n_per, d)), b + 1e-3 * rng.normal(size=(n_per, d))])
  return z, np.array(["a"] * n_per + ["b"] * n_per)


def test_two_tight_far_clusters():
  z, labels = _two_tight_far_clusters()
  g = embedding_geometry(z, labels)
  assert g["alignment"] < 1e-4
  assert g["silhouette"] > 0.99
  assert g["kmeans_nmi"] == pytest.approx(1.0)
  assert g["kmeans_ari"] == pytest.approx(1.0)
  assert g["knn_accuracy"] == 1.0
  # half the pairs at distance^2 ~0, half at ~2 (orthogonal unit vectors): log(mean(exp(-2 d^2)))
  n = len(z)
  same, cross = 2 * (n // 2) * (n // 2 - 1) / 2, (n // 2) ** 2
  assert g["uniformity"] == pytest.approx(np.log((same + cross * np.exp(-4.0)) / (same + cross)), abs=1e-3)


def test_alignment_and_uniformity_match_double_loops():
  rng = np.random.default_rng(1)
  z = l2_normalize(rng.normal(size=(30, 5)))
  labels = rng.integers(0, 4, 30)
  same, every = [], []
  for i in range(len(z)):
    for j in range(i + 1, len(z)):
      d2 = float(((z[i] - z[j]) ** 2).sum())
      every.append(np.exp(-2 * d2))
      if labels[i] == labels[j]:
        same.append(d2)
  assert alignment(z, labels) == pytest.approx(np.mean(same), rel=1e-9)
  assert uniformity(z) == pytest.approx(np.log(np.mean(every)), rel=1e-9)
  assert uniformity(z, block=7) == pytest.approx(np.log(np.mean(every)), rel=1e-9)  # blocking is exact


def test_knn_is_leave_one_out():
  # each point's nearest OTHER neighbours are of the other class: LOO accuracy 0 (self-match would give 1)
  z = np.array([[1, 0], [0.99, 0.14], [-1, 0], [-0.99, 0.14]], float)
  labels = np.array([0, 1, 0, 1])
  assert knn_accuracy(z, labels, k=1) == 0.0
