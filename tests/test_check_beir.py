"""scripts/check_beir.py's nDCG@10, the independent side of the BEIR check, against hand-worked values."""

import importlib.util

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("check_beir", REPO / "scripts" / "check_beir.py")
check_beir = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_beir)


def test_ndcg_at_10_by_hand():
  # Ranked x, a, y; judged a: 1, b: 2. DCG = 1 / log2(3) = 0.63093; ideal b, a: 2 / log2(2) + 1 / log2(3)
  # = 2.63093; nDCG = 0.63093 / 2.63093 = 0.23981.
  assert check_beir.ndcg_at_10(["x", "a", "y"], {"a": 1, "b": 2}) == pytest.approx(0.23981, abs=1e-5)
  assert check_beir.ndcg_at_10(["a"], {"a": 1}) == 1.0
  # A relevant document at rank 11 is past the cut; a grade <= 0 gains nothing and is not in the ideal.
  assert check_beir.ndcg_at_10([f"n{i}" for i in range(10)] + ["a"], {"a": 1}) == 0.0
  assert check_beir.ndcg_at_10(["z", "a"], {"a": 1, "z": 0}) == pytest.approx(1 / 1.58496, abs=1e-5)
  assert check_beir.ndcg_at_10(["a"], {"z": 0}) == 0.0
