"""DeCLUTR (Giorgi et al. 2021): contrastive learning between spans of the same document, + MLM on anchors.

One pass over the MLM-masked anchors gives both the anchor embeddings and the MLM loss; the P clean
positives of each anchor are embedded and averaged into one positive. NT-Xent runs over the 2N rows of the
GLOBAL batch: under jit with the batch sharded over the mesh, XLA all-gathers the embeddings, so every
device's spans are negatives for every other's (the original's per-GPU loss with a 1/n_gpu gradient scale
is not reproduced).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxemb.models.encoder import encode, mean_pool
from jaxemb.objectives.losses import nt_xent
from jaxemb.objectives.mlm import mlm_loss_from_hidden


def loss_fn(params, batch, rng: jax.Array, *, config, dtype, remat: bool = False, temperature: float = 0.05,
            use_mlm: bool = True, positives: int = 2):
  """Returns (contrastive + MLM, metrics). With use_mlm=False: the contrastive-only ablation."""
  rng_a, rng_p = jax.random.split(rng)
  hidden_NxLxD = encode(params["encoder"], batch["anchor_ids"], batch["anchor_mask"], config=config,
                        dropout_rng=rng_a, dtype=dtype, remat=remat)
  anchors_NxD = mean_pool(hidden_NxLxD, batch["anchor_mask"])
  pos_hidden = encode(params["encoder"], batch["positive_ids"], batch["positive_mask"], config=config,
                      dropout_rng=rng_p, dtype=dtype, remat=remat)
  pos_NPxD = mean_pool(pos_hidden, batch["positive_mask"])
  if "positive_index" in batch:
    # Length-split positives (DeclutrBatches(split_positives=True)): the longer half in its own padded
    # shape, then rows put back in anchor order. Dropout of the second pass uses its own key.
    long_hidden = encode(params["encoder"], batch["positive_long_ids"], batch["positive_long_mask"],
                         config=config, dropout_rng=jax.random.fold_in(rng_p, 1), dtype=dtype, remat=remat)
    pos_all = jnp.concatenate([pos_NPxD, mean_pool(long_hidden, batch["positive_long_mask"])], axis=0)
    pos_NPxD = pos_all[batch["positive_index"]]
  n, d = anchors_NxD.shape
  positives_NxD = pos_NPxD.reshape(n, positives, d).mean(axis=1)
  contrastive = nt_xent(anchors_NxD, positives_NxD, temperature)
  metrics = {"contrastive_loss": contrastive}
  loss = contrastive
  if use_mlm:
    mlm, n_pred = mlm_loss_from_hidden(params, hidden_NxLxD, batch["mlm_positions"], batch["mlm_labels"],
                                       batch["mlm_weights"], config=config, dtype=dtype)
    metrics.update(mlm_loss=mlm, n_predictions=n_pred)
    loss = loss + mlm
  return loss, metrics



