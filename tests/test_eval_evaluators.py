"""Evaluator plug-ins: chosen by name from the config, settings read from the config (the one default)."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest
from ml_collections import ConfigDict

from jaxemb.eval import evaluators
from jaxemb.eval.dataset import EvalError
from jaxemb.eval.evaluators.base import settings_from
from jaxemb.eval.finetune import FinetuneSettings
from jaxemb.eval.probe import ProbeSettings

REPO = Path(__file__).resolve().parents[1]


def _config(variant: str = ""):
  spec = importlib.util.spec_from_file_location("jaxemb_eval_config", REPO / "configs" / "eval.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(variant)


def test_config_fields_select_the_evaluators_in_run_order():
  cfg = _config("smoke")   # modes probe,finetune; tfidf on; geometry on
  assert evaluators.selected(cfg) == ["probe", "geometry", "finetune", "tfidf"]
  cfg.modes, cfg.geometry.enabled = "finetune", False
  assert evaluators.selected(cfg) == ["finetune", "tfidf"]
  cfg.modes, cfg.tfidf = "", True
  assert evaluators.selected(cfg) == ["tfidf"]
  cfg.tfidf = False
  with pytest.raises(EvalError, match="nothing to do"):
    evaluators.selected(cfg)


def test_settings_come_from_the_config_field_by_field():
  cfg = _config("smoke")
  plan = evaluators.Plan.from_config(cfg)
  probe, _, finetune, tfidf = evaluators.build(cfg, plan)
  # every ProbeSettings field has the config's value (smoke: max_steps 200, not the full config's 500)
  assert probe.units() == ["probe", "probe_logreg"]
  for f in dataclasses.fields(ProbeSettings):
    assert getattr(probe.by_unit["probe"][2], f.name) == cfg.probe[f.name]
  assert probe.by_unit["probe"][2].max_steps == 200
  assert probe.by_unit["probe_logreg"][2].lr == cfg.probe.logreg_lr   # the convex head's own rate
  for f in dataclasses.fields(FinetuneSettings):
    want = cfg.max_length if f.name == "max_length" else cfg.finetune[f.name]
    assert getattr(finetune.settings, f.name) == want
  assert finetune.shots == [4] and plan.shots == [4, "all"]           # smoke: fine-tuning on 4 shots only
  assert tfidf.settings.c_grid == (1.0, 10.0) and tfidf.units() == ["tfidf"]


def test_a_settings_field_missing_from_the_config_is_an_error_naming_it():
  section = ConfigDict(_config().probe.to_dict())
  del section["patience"]
  with pytest.raises(EvalError, match=r"config\.probe\.patience is missing"):
    settings_from(ProbeSettings, section, "probe")


def test_bad_evaluator_settings_name_the_field():
  for key, value, msg in (("probe.heads", "probe,svm", "probe.heads"), ("tfidf_c_grid", "1,x", "tfidf_c_grid"),
                          ("finetune.shots", "0", "finetune.shots"), ("models", "a,a", "twice")):
    cfg = _config("smoke")
    section, _, field = key.rpartition(".")
    (cfg[section] if section else cfg)[field] = value
    with pytest.raises(EvalError, match=msg):
      evaluators.build(cfg, evaluators.Plan.from_config(cfg))
