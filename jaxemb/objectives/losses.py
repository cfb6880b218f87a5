"""Pure loss maths: masked-LM cross-entropy, NT-Xent (DeCLUTR), SupCon (metadata) and plain CE.

Every function takes GLOBAL-batch arrays and is written in plain jnp: under `jax.jit` with inputs sharded
over the mesh "data" axis, XLA inserts the gathers, so contrastive negatives span the whole global batch
(no per-device loss, no 1/n_devices gradient scale). All maths runs in float32 whatever the input dtype.
Exact formulas: docs/ARCHITECTURE.md "The method".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

# Masked entries of a logits row are set to this instead of -inf: exp() of it is exactly 0 in float32, yet
# masked log-probs and rows with every entry masked stay finite. A NaN/inf there would reach the gradient
# even though `jnp.where` discards the value (0 * inf in the backward pass).
_MASKED_LOGIT = -1e9
# Floor on the squared norm in l2 normalisation: a zero (e.g. padding) row maps to 0, not NaN, and the
# gradient of the norm stays finite.
_NORM_EPS_SQ = 1e-12


def _l2_normalize(x_NxD: jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm, float32; rows with norm below 1e-6 are scaled by 1e6 instead."""
  x_NxD = x_NxD.astype(jnp.float32)
  sq_norm_Nx1 = jnp.sum(x_NxD * x_NxD, axis=-1, keepdims=True)
  return x_NxD * jax.lax.rsqrt(jnp.maximum(sq_norm_Nx1, _NORM_EPS_SQ))


def _cosine_logits(z_NxD: jax.Array, temperature: float) -> jax.Array:
  """Z Z^T / tau for unit rows z_NxD -> NxN float32.

  HIGHEST precision: at tau = 0.05 a bf16/tf32 matmul error of 1e-3 in a cosine is 2e-2 in a logit.
  """
  return jnp.matmul(z_NxD, z_NxD.T, precision=jax.lax.Precision.HIGHEST) / temperature


def masked_lm_loss(
    logits_NxMxV: jax.Array, labels_NxM: jax.Array, weights_NxM: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Weighted mean token cross-entropy over the MLM prediction slots.

  Args:
    logits_NxMxV: vocabulary logits at the M prediction slots of each of N rows (any float dtype).
    labels_NxM: int target token ids; ignored (may be any value, even out of range) where weight is 0.
    weights_NxM: 1.0 for a real prediction, 0.0 for a padding slot (other non-negative values weight it).

  Returns:
    (loss, n_predictions): scalar float32 sum(w * CE) / sum(w) (in nats per prediction; 0.0 when
    sum(w) == 0), and the float32 scalar sum(w), i.e. the number of predictions for 0/1 weights.
    Padding slots contribute nothing to the value or the gradient, even if their logits are inf/NaN.
  """
  weights_NxM = weights_NxM.astype(jnp.float32)
  real_NxM = weights_NxM > 0
  # Padding slots get all-zero logits and label 0, so their CE is finite (0 * NaN would poison the sum and
  # the gradient) whatever the slot holds, e.g. an ignore index of -100.
  logits_NxMxV = jnp.where(real_NxM[..., None], logits_NxMxV.astype(jnp.float32), 0.0)
  labels_NxM = jnp.where(real_NxM, labels_NxM, 0)
  ce_NxM = optax.softmax_cross_entropy_with_integer_labels(logits_NxMxV, labels_NxM)
  n_predictions = jnp.sum(weights_NxM)
  loss = jnp.sum(ce_NxM * weights_NxM) / jnp.maximum(n_predictions, 1e-8)
  return loss, n_predictions


def nt_xent(anchors_NxD: jax.Array, positives_NxD: jax.Array, temperature: float = 0.05,
            groups_N: jax.Array | None = None) -> jax.Array:
  """Symmetric NT-Xent (SimCLR / DeCLUTR) over 2N rows.

  Z = l2norm(concat(anchors, positives)) (2N x D), S = Z Z^T / tau with the diagonal excluded; row i's
  target is row (i + N) mod 2N and every other row is a negative (including other anchors of the same
  document). Loss = mean CE over all 2N rows.

  Args:
    anchors_NxD: anchor embeddings (any float dtype; norms are irrelevant).
    positives_NxD: the positive of each anchor, row-aligned with anchors_NxD.
    temperature: tau.
    groups_N: optional int id per anchor row; rows of the same group (e.g. the same normalised text) are
      left out of each other's denominators, so a duplicate is never pushed away as a false negative. The
      row's own target stays. None = every other row is a negative (the original).

  Returns:
    Scalar float32 loss (nats).
  """
  n = anchors_NxD.shape[0]
  z_2NxD = _l2_normalize(jnp.concatenate([anchors_NxD, positives_NxD], axis=0))
  logits_2Nx2N = _cosine_logits(z_2NxD, temperature)
  targets_2N = (jnp.arange(2 * n) + n) % (2 * n)
  excluded_2Nx2N = jnp.eye(2 * n, dtype=bool)
  if groups_N is not None:
    groups_2N = jnp.concatenate([groups_N, groups_N])
    is_target_2Nx2N = jnp.arange(2 * n)[None, :] == targets_2N[:, None]
    excluded_2Nx2N |= (groups_2N[:, None] == groups_2N[None, :]) & ~is_target_2Nx2N
  logits_2Nx2N = jnp.where(excluded_2Nx2N, _MASKED_LOGIT, logits_2Nx2N)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_2Nx2N, targets_2N))


def supcon(embeddings_BxD: jax.Array, labels_B: jax.Array, temperature: float = 0.1,
           groups_B: jax.Array | None = None) -> jax.Array:
  """Supervised contrastive loss (Khosla et al. 2020, L_out) on l2-normalised embeddings.

  For anchor i, P(i) = other rows with the same label, A(i) = all other rows;
  loss_i = -mean_{p in P(i)} [s_ip / tau - logsumexp_{a in A(i)} s_ia / tau], averaged over anchors
  with |P(i)| >= 1.

  Args:
    embeddings_BxD: pooled embeddings (any float dtype; norms are irrelevant).
    labels_B: int category of each row.
    temperature: tau.
    groups_B: optional int id per row; rows of the same group (the same normalised text) are left out of
      each other's A(i) and P(i): a note filed under two categories is never a false negative of itself, and
      a duplicate is no free positive. None = every other row (the original).

  Returns:
    Scalar float32 loss (nats). Exactly 0.0, with an exactly zero gradient, when the batch holds no
    positive pair or no negative pair (then the objective carries no signal about categories).
  """
  b = embeddings_BxD.shape[0]
  z_BxD = _l2_normalize(embeddings_BxD)
  logits_BxB = _cosine_logits(z_BxD, temperature)

  candidate_BxB = ~jnp.eye(b, dtype=bool)  # every other row
  if groups_B is not None:
    candidate_BxB &= groups_B[:, None] != groups_B[None, :]
  same_label_BxB = labels_B[:, None] == labels_B[None, :]
  positive_BxB = candidate_BxB & same_label_BxB
  negative_BxB = candidate_BxB & ~same_label_BxB

  logits_BxB = jnp.where(candidate_BxB, logits_BxB, _MASKED_LOGIT)
  log_prob_BxB = logits_BxB - jax.nn.logsumexp(logits_BxB, axis=1, keepdims=True)
  n_pos_B = jnp.sum(positive_BxB, axis=1)
  sum_pos_log_prob_B = jnp.sum(jnp.where(positive_BxB, log_prob_BxB, 0.0), axis=1)
  loss_B = -sum_pos_log_prob_B / jnp.maximum(n_pos_B, 1)

  has_pos_B = n_pos_B > 0
  n_anchors = jnp.sum(has_pos_B)
  loss = jnp.sum(jnp.where(has_pos_B, loss_B, 0.0)) / jnp.maximum(n_anchors, 1)
  has_signal = (n_anchors > 0) & jnp.any(negative_BxB)
  return jnp.where(has_signal, loss, 0.0)


def classification_loss(logits_BxK: jax.Array, labels_B: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of a K-way head (metadata objective, linear-head variant).

  Args:
    logits_BxK: class logits (any float dtype).
    labels_B: int class index in [0, K).

  Returns:
    Scalar float32 loss (nats per example).
  """
  logits_BxK = logits_BxK.astype(jnp.float32)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_BxK, labels_B))


