"""Nothing lost on a crash: results.json is rewritten after every finished unit (model x mode), and a rerun of
the same command reads it back and skips the finished units.

A unit's rows are kept for a rerun only when
- the results.json was written for the same evaluation: same config (apart from the fields that only choose
  WHAT runs: models, modes, tfidf, geometry.enabled, and where caches live), same documents (a digest of the
  texts in order) and the same dataset decisions (split sizes, classes, ...): the `resume.key`;
- the model is the same: the unit records the model's fingerprint (paths, sizes and mtimes of the files that
  define its weights, `cache.model_fingerprint`); a workdir whose latest checkpoint moved is evaluated again;
- its test predictions (for the verdict) are on disk: predictions/MODEL.UNIT.npz (int arrays, loaded with
  allow_pickle=False), and its per-item test scores (retrieval: a metric per test query) in
  predictions/MODEL.UNIT.scores.npz (float arrays).
Every file is written to a temporary name and moved into place (os.replace), so an interruption leaves the
previous complete version, never a truncated one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jaxemb.eval.fewshot import Shots
from jaxemb.eval.report import json_safe, model_slug

# Config fields that choose what runs or where caches go, not what a unit computes: changing them keeps the
# finished units (adding a model to config.models evaluates only that model).
_NOT_IN_KEY = ("models", "modes", "tfidf", "compilation_cache", "cache_dir", "verdict")


def resume_key(config: dict[str, Any], dataset: dict[str, Any], texts_sha256: str) -> str:
  """sha256 of what makes a finished unit reusable: the config (less _NOT_IN_KEY), the dataset decisions and
  the documents."""
  cfg = {k: v for k, v in config.items() if k not in _NOT_IN_KEY}
  cfg["geometry"] = {k: v for k, v in cfg.get("geometry", {}).items() if k != "enabled"}
  blob = json.dumps({"config": cfg, "dataset": dataset, "texts": texts_sha256}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()


def fingerprint_sha(fingerprint: Any) -> str:
  return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _json_round_trip(x: Any) -> Any:
  """What a row looks like once read back from results.json (NaN -> None, numpy -> Python, tuples ->
  lists): fresh and resumed rows are then the same objects."""
  return json.loads(json.dumps(json_safe(x)))


class ResultsStore:
  """The finished units of one evaluation and their rows: runs (by model and mode), geometry (by model),
  failed runs (by model and mode), test predictions and timings."""

  def __init__(self, out: Path, key: str, log: Callable[[str], None] = print):
    self.out, self.key, self.log = Path(out), key, log
    self.path, self.pred_dir = self.out / "results.json", self.out / "predictions"
    self.units: dict[tuple[str, str], dict[str, Any]] = {}
    self.runs: list[dict] = []
    self.geometry: list[dict] = []
    self.failed: list[dict] = []
    self.preds: dict[tuple[str, str], dict[tuple[Shots, int], np.ndarray]] = {}
    self.scores: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    self.timings: dict[str, float] = {}
    self._load()

  # ---- reading back ------------------------------------------------------------------------------------
  def _pred_path(self, model: str, unit: str) -> Path:
    return self.pred_dir / f"{model_slug(model)}.{unit}.npz"

  def _scores_path(self, model: str, unit: str) -> Path:
    return self.pred_dir / f"{model_slug(model)}.{unit}.scores.npz"

  def _load(self) -> None:
    if not self.path.exists():
      return
    try:
      doc = json.loads(self.path.read_text())
    except (OSError, ValueError) as e:
      self.log(f"resume: {self.path} is unreadable ({e}); starting over")
      return
    resume = doc.get("resume") or {}
    if resume.get("key") != self.key:
      self.log(f"resume: {self.path} was written for another config or corpus (or by an older jaxemb); "
               "starting over")
      return
    for u in resume.get("units", []):
      model, unit = u["model"], u["unit"]
      try:
        preds = self._read_preds(model, unit) if u.get("has_predictions") else {}
        if u.get("has_scores"):
          with np.load(self._scores_path(model, unit), allow_pickle=False) as z:
            self.scores[(model, unit)] = {k: z[k] for k in z.files}
      except (OSError, ValueError, KeyError) as e:
        self.log(f"resume: predictions of {model} / {unit} unreadable ({e}); that unit runs again")
        continue
      self.units[(model, unit)] = u
      self.preds[(model, unit)] = preds
    kept = lambda r, unit: (r["model"], unit) in self.units
    self.runs = [r for r in doc.get("runs", []) if kept(r, r["mode"])]
    self.geometry = [g for g in doc.get("geometry", []) if kept(g, "geometry")]
    self.failed = [f for f in doc.get("failed", []) if kept(f, f["mode"])]
    self.timings = {k: v for k, v in doc.get("timings_s", {}).items()}
    if self.units:
      self.log(f"resume: {len(self.units)} finished unit(s) read back from {self.path} (delete it to start "
               "over)")

  def _read_preds(self, model: str, unit: str) -> dict[tuple[Shots, int], np.ndarray]:
    with np.load(self._pred_path(model, unit), allow_pickle=False) as z:
      pred_RxT, shots_R, seed_R = z["pred_RxT"], z["shots_R"], z["seed_R"]
    return {("all" if str(sh) == "all" else int(sh), int(s)): pred_RxT[r]
            for r, (sh, s) in enumerate(zip(shots_R, seed_R))}

  def done(self, model: str, unit: str, fingerprint: str) -> bool:
    """True when (model, unit) finished earlier for this very model; a stale unit is dropped here."""
    u = self.units.get((model, unit))
    if u is None:
      return False
    if u["fingerprint"] == fingerprint:
      return True
    self.log(f"resume: {model} changed since its {unit} results were written; running it again")
    self._drop(model, unit)
    return False

  def _drop(self, model: str, unit: str) -> None:
    self.units.pop((model, unit), None)
    self.preds.pop((model, unit), None)
    self.scores.pop((model, unit), None)
    self.runs = [r for r in self.runs if (r["model"], r["mode"]) != (model, unit)]
    self.failed = [f for f in self.failed if (f["model"], f["mode"]) != (model, unit)]
    if unit == "geometry":
      self.geometry = [g for g in self.geometry if g["model"] != model]

  # ---- adding a finished unit --------------------------------------------------------------------------
  def add(self, model: str, unit: str, fingerprint: str, result: Any, seconds: float) -> None:
    """Records a finished unit (a base.UnitResult) and writes its predictions; call save() next."""
    self._drop(model, unit)
    if result.preds:
      keys = list(result.preds)
      path = self._pred_path(model, unit)
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
      with open(tmp, "wb") as f:
        np.savez(f, pred_RxT=np.stack([result.preds[k] for k in keys]).astype(np.int32),
                 shots_R=np.array([str(k[0]) for k in keys]), seed_R=np.array([k[1] for k in keys], np.int64))
      os.replace(tmp, path)
    self.preds[(model, unit)] = dict(result.preds)
    if result.scores:
      path = self._scores_path(model, unit)
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
      with open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v, np.float64) for k, v in result.scores.items()})
      os.replace(tmp, path)
      self.scores[(model, unit)] = dict(result.scores)
    self.runs += _json_round_trip(result.runs)
    self.geometry += _json_round_trip(result.geometry)
    self.failed += _json_round_trip(result.failed)
    self.units[(model, unit)] = {"model": model, "unit": unit, "fingerprint": fingerprint,
                                 "seconds": round(seconds, 3), "has_predictions": bool(result.preds),
                                 "has_scores": bool(result.scores)}
    self.timings[f"{model}/{unit}"] = round(seconds, 3)

  # ---- the document, in the plan's order ----------------------------------------------------------------
  def ordered(self, order: list[tuple[str, str]]) -> dict[str, Any]:
    """results.json's runs / geometry / failed / resume (key, finished units) for the units in `order` (the
    plan's order), so a resumed run's results.json lists its rows exactly as an uninterrupted run's does;
    units not in the plan drop out."""
    rank = {k: i for i, k in enumerate(order)}
    key_of = lambda r, unit: rank.get((r["model"], unit))
    by = lambda rows, unit_of: sorted([r for r in rows if key_of(r, unit_of(r)) is not None],
                                      key=lambda r: key_of(r, unit_of(r)))   # stable: keeps a unit's order
    return {"runs": by(self.runs, lambda r: r["mode"]), "geometry": by(self.geometry, lambda g: "geometry"),
            "failed": by(self.failed, lambda f: f["mode"]),
            "resume": {"key": self.key, "units": [self.units[k] for k in order if k in self.units]}}

  def test_scores(self, order: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """(model, mode) -> {metric: per-item test score [T]}, for the units in `order` that have them."""
    return {k: self.scores[k] for k in order if k in self.scores}

  def test_predictions(self, order: list[tuple[str, str]]) -> dict[tuple, np.ndarray]:
    """(model, mode, shots, seed) -> predicted class of every test document, for the units in `order`."""
    return {(model, unit, shots, seed): pred for (model, unit) in order
            for (shots, seed), pred in self.preds.get((model, unit), {}).items()}
