"""The evaluator interface and what every evaluator is handed (the plan, the data, a model).

An evaluator is built once from the config (its settings read there, in one place) and then asked, for each
model, to run each of its units. A unit is the smallest piece of work whose result is saved on its own
(`results.json` after every unit, so a rerun resumes after the last finished one); its name is the `mode` of
the rows it writes ("probe", "probe_logreg", "finetune", "tfidf", ...) or "geometry".
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from jaxemb.eval.dataset import EvalData, EvalError
from jaxemb.eval.fewshot import Shots, parse_shots, sample_few_shot
from jaxemb.metrics.classification import classification_metrics
from jaxemb.models.windows import POOLINGS, Windowing


def csv_list(value: Any, where: str) -> list[str]:
  """"a, b,," -> ["a", "b"]; an empty list is an error naming the config field."""
  items = [s.strip() for s in str(value).split(",") if s.strip()]
  if not items:
    raise EvalError(f"config.{where} is empty")
  return items


def settings_from(cls: type, section: Any, where: str, **given: Any) -> Any:
  """The settings dataclass `cls` with every field read from the config section `where` (or `given`).

  The config is the one place a setting's default lives: a field missing from both is an error, so a
  dataclass default never silently stands in for the config's."""
  values = {}
  for f in dataclasses.fields(cls):
    if f.name in given:
      values[f.name] = given[f.name]
    elif f.name in section:
      values[f.name] = section[f.name]
    else:
      raise EvalError(f"config.{where}.{f.name} is missing (a field of {cls.__name__})")
  return cls(**values)


EMBED_KEYS = ("window", "stride", "pooling", "max_windows")


def split_entry(entry: str) -> tuple[str, dict[str, Any]]:
  """A config.models entry "SPEC#key=value#..." -> (model spec, embedding overrides of config.embed).

  "minilm#window=128#pooling=mean" -> ("minilm", {"window": 128, "pooling": "mean"}). Keys: EMBED_KEYS."""
  spec, *parts = entry.split("#")
  over: dict[str, Any] = {}
  for part in parts:
    key, eq, value = part.partition("=")
    if not eq or key.strip() not in EMBED_KEYS:
      raise EvalError(f"config.models entry {entry!r}: {part!r} is not one of "
                      f"{', '.join(k + '=...' for k in EMBED_KEYS)}")
    key, value = key.strip(), value.strip()
    if key == "pooling":
      over[key] = value
    else:
      try:
        over[key] = int(value)
      except ValueError:
        raise EvalError(f"config.models entry {entry!r}: {key} must be an integer, got {value!r}") from None
  if not spec.strip():
    raise EvalError(f"config.models entry {entry!r} names no model before '#'")
  return spec.strip(), over


@dataclasses.dataclass(frozen=True)
class Plan:
  """What the whole evaluation covers: models (the first is the base of every verdict), shots, seeds, and how
  each model entry embeds its documents (config.embed, overridden by the entry's "#key=value" suffix)."""
  models: list[str]
  shots: list[Shots]
  seeds: list[int]
  embeddings: dict[str, Windowing] = dataclasses.field(default_factory=dict)
  max_length: int = 256

  @classmethod
  def from_config(cls, cfg: Any) -> "Plan":
    models = csv_list(cfg.models, "models")
    if len(set(models)) != len(models):
      raise EvalError(f"config.models lists a model twice: {models}")
    try:
      shots = parse_shots(cfg.shots)
      seeds = [int(s) for s in csv_list(cfg.seeds, "seeds")]
    except ValueError as e:
      raise EvalError(f"config: {e}") from None
    default = settings_from(Windowing, cfg.embed, "embed")
    embeddings = {}
    for entry in models:
      where = "embed" if "#" not in entry else f"models entry {entry!r}"
      w = dataclasses.replace(default, **split_entry(entry)[1])
      try:
        embeddings[entry] = w.check(2)  # the position table is checked when the model loads
      except ValueError as e:
        raise EvalError(f"config.{where}: {e}") from None
    return cls(models=models, shots=shots, seeds=seeds, embeddings=embeddings, max_length=int(cfg.max_length))

  @staticmethod
  def model_spec(entry: str) -> str:
    """The model an entry names, without its embedding suffix (what jaxemb.resolve understands)."""
    return split_entry(entry)[0]

  def embedding_label(self, entry: str, mode: str = "probe") -> str:
    """How rows of `entry` in `mode` read their documents, for the report."""
    if entry not in self.embeddings:
      return "whole text" if mode.startswith("tfidf") else ""
    if mode.startswith("finetune"):
      return f"fine-tuned on the first {self.max_length} tokens"
    return self.embeddings[entry].label(self.max_length)


