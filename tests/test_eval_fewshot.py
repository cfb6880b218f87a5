"""Few-shot sampling: exact per-class counts, seeded, nested across N, small classes keep everything."""

import numpy as np
import pytest

from jaxemb.eval.fewshot import parse_shots, sample_few_shot

# class 0: 10 examples, class 1: 5, class 2: 2 (fewer than N)
LABELS = np.array([0] * 10 + [1] * 5 + [2] * 2)
LABELS = LABELS[np.random.default_rng(0).permutation(len(LABELS))]


@pytest.mark.parametrize("shots", [1, 3, 4, 7])
def test_exact_count_per_class_and_small_classes_keep_all(shots):
  idx = sample_few_shot(LABELS, shots, seed=0)
  counts = np.bincount(LABELS[idx], minlength=3)
  assert counts.tolist() == [min(shots, 10), min(shots, 5), min(shots, 2)]
  assert len(np.unique(idx)) == len(idx)  # no duplicates


def test_same_seed_same_sample_other_seed_other_sample():
  a, b = sample_few_shot(LABELS, 3, seed=7), sample_few_shot(LABELS, 3, seed=7)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, sample_few_shot(LABELS, 3, seed=8))


def test_nested_across_shot_sizes_and_all():
  small, big = set(sample_few_shot(LABELS, 2, seed=3)), set(sample_few_shot(LABELS, 4, seed=3))
  assert small < big
  np.testing.assert_array_equal(sample_few_shot(LABELS, "all", seed=3), np.arange(len(LABELS)))


def test_parse_shots():
  assert parse_shots("8,16, all") == [8, 16, "all"]
  with pytest.raises(ValueError, match="neither"):
    parse_shots("8,lots")
  with pytest.raises(ValueError, match=">= 1"):
    parse_shots("0")
