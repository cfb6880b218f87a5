"""Shared fixtures. Tests run on CPU jax; device count is set per test process where a test needs several."""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_module(rel: str, name: str):
  """A repo file that is not in the package (eval.py, configs/*.py) imported as module `name`."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, REPO / rel)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def shared_corpus(name: str) -> Path:
  """Path of a real corpus in ../shared/data, or skip the test with the reason."""
  path = SHARED_DATA / name
  if not path.exists():
    pytest.skip(f"real corpus {path} is absent (../shared/data is only beside the repo in CI and dev machines)")
  return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
  """An HF folder: a tiny random BERT (hidden 32, 2 layers) with all-MiniLM-L6-v2's tokenizer."""
  from jaxemb.models.api import Encoder
  from jaxemb.models.config import EncoderConfig
  config = EncoderConfig(family="bert", vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                         intermediate_size=64, max_position_embeddings=512, type_vocab_size=2)
  out = tmp_path_factory.mktemp("tiny") / "tiny_bert"
  Encoder.from_config(config, seed=0, name="tiny").save_pretrained(out)
  return out
