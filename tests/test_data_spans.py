"""DeCLUTR span sampler (docs/ARCHITECTURE.md "The method"): bounds, anchor separation, positive placement,
Beta length means."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxemb.data.spans import effective_max_span, sample_spans


@st.composite
def _setting(draw):
  anchors = draw(st.integers(1, 4))
  positives = draw(st.integers(1, 3))
  min_span = draw(st.integers(1, 16))
  max_span = draw(st.integers(min_span, 64))
  n_tokens = draw(st.integers(2 * anchors * max_span, 2 * anchors * max_span + 300))
  return dict(anchors=anchors, positives=positives, min_span=min_span, max_span=max_span), n_tokens


@settings(max_examples=150, deadline=None)
@given(_setting(), st.integers(0, 2**31 - 1))
def test_spans_respect_bounds_separation_and_positive_placement(setting, seed):
  kw, n = setting
  sample = sample_spans(n, np.random.default_rng(seed), **kw)
  assert len(sample.anchors) == kw["anchors"]
  assert [len(p) for p in sample.positives] == [kw["positives"]] * kw["anchors"]
  for s, e in sample.anchors + [p for row in sample.positives for p in row]:
    assert 0 <= s < e <= n and kw["min_span"] <= e - s <= kw["max_span"]
  # Anchors sit inside their grid block, and never overlap or touch: chosen blocks are >= 2 apart.
  blocks = sorted(s // kw["max_span"] for s, _ in sample.anchors)
  for (s, e) in sample.anchors:
    assert e <= (s // kw["max_span"] + 1) * kw["max_span"]
  assert all(b2 - b1 >= 2 for b1, b2 in zip(blocks, blocks[1:]))
  ordered = sorted(sample.anchors)
  assert all(e1 < s2 for (_, e1), (s2, _) in zip(ordered, ordered[1:]))
  # A positive overlaps, abuts or lies inside its anchor; start within [max(0, a_s - len), min(a_e, n - len)].
  for (a_s, a_e), row in zip(sample.anchors, sample.positives):
    for p_s, p_e in row:
      length = p_e - p_s
      assert max(0, a_s - length) <= p_s <= min(a_e, n - length)
      assert p_e >= a_s and p_s <= a_e


@settings(max_examples=30, deadline=None)
@given(_setting(), st.integers(0, 2**31 - 1))
def test_same_seed_gives_same_spans(setting, seed):
  kw, n = setting
  a = sample_spans(n, np.random.default_rng([seed, 1, 7]), **kw)
  b = sample_spans(n, np.random.default_rng([seed, 1, 7]), **kw)
  assert a == b


def test_span_length_means_follow_beta_4_2_and_2_4():
  # int(Beta * (max - min) + min): mean ~ min + E[Beta] * (max - min) - 0.5 (floor); E = 2/3 anchors, 1/3 positives.
  max_span, min_span, draws = 208, 8, 3000
  rng = np.random.default_rng(0)
  anchor_len, positive_len = [], []
  for _ in range(draws):
    sample = sample_spans(2 * 2 * max_span, rng, anchors=2, positives=2, max_span=max_span, min_span=min_span)
    anchor_len += [e - s for s, e in sample.anchors]
    positive_len += [e - s for row in sample.positives for s, e in row]
  span = max_span - min_span
  # Relative to the range: sd of Beta(4,2) is 0.178, so 6000 draws give a standard error ~0.0023.
  assert abs((np.mean(anchor_len) + 0.5 - min_span) / span - 2 / 3) < 0.01
  assert abs((np.mean(positive_len) + 0.5 - min_span) / span - 1 / 3) < 0.01


def test_many_anchors_never_run_out_of_grid():
  # With A=3 and exactly 2A blocks, picking blocks 1 and 4 first would leave no block; the sampler avoids it.
  for seed in range(300):
    sample = sample_spans(6 * 10, np.random.default_rng(seed), anchors=3, positives=1, max_span=10, min_span=2)
    blocks = sorted(s // 10 for s, _ in sample.anchors)
    assert len(blocks) == 3 and blocks[1] - blocks[0] >= 2 and blocks[2] - blocks[1] >= 2


def test_short_documents_skip_or_shrink():
  kw = dict(anchors=2, max_span=64, min_span=8)
  assert effective_max_span(256, **kw) == 64
  assert effective_max_span(255, **kw) is None
  assert effective_max_span(255, **kw, short_docs="shrink") == 63
  assert effective_max_span(32, **kw, short_docs="shrink") == 8
  assert effective_max_span(31, **kw, short_docs="shrink") is None
  with pytest.raises(ValueError, match="shorter"):
    sample_spans(255, np.random.default_rng(0), anchors=2, positives=1, max_span=64, min_span=8)
  with pytest.raises(ValueError):
    effective_max_span(300, **kw, short_docs="pad")
