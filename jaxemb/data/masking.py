"""BERT-style MLM masking on the host (numpy), with a static number of prediction slots per row."""

from __future__ import annotations

import dataclasses
import numpy as np


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
  """Token ids the batch builders need, read from the tokenizer (BERT [CLS]/[SEP]/[PAD]/[MASK], RoBERTa
  <s>/</s>/<pad>/<mask>), never hard-coded."""
  cls: int
  sep: int
  pad: int
  mask: int
  vocab_size: int
  special_ids: tuple[int, ...]  # All ids that are never masked and never drawn as random replacements.

  @classmethod
  def from_tokenizer(cls, tokenizer) -> SpecialTokens:
    ids = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id}
    if None in ids:
      raise ValueError(f"tokenizer {tokenizer.name_or_path!r} lacks one of cls/sep/pad/mask tokens")
    special = sorted(set(tokenizer.all_special_ids) | ids)
    return cls(cls=int(tokenizer.cls_token_id), sep=int(tokenizer.sep_token_id), pad=int(tokenizer.pad_token_id),
               mask=int(tokenizer.mask_token_id), vocab_size=int(len(tokenizer)),
               special_ids=tuple(int(i) for i in special))

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> SpecialTokens:
    return cls(**{**d, "special_ids": tuple(d["special_ids"])})

  def replacement_ids(self) -> np.ndarray:
    """Ids a "random token" replacement is drawn from: the vocabulary minus the special ids."""
    return np.setdiff1d(np.arange(self.vocab_size, dtype=np.int32), np.asarray(self.special_ids, np.int32))


@dataclasses.dataclass(frozen=True)
class MaskDraws:
  """The random numbers one masking call consumes, drawn for the GLOBAL batch so that each host can slice its
  rows and the union over hosts equals the single-host batch exactly."""
  select_BxL: np.ndarray   # uniform [0,1): lowest scores among candidates are selected
  action_BxM: np.ndarray   # uniform [0,1): < 0.8 mask, < 0.9 random id, else unchanged
  random_BxM: np.ndarray   # index into replacement_ids

  @classmethod
  def draw(cls, rng: np.random.Generator, rows: int, length: int, max_predictions: int,
           n_replacements: int) -> MaskDraws:
    return cls(rng.random((rows, length), dtype=np.float32), rng.random((rows, max_predictions), dtype=np.float32),
               rng.integers(0, n_replacements, (rows, max_predictions), dtype=np.int32))

  def rows(self, start: int, stop: int) -> MaskDraws:
    return MaskDraws(self.select_BxL[start:stop], self.action_BxM[start:stop], self.random_BxM[start:stop])


def mask_tokens(ids_BxL: np.ndarray, attention_mask_BxL: np.ndarray, special: SpecialTokens, draws: MaskDraws, *,
                mask_prob: float = 0.15, replacement_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Selects and corrupts MLM targets.

  Per row, candidates are non-pad, non-special tokens; n = max(1, round(mask_prob * n_candidates)) of them are
  chosen uniformly (capped at M = draws.action_BxM.shape[1] and at n_candidates; none when mask_prob == 0); of
  the chosen 80% become the mask id, 10% a uniform random non-special id, 10% stay as they are.

  Returns input_ids BxL (corrupted), mlm_positions BxM, mlm_labels BxM (original ids), mlm_weights BxM
  (1.0 real slot, 0.0 padding slot; padded slots have position 0 and label pad).
  """
  B, L = ids_BxL.shape
  M = draws.action_BxM.shape[1]
  if replacement_ids is None:
    replacement_ids = special.replacement_ids()
  candidate_BxL = (attention_mask_BxL > 0) & ~np.isin(ids_BxL, np.asarray(special.special_ids))
  n_candidates_B = candidate_BxL.sum(axis=1)
  # mask_prob == 0 means "no MLM" (e.g. DeCLUTR without its MLM term): nothing selected, not the minimum of 1.
  n_select_B = np.maximum(1 if mask_prob > 0 else 0, np.rint(mask_prob * n_candidates_B)).astype(np.int64)
  n_select_B = np.minimum(np.minimum(n_select_B, M), n_candidates_B)

  # Uniform subset without replacement: the n lowest random scores among candidates (non-candidates score 2).
  score_BxL = np.where(candidate_BxL, draws.select_BxL[:, :L], np.float32(2.0))
  order_BxM = np.argsort(score_BxL, axis=1, kind="stable")[:, :M]
  weights_BxM = np.arange(M)[None, :] < n_select_B[:, None]
  # Real slots are a prefix; sorting them (padding sorts last as L) makes batches easy to read.
  positions_BxM = np.where(weights_BxM, np.sort(np.where(weights_BxM, order_BxM, L), axis=1), 0).astype(np.int32)

  rows_Bx1 = np.arange(B)[:, None]
  labels_BxM = np.where(weights_BxM, ids_BxL[rows_Bx1, positions_BxM], special.pad).astype(np.int32)
  action_BxM = draws.action_BxM
  to_mask_BxM = weights_BxM & (action_BxM < 0.8)
  to_random_BxM = weights_BxM & (action_BxM >= 0.8) & (action_BxM < 0.9)
  new_BxM = np.where(to_mask_BxM, special.mask, np.where(to_random_BxM, replacement_ids[draws.random_BxM], labels_BxM))

  input_ids_BxL = ids_BxL.astype(np.int32, copy=True)
  r_idx, m_idx = np.nonzero(weights_BxM)
  input_ids_BxL[r_idx, positions_BxM[r_idx, m_idx]] = new_BxM[r_idx, m_idx]
  return {"input_ids": input_ids_BxL, "mlm_positions": positions_BxM, "mlm_labels": labels_BxM,
          "mlm_weights": weights_BxM.astype(np.float32)}

