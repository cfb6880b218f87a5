"""Host-side MLM masking: 15% of candidates, 80/10/10, specials and padding never selected, static M slots."""

import numpy as np
import pytest

from jaxemb.data.batching import mlm_max_predictions
from jaxemb.data.masking import MaskDraws, SpecialTokens, mask_tokens

# BERT-like ids (as all-MiniLM-L6-v2: [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103) and RoBERTa-like ids
# (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=vocab-1): nothing in the masker may assume either layout.
BERT = SpecialTokens(cls=101, sep=102, pad=0, mask=103, vocab_size=1000, special_ids=(0, 100, 101, 102, 103))
ROBERTA = SpecialTokens(cls=0, sep=2, pad=1, mask=999, vocab_size=1000, special_ids=(0, 1, 2, 3, 999))


def _batch(special: SpecialTokens, rows: int, length: int, seed: int = 0):
  """Rows of [CLS] random non-special ids [SEP] then padding, with varied lengths."""
  rng = np.random.default_rng(seed)
  ids = np.full((rows, length), special.pad, np.int32)
  mask = np.zeros((rows, length), np.int32)
  normal = special.replacement_ids()
  for r in range(rows):
    n = int(rng.integers(1, length - 1))
    ids[r, 0], ids[r, n + 1] = special.cls, special.sep
    ids[r, 1:n + 1] = rng.choice(normal, n)
    mask[r, :n + 2] = 1
  return ids, mask


def _mask(special, ids, mask, seed=0, mask_prob=0.15):
  L = ids.shape[1]
  M = mlm_max_predictions(L, mask_prob)
  draws = MaskDraws.draw(np.random.default_rng(seed), ids.shape[0], L, M, len(special.replacement_ids()))
  return mask_tokens(ids, mask, special, draws, mask_prob=mask_prob)


@pytest.mark.parametrize("special", [BERT, ROBERTA], ids=["bert", "roberta"])
def test_selection_count_rates_and_exclusions(special):
  ids, mask = _batch(special, rows=400, length=256)
  out = _mask(special, ids, mask)
  M = mlm_max_predictions(256)
  assert out["input_ids"].shape == (400, 256) and out["mlm_positions"].shape == (400, M)
  assert {k: v.dtype.name for k, v in out.items()} == {"input_ids": "int32", "mlm_positions": "int32",
                                                      "mlm_labels": "int32", "mlm_weights": "float32"}
  w = out["mlm_weights"] > 0
  n_cand = ((mask > 0) & ~np.isin(ids, special.special_ids)).sum(1)
  # Exactly max(1, round(0.15 * candidates)) real slots per row, as a prefix of the M slots.
  np.testing.assert_array_equal(w.sum(1), np.maximum(1, np.rint(0.15 * n_cand)))
  assert np.all(np.diff(w.astype(int), axis=1) <= 0)
  rows, slots = np.nonzero(w)
  pos = out["mlm_positions"][rows, slots]
  # Never a special token or padding; labels are the original ids; no position twice in a row.
  assert not np.isin(ids[rows, pos], special.special_ids).any() and (mask[rows, pos] == 1).all()
  np.testing.assert_array_equal(out["mlm_labels"][rows, slots], ids[rows, pos])
  for r in range(400):
    p = out["mlm_positions"][r][w[r]]
    assert len(set(p.tolist())) == len(p)
  # Padded slots: weight 0, position 0, label pad.
  assert (out["mlm_positions"][~w] == 0).all() and (out["mlm_labels"][~w] == special.pad).all()
  # Unselected tokens are untouched.
  untouched = np.ones_like(ids, bool)
  untouched[rows, pos] = False
  np.testing.assert_array_equal(out["input_ids"][untouched], ids[untouched])
  # 80 / 10 / 10 within statistical tolerance (n ~ 7600 selections: sd of a 10% rate ~ 0.35%).
  new = out["input_ids"][rows, pos]
  n = len(new)
  frac_mask = (new == special.mask).mean()
  frac_same = (new == ids[rows, pos]).mean()
  frac_random = 1 - frac_mask - frac_same
  assert n > 5000
  assert abs(frac_mask - 0.8) < 0.02 and abs(frac_same - 0.1) < 0.015 and abs(frac_random - 0.1) < 0.015
  # Random replacements never draw special ids.
  assert not np.isin(new, [i for i in special.special_ids if i != special.mask]).any()


def test_overall_rate_is_15_percent_of_candidates():
  ids, mask = _batch(BERT, rows=300, length=256, seed=1)
  out = _mask(BERT, ids, mask, seed=1)
  n_cand = ((mask > 0) & ~np.isin(ids, BERT.special_ids)).sum()
  assert abs(out["mlm_weights"].sum() / n_cand - 0.15) < 0.005


def test_tiny_and_empty_rows():
  # One candidate -> one prediction (max(1, ...)); zero candidates -> none; never more than M.
  ids = np.array([[101, 7, 102, 0], [101, 102, 0, 0]], np.int32)
  mask = (ids != 0).astype(np.int32)
  out = _mask(BERT, ids, mask)
  np.testing.assert_array_equal(out["mlm_weights"].sum(1), [1, 0])
  assert out["mlm_positions"][0, 0] == 1 and out["mlm_labels"][0, 0] == 7


def test_same_draws_same_result():
  ids, mask = _batch(BERT, rows=8, length=64)
  a, b = _mask(BERT, ids, mask, seed=5), _mask(BERT, ids, mask, seed=5)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_special_tokens_come_from_the_tokenizer():
  from jaxemb.data.prepare import load_tokenizer
  tok = load_tokenizer()
  special = SpecialTokens.from_tokenizer(tok)
  assert (special.cls, special.sep, special.pad, special.mask) == (tok.cls_token_id, tok.sep_token_id,
                                                                   tok.pad_token_id, tok.mask_token_id)
  assert special.vocab_size == len(tok) and set(tok.all_special_ids) <= set(special.special_ids)
  assert SpecialTokens.from_dict(special.to_dict()) == special


def test_mask_prob_zero_selects_nothing():
  ids, mask = _batch(BERT, rows=4, length=32)
  out = _mask(BERT, ids, mask, mask_prob=0.0)
  assert out["mlm_weights"].shape == (4, 1) and out["mlm_weights"].sum() == 0
  np.testing.assert_array_equal(out["input_ids"], ids)
