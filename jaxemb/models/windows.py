"""Whole-document embeddings: a document's token ids cut into windows, each window embedded like a short text,
the window vectors pooled into one vector per document.

A window holds `window` tokens counting the model's special tokens ([CLS] .. [SEP] for BERT, <s> .. </s> for
RoBERTa), so window W with pooling `first` is exactly today's truncation at max_length W. Consecutive windows
overlap by `stride` tokens (the Hugging Face tokenizers' meaning of stride), so each window starts
`window - specials - stride` content tokens after the previous one; `max_windows` > 0 keeps only the first that
many windows of a document (0 = the whole document).

Poolings of a document's window vectors v_1..v_K (each the masked mean of the last hidden layer over its
n_k tokens, special tokens included):
- `first`: v_1 (= truncation);
- `mean`: sum_k n_k v_k / sum_k n_k, the token-weighted mean (= the mean over every token the windows read,
  so a short last window counts for its tokens only);
- `mean_unweighted`: the plain mean of the v_k;
- `max`: the element-wise max of the v_k;
- `mean_max`: [mean, max] concatenated (2 D dimensions).
A document that fits one window gets v_1 under every pooling (for `mean_max`, twice), bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

POOLINGS = ("first", "mean", "mean_unweighted", "max", "mean_max")


@dataclasses.dataclass(frozen=True)
class Windowing:
  """How documents are cut and pooled. window: tokens per window incl. special tokens (0 = no windows:
  truncation at the caller's max_length, pooling `first`); stride: overlap in tokens between consecutive
  windows; max_windows: windows kept per document (0 = all); pooling: one of POOLINGS."""
  window: int = 0
  stride: int = 0
  pooling: str = "first"
  max_windows: int = 0

  def check(self, n_special: int = 2, max_tokens: int | None = None) -> "Windowing":
    """Raises ValueError naming the setting that cannot work; returns self."""
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
    if self.window < 0 or self.stride < 0 or self.max_windows < 0:
      raise ValueError(f"window, stride and max_windows must be >= 0, got {self.window}, {self.stride}, "
                       f"{self.max_windows}")
    if self.window == 0:
      if self.pooling != "first":
        raise ValueError(f"pooling {self.pooling!r} needs windows: set window > 0 (window 0 = truncation)")
      return self
    if self.window <= n_special:
      raise ValueError(f"window {self.window} leaves no room for text next to the {n_special} special tokens")
    if max_tokens is not None and self.window > max_tokens:
      raise ValueError(f"window {self.window} exceeds what the model's position table allows ({max_tokens})")
    if self.stride >= self.window - n_special:
      raise ValueError(f"stride {self.stride} must be smaller than the window's {self.window - n_special} "
                       "text tokens (it is the overlap of consecutive windows)")
    return self

  def spans(self, n_tokens: int, n_special: int = 2) -> list[tuple[int, int]]:
    """(start, end) content-token ranges of the windows of a document of n_tokens tokens (no special tokens);
    an empty document has one empty window (it embeds as its special tokens alone, as truncation does)."""
    width = self.window - n_special
    step = width - self.stride
    out = [(0, min(width, n_tokens))]
    while out[-1][1] < n_tokens and (self.max_windows == 0 or len(out) < self.max_windows):
      start = out[-1][0] + step
      out.append((start, min(start + width, n_tokens)))
    return out

  def label(self, max_length: int) -> str:
    """How a row's documents were embedded, for reports: "first 256 tokens", "mean of 128-token windows"."""
    if self.window == 0:
      return f"first {max_length} tokens"
    extra = "".join([f", stride {self.stride}" if self.stride else "",
                     f", first {self.max_windows} windows" if self.max_windows else ""])
    if self.pooling == "first":
      return f"first {self.window} tokens (window{extra})"
    return f"{self.pooling} of {self.window}-token windows{extra}"


class Pooler:
  """Running per-document pools of window vectors: memory N x D per pooling, whatever the documents' lengths,
  so windows can be embedded and added in any order and any number of passes."""

  def __init__(self, n_docs: int, dim: int, poolings: tuple[str, ...]):
    self.poolings = tuple(poolings)
    self.first_NxD = np.zeros((n_docs, dim), np.float32)
    self.count_N = np.zeros(n_docs, np.int64)
    need = set(self.poolings)
    # float64 sums: a document of thousands of windows adds without float32 drift
    self.sum_NxD = np.zeros((n_docs, dim), np.float64) if need & {"mean", "mean_max"} else None
    self.tokens_N = np.zeros(n_docs, np.float64)
    self.usum_NxD = np.zeros((n_docs, dim), np.float64) if "mean_unweighted" in need else None
    self.max_NxD = np.full((n_docs, dim), -np.inf, np.float32) if need & {"max", "mean_max"} else None

  def add(self, doc_W: np.ndarray, first_W: np.ndarray, tokens_W: np.ndarray, v_WxD: np.ndarray) -> None:
    """Window vectors v_WxD of documents doc_W; first_W marks each document's first window; tokens_W = tokens
    the window read (special tokens included)."""
    v_WxD = np.asarray(v_WxD, np.float32)
    f = first_W.astype(bool)
    self.first_NxD[doc_W[f]] = v_WxD[f]
    np.add.at(self.count_N, doc_W, 1)
    np.add.at(self.tokens_N, doc_W, tokens_W)
    if self.sum_NxD is not None:
      np.add.at(self.sum_NxD, doc_W, v_WxD.astype(np.float64) * tokens_W[:, None])
    if self.usum_NxD is not None:
      np.add.at(self.usum_NxD, doc_W, v_WxD.astype(np.float64))
    if self.max_NxD is not None:
      np.maximum.at(self.max_NxD, doc_W, v_WxD)

  def result(self, pooling: str) -> np.ndarray:
    """float32 [N, D] (mean_max: [N, 2 D]); documents of one window get their window's vector exactly."""
    if (self.count_N == 0).any():
      raise ValueError(f"{int((self.count_N == 0).sum())} documents have no embedded window")
    one = (self.count_N == 1)[:, None]
    if pooling == "first":
      return self.first_NxD.copy()
    if pooling == "mean":
      return np.where(one, self.first_NxD, (self.sum_NxD / self.tokens_N[:, None]).astype(np.float32))
    if pooling == "mean_unweighted":
      return np.where(one, self.first_NxD, (self.usum_NxD / self.count_N[:, None]).astype(np.float32))
    if pooling == "max":
      return self.max_NxD.copy()
    if pooling == "mean_max":
      return np.concatenate([self.result("mean"), self.result("max")], axis=1)
    raise ValueError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