def query_document_nce(queries_BxD: jax.Array, documents_BxD: jax.Array, temperature: float = 0.05, *,
                       pair_groups_B: jax.Array | None = None, query_groups_B: jax.Array | None = None,
                       hard_HxD: jax.Array | None = None, hard_groups_H: jax.Array | None = None,
                       symmetric: bool = False) -> jax.Array:
  """InfoNCE from queries to their documents with in-batch (and optional hard) negatives.

  Row i's query q_i has the positive d_i; every other document d_j of the global batch and every hard
  negative h_k is a negative: loss_q = mean_i CE(softmax_j [cos(q_i, d_j) / tau ; cos(q_i, h_k) / tau], i).
  With `symmetric`, also documents to queries: loss_d = mean_i CE(softmax_j cos(d_i, q_j) / tau, i), and the
  loss is (loss_q + loss_d) / 2.

  Args:
    queries_BxD, documents_BxD: row-aligned pairs (any float dtype; norms are irrelevant).
    temperature: tau.
    pair_groups_B: int id per DOCUMENT text (equal = exact duplicates); hard_groups_H: the same ids for the
      hard negatives (one id space with pair_groups_B). A document equal to row i's own is left out of row
      i's denominator (it is not a negative), in both directions.
    query_groups_B: int id per QUERY text: row j with the same query as row i has a document that answers
      row i's query too, so it is left out of row i's denominator (and q_j out of d_i's).
    hard_HxD: hard-negative documents (extra columns of the query -> document direction only).
    symmetric: add the document -> query direction.

  Returns:
    Scalar float32 loss (nats).
  """
  b = queries_BxD.shape[0]
  q_BxD, d_BxD = _l2_normalize(queries_BxD), _l2_normalize(documents_BxD)
  tmp = lambda a, c: jnp.matmul(a, c.T, precision=jax.lax.Precision.HIGHEST) / temperature
  same_BxB = jnp.zeros((b, b), bool)
  if pair_groups_B is not None:
    same_BxB |= pair_groups_B[:, None] == pair_groups_B[None, :]
  if query_groups_B is not None:
    same_BxB |= query_groups_B[:, None] == query_groups_B[None, :]
  excluded_BxB = same_BxB & ~jnp.eye(b, dtype=bool)
  targets_B = jnp.arange(b)
  logits_q = jnp.where(excluded_BxB, _MASKED_LOGIT, tmp(q_BxD, d_BxD))
  if hard_HxD is not None:
    hard_logits_BxH = tmp(q_BxD, _l2_normalize(hard_HxD))
    if hard_groups_H is not None and pair_groups_B is not None:
      hard_logits_BxH = jnp.where(pair_groups_B[:, None] == hard_groups_H[None, :], _MASKED_LOGIT, hard_logits_BxH)
    logits_q = jnp.concatenate([logits_q, hard_logits_BxH], axis=1)
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_q, targets_B))
  if symmetric:
    logits_d = jnp.where(excluded_BxB, _MASKED_LOGIT, tmp(d_BxD, q_BxD))
    loss = 0.5 * (loss + jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_d, targets_B)))
  return loss
