"""2-D maps of an embedding space coloured by category (UMAP when installed, else t-SNE), for the geometry
evaluator's report. The scalar geometry measures are `jaxemb/metrics/geometry.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jaxemb.metrics.geometry import l2_normalize


def project_2d(z_NxD: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
  """2-D coordinates (UMAP, cosine, when umap-learn is importable; else t-SNE on normalised vectors)."""
  z = l2_normalize(z_NxD)
  try:
    import umap  # optional dependency
    return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(z), "UMAP"
  except ImportError:
    pass
  from sklearn.manifold import TSNE
  perplexity = float(max(2.0, min(30.0, (len(z) - 1) / 3.0)))
  xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(z)
  return xy, "t-SNE"


def plot_map(xy_Nx2: np.ndarray, labels_N: Sequence[Any], title: str, path: Path, method: str) -> None:
  """Scatter coloured by category; the legend lists at most 20 categories (the rest share grey)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  labels_N = np.asarray([str(v) for v in labels_N])
  cats, counts = np.unique(labels_N, return_counts=True)
  cats = cats[np.argsort(-counts, kind="stable")]
  # tab20 pairs a dark and a light shade of each hue; with <= 10 categories tab10 keeps them distinct
  cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
  fig, ax = plt.subplots(figsize=(7, 6))
  for i, c in enumerate(cats):
    m = labels_N == c
    color = cmap(i) if i < cmap.N else (0.7, 0.7, 0.7, 1.0)
    ax.scatter(xy_Nx2[m, 0], xy_Nx2[m, 1], s=8, color=color, label=c if i < cmap.N else None, alpha=0.8)
  ax.set_title(f"{title} ({method})")
  ax.set_xticks([])
  ax.set_yticks([])
  ax.legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
