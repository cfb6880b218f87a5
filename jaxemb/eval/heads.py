"""Classification heads put on top of the pooled embedding (used by the probe and by fine-tuning)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class ClassificationHead(nn.Module):
  """The paper's head (HF RobertaClassificationHead, fed the mean embedding instead of CLS):
  dropout -> dense(hidden) -> tanh -> dropout -> out(C). ~D*D + D*C parameters (0.59M on roberta-base)."""
  hidden_size: int
  num_classes: int
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, x_BxD: jax.Array, *, deterministic: bool = True) -> jax.Array:
    x_BxD = nn.Dropout(self.dropout_rate)(x_BxD, deterministic=deterministic)
    h_BxH = jnp.tanh(nn.Dense(self.hidden_size, name="dense")(x_BxD))
    h_BxH = nn.Dropout(self.dropout_rate)(h_BxH, deterministic=deterministic)
    return nn.Dense(self.num_classes, name="out_proj")(h_BxH)


class LogisticHead(nn.Module):
  """Plain multinomial logistic regression: one dense layer, no dropout (the regulariser is weight decay)."""
  num_classes: int

  @nn.compact
  def __call__(self, x_BxD: jax.Array, *, deterministic: bool = True) -> jax.Array:
    del deterministic
    return nn.Dense(self.num_classes, name="out_proj")(x_BxD)


def make_head(kind: str, hidden_size: int, num_classes: int, dropout_rate: float) -> nn.Module:
  """kind "probe" -> the paper's head; "logreg" -> logistic regression."""
  if kind == "probe":
    return ClassificationHead(hidden_size, num_classes, dropout_rate)
  if kind == "logreg":
    return LogisticHead(num_classes)
  raise ValueError(f"unknown head {kind!r} (expected 'probe' or 'logreg')")
