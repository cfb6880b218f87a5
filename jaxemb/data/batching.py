"""Length buckets and batch builders: every batch the jitted step sees has one of a few fixed shapes."""

from __future__ import annotations

import math

# Padded lengths a batch may have. Few enough that a step compiles a handful of times, dense enough that
# short documents do not pay for 512 tokens of padding.
LENGTH_BUCKETS = (16, 32, 64, 128, 256, 384, 512)


def bucket_length(n_tokens: int, max_length: int) -> int:
  """Smallest bucket >= n_tokens, capped at max_length (max_length itself is always a valid bucket)."""
  if n_tokens >= max_length:
    return max_length
  for b in LENGTH_BUCKETS:
    if b >= n_tokens:
      return min(b, max_length)
  return max_length


def mlm_max_predictions(length: int, mask_prob: float = 0.15) -> int:
  """Static number M of MLM prediction slots for a row of `length` tokens (ceil of the rate, plus one)."""
  return int(math.ceil(length * mask_prob)) + 1