@dataclasses.dataclass
class Context:
  """The labelled data and the few-shot samples, shared by every evaluator and model.

  Every (shots, seed) sample is drawn once, so rows of one seed differ only by the method and the model:
  that pairing is what the verdict's paired comparison relies on."""
  cfg: Any
  plan: Plan
  data: EvalData
  out: Path
  log: Callable[[str], None] = print
  _samples: dict = dataclasses.field(default_factory=dict)
  # What evaluators compute once and share across their units and each other (e.g. the retrieval set, BM25's
  # run); keyed by the evaluator module's own name.
  cache: dict = dataclasses.field(default_factory=dict)

  @property
  def eval_idx(self) -> np.ndarray:
    """Rows whose predictions every evaluator returns: validation, then test (labelled data only)."""
    return np.concatenate([self.data.split_idx["validation"], self.data.split_idx["test"]])

  @property
  def num_classes(self) -> int:
    return len(self.data.class_names)

  def sample(self, shots: Shots, seed: int) -> np.ndarray:
    """Training rows (indices into the data) of the (shots, seed) few-shot sample."""
    if (shots, seed) not in self._samples:
      tr = self.data.split_idx["train"]
      self._samples[(shots, seed)] = tr[sample_few_shot(self.data.y_N[tr], shots, seed)]
    return self._samples[(shots, seed)]


@dataclasses.dataclass
class UnitResult:
  """What one unit yields: run rows (one per split), test predictions per run, geometry rows, failures, and
  per-item test scores (`scores`: metric -> float [T], e.g. nDCG@10 per test query) for evaluators whose
  verdict pairs scores rather than predicted classes."""
  runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  preds: dict[tuple[Shots, int], np.ndarray] = dataclasses.field(default_factory=dict)  # -> class per test doc
  scores: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  geometry: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  failed: list[dict[str, Any]] = dataclasses.field(default_factory=list)

  def add_run(self, ctx: Context, model: str, mode: str, shots: Shots, seed: int, probs_ExC: np.ndarray,
              extra: dict[str, Any]) -> None:
    """One row per split (validation, test) from probabilities over ctx.eval_idx; keeps test predictions."""
    data, offset = ctx.data, 0
    for split in ("validation", "test"):
      idx = data.split_idx[split]
      probs = np.asarray(probs_ExC[offset:offset + len(idx)])
      offset += len(idx)
      pred = probs.argmax(-1)
      m = classification_metrics(data.y_N[idx], pred, probs, ctx.num_classes)
      excluded = [data.class_names[c] for c in m.pop("auroc_excluded_classes")]
      self.runs.append({"model": model, "mode": mode, "shots": shots, "seed": seed, "split": split, **m,
                        "auroc_excluded_classes": excluded, "embedding": ctx.plan.embedding_label(model, mode),
                        **extra})
      if split == "test":
        self.preds[(shots, seed)] = pred.astype(np.int32)

  def test_f1(self) -> float:
    return float(np.mean([r["macro_f1"] for r in self.runs if r["split"] == "test"] or [np.nan]))


