"""Geometry of the model's test-split embeddings (jaxemb/metrics/geometry.py): alignment, uniformity,
silhouette, kNN, k-means agreement, by label and by metadata category, and 2-D maps. Unit: "geometry".

Large test splits are measured on a seeded subset of config.geometry.max_points documents, the same for every
model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxemb.eval.evaluators.base import Context, Evaluator, ModelHandle, Plan, UnitResult


class GeometryEvaluator(Evaluator):
  name = "geometry"

  def __init__(self, cfg: Any, plan: Plan):
    super().__init__(cfg, plan)
    g = cfg.geometry
    self.knn_k, self.seed = int(g.knn_k), int(g.kmeans_seed)
    self.maps, self.max_points = bool(g.maps), int(g.max_points)

  def units(self) -> list[str]:
    return ["geometry"]

  def _subset(self, ctx: Context) -> np.ndarray:
    te = ctx.data.split_idx["test"]
    if len(te) <= self.max_points:
      return te
    return np.sort(np.random.default_rng(self.seed).choice(te, self.max_points, replace=False))

  def run(self, unit: str, model: ModelHandle, ctx: Context) -> UnitResult:
    from jaxemb.eval.maps import plot_map, project_2d
    from jaxemb.metrics.geometry import embedding_geometry
    from jaxemb.eval.report import model_slug
    data, spec = ctx.data, model.spec
    geo_idx = self._subset(ctx)
    if len(geo_idx) < len(data.split_idx["test"]):
      ctx.log(f"  geometry: seeded subset of {len(geo_idx)} of {len(data.split_idx['test'])} test documents")
    z_NxD = model.embeddings()
    views = [("label", data.info["fields"]["label"], [data.class_names[y] for y in data.y_N[geo_idx]],
              np.ones(len(geo_idx), bool))]
    if data.info["fields"]["metadata"]:
      meta = [data.metadata[i] for i in geo_idx]
      views.append(("metadata", data.info["fields"]["metadata"], meta, np.array([m is not None for m in meta])))
    out, xy = UnitResult(), None
    for role, field, cats, keep in views:
      if keep.sum() < 3 or len(set(c for c, k in zip(cats, keep) if k)) < 2:
        ctx.log(f"  geometry by {field}: skipped (fewer than 3 documents or 2 categories)")
        continue
      cats_k = np.array([c for c, k in zip(cats, keep) if k])
      g = embedding_geometry(z_NxD[geo_idx][keep], cats_k, knn_k=self.knn_k, kmeans_seed=self.seed)
      g = {"model": spec, "field": field, "role": role, **g, "n_missing_category": int((~keep).sum())}
      ctx.log(f"  geometry by {field}: alignment {g['alignment']:.3f} uniformity {g['uniformity']:.3f} "
              f"silhouette {g['silhouette']:.3f} kNN {g['knn_accuracy']:.3f} NMI {g['kmeans_nmi']:.3f}")
      if self.maps:
        if xy is None:
          xy, method = project_2d(z_NxD[geo_idx], seed=self.seed)
        rel = f"maps/{model_slug(spec)}_{role}.png"
        plot_map(xy[keep], cats_k, f"{model_slug(spec)}: test split by {field}", ctx.out / rel, method)
        g["map"] = rel
      out.geometry.append(g)
    return out
