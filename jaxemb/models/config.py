"""EncoderConfig: the architecture of a BERT/RoBERTa encoder, read from a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

SUPPORTED_FAMILIES = ("bert", "roberta")
# HF's "gelu" is the exact erf GELU; "gelu_new"/"gelu_pytorch_tanh" are the tanh approximation.
_ACTIVATIONS = {"gelu": False, "gelu_python": False, "gelu_new": True, "gelu_pytorch_tanh": True}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Hashable (usable as a jit static argument) description of the encoder architecture."""
  family: str = "bert"
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  pad_token_id: int = 0
  initializer_range: float = 0.02

  def __post_init__(self):
    if self.family not in SUPPORTED_FAMILIES:
      raise ValueError(f"model_type {self.family!r} is not supported; jaxemb supports {SUPPORTED_FAMILIES}")
    if self.hidden_act not in _ACTIVATIONS:
      raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; expected one of {sorted(_ACTIVATIONS)}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_heads}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def gelu_approximate(self) -> bool:
    return _ACTIVATIONS[self.hidden_act]

  @property
  def max_tokens(self) -> int:
    """Longest sequence the position table allows (RoBERTa reserves padding_idx + 1 slots)."""
    if self.family == "roberta":
      return self.max_position_embeddings - self.pad_token_id - 1
    return self.max_position_embeddings

  @classmethod
  def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "EncoderConfig":
    family = d.get("model_type")
    if family in ("xlm-roberta", "camembert"):
      family = "roberta"
    try:
      return cls(
          family=family,
          vocab_size=int(d["vocab_size"]),
          hidden_size=int(d["hidden_size"]),
          num_layers=int(d["num_hidden_layers"]),
          num_heads=int(d["num_attention_heads"]),
          intermediate_size=int(d["intermediate_size"]),
          max_position_embeddings=int(d["max_position_embeddings"]),
          type_vocab_size=int(d.get("type_vocab_size", 2)),
          layer_norm_eps=float(d.get("layer_norm_eps", 1e-12)),
          hidden_act=str(d.get("hidden_act", "gelu")),
          hidden_dropout=float(d.get("hidden_dropout_prob", 0.1)),
          attention_dropout=float(d.get("attention_probs_dropout_prob", 0.1)),
          pad_token_id=int(d.get("pad_token_id", 1 if family == "roberta" else 0)),
          initializer_range=float(d.get("initializer_range", 0.02)),
      )
    except KeyError as e:
      raise ValueError(f"{source}: missing field {e.args[0]!r} needed to build the encoder") from None
    except ValueError as e:
      raise ValueError(f"{source}: {e}") from None

  @classmethod
  def from_file(cls, path: str | Path) -> "EncoderConfig":
    path = Path(path)
    try:
      d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
    pe = d.get("position_embedding_type", "absolute")
    if pe != "absolute":
      raise ValueError(f"{path}: position_embedding_type {pe!r} is not supported (only 'absolute')")
    return cls.from_hf_dict(d, source=str(path))

  def replace(self, **kw) -> "EncoderConfig":
    return dataclasses.replace(self, **kw)