class ModelHandle:
  """A model to evaluate, loaded on first use only: a cached embedding needs no model at all."""

  def __init__(self, spec: str, ctx: Context):
    # spec: the config.models entry (rows carry it); model_spec: the model it loads (without "#key=value")
    self.spec, self.ctx = spec, ctx
    self.model_spec = Plan.model_spec(spec)
    self.windowing = ctx.plan.embeddings.get(spec, Windowing())
    self._enc, self._z = None, None
    self.timings: dict[str, float] = {}

  def encoder(self):
    if self._enc is None:
      from jaxemb import Encoder
      t0 = time.time()
      try:
        self._enc = Encoder.from_pretrained(self.model_spec)
      except (ValueError, FileNotFoundError, OSError) as e:
        raise EvalError(f"model {self.spec!r}: {e}".replace("\n", " ")) from None
      self.ctx.log(f"  loaded {self.model_spec} ({self._enc.config.num_layers} layers, hidden "
                   f"{self._enc.config.hidden_size}) in {time.time() - t0:.1f}s")
    return self._enc

  def embeddings(self) -> np.ndarray:
    """float32 [N, D]: every document embedded once per model entry (from the embedding cache when it can).

    With windows, one pass computes every pooling (POOLINGS) and caches each, so a second entry of the same
    model and windows with another pooling (minilm#window=128#pooling=max) embeds nothing."""
    if self._z is None:
      from jaxemb.eval.cache import cached_embeddings
      cfg, w = self.ctx.cfg, self.windowing
      t0 = time.time()

      def embed_all():
        try:
          if w.window == 0:
            return self.encoder().embed(self.ctx.data.texts, batch_size=cfg.embed_batch_size,
                                        max_length=cfg.max_length, dtype=cfg.embed_dtype)
          return self.encoder().embed_documents(self.ctx.data.texts, w, poolings=POOLINGS,
                                                batch_size=cfg.embed_batch_size, dtype=cfg.embed_dtype)
        except ValueError as e:  # e.g. max_length beyond the model's position table
          raise EvalError(f"model {self.spec!r}: {e}") from None

      cache_dir = Path(cfg.embed.cache_dir).expanduser() if cfg.embed.cache_dir else self.ctx.out / "cache"
      self._z, _ = cached_embeddings(self.model_spec, self.ctx.data.texts, max_length=cfg.max_length,
                                     cache_dir=cache_dir, dtype=cfg.embed_dtype, log=self.ctx.log,
                                     embed_fn=embed_all, windowing=w)
      self.timings["embed"] = time.time() - t0
    return self._z


class Evaluator:
  """Built from the config (validate and read every setting in __init__, before any model is loaded).

  per_model: run once per model (False: once in all, e.g. a non-neural reference whose rows carry the
  evaluator's name as their model). needs_labels: False when it reads no labelled data (ctx.data is then None
  unless another selected evaluator needs it). prepare(ctx): loads what it reads besides ctx.data, once,
  before any unit, and returns what results.json's dataset section and the resume key should hold of it.
  units(): the unit names, in order. run(unit, model, ctx): that unit's result for `model` (None when not
  per_model). verdict_rows(scores): verdict rows from the per-item test scores of every finished unit
  ((model, mode) -> UnitResult.scores); [] for evaluators judged by compare.verdict_rows' predictions."""
  name: ClassVar[str]
  per_model: ClassVar[bool] = True
  needs_labels: ClassVar[bool] = True

  def __init__(self, cfg: Any, plan: Plan):
    self.cfg, self.plan = cfg, plan

  def prepare(self, ctx: Context) -> dict[str, Any]:
    return {}

  def units(self) -> list[str]:
    raise NotImplementedError

  def verdict_rows(self, scores: dict[tuple[str, str], dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    return []

  def run(self, unit: str, model: ModelHandle | None, ctx: Context) -> UnitResult:
    raise NotImplementedError
