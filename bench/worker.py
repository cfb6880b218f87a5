"""One framework's side of a benchmark, in its own process: `python bench/worker.py jax|torch`.

Started by the drivers (bench/train_step.py, bench/scaling.py, bench/embed.py, bench/levers.py) through
bench/harness.py, never by hand. Protocol: one JSON command per stdin line, one JSON reply per line on the
ORIGINAL stdout (everything libraries print is redirected to stderr). Each reply has `ok`, `rss_mb` (now) and
`maxrss_mb` (this process's high-water mark).

The jax side imports jaxemb (and never torch); the torch side imports bench/torch_reference.py (and never
jaxemb), so each can run under its own venv.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import MTSAMPLES, default_cache_dir  # noqa: E402

MATMUL_N = 2048


def _rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _numpy_matmul_gflops(repeats: int) -> float:
  import numpy as np
  a = np.random.default_rng(0).standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
  a @ a
  best = min(_timed(lambda: a @ a) for _ in range(repeats))
  return 2 * MATMUL_N**3 / best / 1e9


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


# ============================================================================================ jax side
class JaxSide:
  """jaxemb's train step (loop.build_state_and_step) and Encoder.embed."""

  def __init__(self):
    import jax
    cache = default_cache_dir() / "xla"
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    self.jax = jax
    self.encoder = None
    self.steps = {}  # key -> [compiled step, state, batch]

  def versions(self) -> dict:
    import flax
    import jaxlib
    import numpy as np
    import optax
    import transformers
    return {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
            "jax_devices": [str(d) for d in self.jax.devices()]}

  def peak(self, repeats: int = 5) -> dict:
    import jax.numpy as jnp
    a = jnp.asarray(self.jax.random.normal(self.jax.random.PRNGKey(0), (MATMUL_N, MATMUL_N), jnp.float32))
    mm = self.jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    best = min(_timed(lambda: mm(a).block_until_ready()) for _ in range(repeats))
    return {"jax_matmul_gflops": 2 * MATMUL_N**3 / best / 1e9, "numpy_matmul_gflops": _numpy_matmul_gflops(repeats)}

  def _encoder(self):
    if self.encoder is None:
      from jaxemb.models.api import Encoder
      self.encoder = Encoder.from_pretrained("minilm")
    return self.encoder

  def _config(self, objective: str, batch: int, seq_len: int, data_path: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"cfg_{objective}", REPO / "configs" / f"{objective}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config("")
    cfg.batch_size = batch
    cfg.data.cache_dir = str(default_cache_dir() / "prepared")
    if objective == "declutr":
      cfg.declutr.max_span = seq_len
      cfg.data.max_length = seq_len + 2
    else:
      cfg.data.max_length = seq_len
    if data_path:
      # MTSamples: metadata category note_type, the corpus's own split, no group field.
      cfg.data.path = data_path
      cfg.data.metadata_field = "note_type"
      cfg.data.group_field = ""
      cfg.data.split_field = "split"
      cfg.data.id_field = "id"
    return cfg

  def make_batch(self, objective: str, batch: int, seq_len: int, out: str, step: int = 0, data: str = "auto"
                 ) -> dict:
    """Builds batch `step` of the objective's real batch iterator and saves it (npz) for both workers."""
    import numpy as np
    from jaxemb.train.loop import open_corpus
    data_path = str(MTSAMPLES) if data == "auto" and MTSAMPLES.exists() else ("" if data == "auto" else data)
    cfg = self._config(objective, batch, seq_len, data_path)
    enc = self._encoder()
    path, prepared, it = open_corpus(cfg, enc.tokenizer)
    b = it.batch(step)
    np.savez(out, **b)
    c = enc.config
    return {"corpus": str(path), "num_categories": len(getattr(it, "categories", []) or []),
            "shapes": {k: list(v.shape) for k, v in b.items()},
            "tokens": int(sum(v.sum() for k, v in b.items() if k.endswith("mask"))),
            "predictions": int((b["mlm_weights"] > 0).sum()),
            "model": {"hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
                      "num_layers": c.num_layers, "vocab_size": c.vocab_size, "num_heads": c.num_heads}}

  def train_setup(self, key: str, objective: str, batch_file: str, batch: int, seq_len: int,
                  num_categories: int = 0, variant: str = "default", dtype: str = "float32") -> dict:
    """State + jitted step for one batch shape; AOT-compiles it (timed) and runs one warm-up step."""
    import numpy as np
    from jax.sharding import Mesh
    from jaxemb.train import loop
    self.steps.pop(key, None)
    cfg = self._config(objective, batch, seq_len, "")
    cfg.model.dtype = dtype
    host_batch = dict(np.load(batch_file))
    if variant == "single_positive_group":  # DeCLUTR positives in one array padded to the longest (no split)
      from bench.harness import unsplit_positives
      ids, mask = unsplit_positives(host_batch)
      host_batch = {k: v for k, v in host_batch.items() if not k.startswith(("positive_long", "positive_index"))}
      host_batch.update(positive_ids=ids, positive_mask=mask)
    mesh = Mesh(np.array(self.jax.devices()), ("data",))
    with _variant(variant, objective):
      # The metadata objective's classification head is sized by the iterator's categories.
      categories = types.SimpleNamespace(categories=list(range(num_categories)))
      state, step_fn = loop.build_state_and_step(cfg, self._encoder(), categories, mesh)
      t0 = time.perf_counter()
      lowered = step_fn.lower(state, host_batch)
      t1 = time.perf_counter()
      compiled = lowered.compile()
      t2 = time.perf_counter()
    first = _timed(lambda: self._run(compiled, state, host_batch, key))
    return {"lower_s": t1 - t0, "compile_s": t2 - t1, "first_step_s": first}

  def _run(self, compiled, state, host_batch, key):
    state, metrics = compiled(self.steps[key][1] if key in self.steps else state, host_batch)
    self.jax.block_until_ready((state, metrics))
    self.steps[key] = [compiled, state, host_batch, metrics]

  def train_time(self, key: str, n: int) -> dict:
    compiled, state, host_batch, _ = self.steps[key]
    secs = [_timed(lambda: self._run(compiled, None, host_batch, key)) for _ in range(n)]
    loss = float(self.steps[key][3]["loss"])
    return {"secs": secs, "loss": loss}

  def drop(self, key: str) -> dict:
    self.steps.pop(key, None)
    return {}

  def embed_setup(self, texts_file: str, batch_size: int, max_length: int) -> dict:
    import numpy as np
    texts = json.loads(Path(texts_file).read_text())
    enc = self._encoder()
    self.embed_args = (texts, batch_size, max_length)
    ids = enc.tokenize(texts, max_length)
    t0 = time.perf_counter()
    enc.embed(texts, batch_size=batch_size, max_length=max_length)  # compiles one program per length bucket
    first = time.perf_counter() - t0
    return {"first_call_s": first, "tokens": int(sum(len(x) for x in ids)),
            "padded_tokens_buckets": _bucketed_tokens(ids, batch_size, max_length), "n": len(texts),
            "np": np.__version__}

  def embed_time(self, n: int, out: str | None = None) -> dict:
    import numpy as np
    texts, bs, ml = self.embed_args
    secs, y = [], None
    for _ in range(n):
      t0 = time.perf_counter()
      y = self._encoder().embed(texts, batch_size=bs, max_length=ml)
      secs.append(time.perf_counter() - t0)
    if out:
      np.save(out, y)
    return {"secs": secs}


def _bucketed_tokens(ids, batch_size, max_length) -> int:
  """Padded tokens Encoder.embed computes (its batching plan, `inference_batches`)."""
  import jax
  from jaxemb.models.inference import inference_batches
  plan = inference_batches([len(x) for x in ids], batch_size, max_length, jax.device_count())
  return sum(size * length for _, size, length in plan)


class _variant:
  """Bench-local lever toggles for the jax step (bench/levers.py), applied while the step is traced.

  default: the package as it is. full_vocab: the LM head and CE on every position (B*L rows, HF-style) instead
  of the M gathered prediction slots. bernoulli_dropout: `jax.random.bernoulli` per element instead of the
  hashed counter. threefry_dropout: the previous dropout (threefry bits, two 16-bit decisions per word).
  no_attention_dropout: dropout on the B x H x L x L attention weights switched off (a diagnostic, NOT
  equivalent training: it bounds what a cheaper attention dropout could gain).
  single_positive_group (DeCLUTR; applied to the batch in train_setup): all positives in one array padded to
  the longest, as before declutr.split_positives.
  softmax_probs: attention as before 2026-12-01's second pass: scores / sqrt(d), jax.nn.softmax over the L x L
  scores, dropout on the probabilities, then PV (the package divides the context by the softmax sum instead).
  """

  def __init__(self, name: str, objective: str):
    if name not in ("default", "full_vocab", "bernoulli_dropout", "threefry_dropout", "no_attention_dropout",
                    "single_positive_group", "softmax_probs"):
      raise ValueError(f"unknown variant {name!r}")
    self.name, self.objective, self.undo = name, objective, []

  def __enter__(self):
    import jax
    import jax.numpy as jnp
    from jaxemb.models import encoder as enc_mod
    from jaxemb.objectives import mlm as mlm_mod
    if self.name == "full_vocab":
      import optax

      def full_vocab_loss(params, hidden_BxLxD, positions_BxM, labels_BxM, weights_BxM, *, config, dtype):
        b, length, d = hidden_BxLxD.shape
        logits_BLxV = enc_mod.mlm_logits(params, hidden_BxLxD.reshape(b * length, d), config=config, dtype=dtype)
        rows = jnp.broadcast_to(jnp.arange(b)[:, None], positions_BxM.shape)
        real = weights_BxM > 0
        # HF-style label matrix: the original id at each real prediction slot, -1 (ignored) elsewhere.
        labels_BxL = jnp.full((b, length), -1, jnp.int32).at[rows, positions_BxM].max(
            jnp.where(real, labels_BxM, -1))
        labels_BL = labels_BxL.reshape(-1)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits_BLxV, jnp.maximum(labels_BL, 0))
        w = (labels_BL >= 0).astype(jnp.float32)
        n = w.sum()
        return (ce * w).sum() / jnp.maximum(n, 1.0), n

      self._swap(mlm_mod, "mlm_loss_from_hidden", full_vocab_loss)
      from jaxemb.objectives import declutr as declutr_mod
      self._swap(declutr_mod, "mlm_loss_from_hidden", full_vocab_loss)
    elif self.name == "bernoulli_dropout":
      def bernoulli_dropout(x, rate, rng):
        if rng is None or rate <= 0.0:
          return x
        keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
      self._swap(enc_mod, "dropout", bernoulli_dropout)
    elif self.name == "threefry_dropout":
      def threefry_dropout(x, rate, rng):  # jaxemb's dropout before 2026-12: threefry bits, two 16-bit decisions
        if rng is None or rate <= 0.0:
          return x
        n = x.size
        bits = jax.random.bits(rng, ((n + 1) // 2,), jnp.uint32)
        halves = jnp.stack([bits & 0xFFFF, bits >> 16], axis=-1).reshape(-1)[:n].reshape(x.shape)
        threshold = int(round(rate * 65536))
        return jnp.where(halves >= threshold, x / (1.0 - threshold / 65536.0), jnp.zeros_like(x))
      self._swap(enc_mod, "dropout", threefry_dropout)
    elif self.name == "softmax_probs":
      import math

      class SoftmaxProbsAttention(enc_mod.SelfAttention):  # same parameters (query/key/value/output)
        @enc_mod.nn.compact
        def __call__(self, x_BxLxD, bias_Bx1x1xL, rng):
          c, dt = self.config, self.dtype
          b, length, _ = x_BxLxD.shape

          def heads(name):
            y = enc_mod.Linear(c.hidden_size, dt, c.initializer_range, name=name)(x_BxLxD)
            return y.reshape(b, length, c.num_heads, c.head_dim).transpose(0, 2, 1, 3)

          q, k, v = heads("query"), heads("key"), heads("value")
          scores = jnp.einsum("bhqd,bhkd->bhqk", q.astype(dt), k.astype(dt),
                              preferred_element_type=jnp.float32) / math.sqrt(c.head_dim)
          probs = jax.nn.softmax(scores + bias_Bx1x1xL, axis=-1)
          rng_attn, rng_out = jax.random.split(rng) if rng is not None else (None, None)
          probs = enc_mod.dropout(probs, c.attention_dropout, rng_attn)
          ctx = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(dt), v.astype(dt), preferred_element_type=jnp.float32)
          ctx = ctx.transpose(0, 2, 1, 3).reshape(b, length, c.hidden_size)
          return enc_mod.Output(c, dt, name="output")(ctx, x_BxLxD, rng_out)

      self._swap(enc_mod, "SelfAttention", SoftmaxProbsAttention)
    elif self.name == "no_attention_dropout":
      packaged = enc_mod.dropout
      # Only the attention probabilities are 4-D (B x H x L x L); hidden-state dropout stays.
      self._swap(enc_mod, "dropout", lambda x, rate, rng: x if x.ndim == 4 else packaged(x, rate, rng))
    return self

  def _swap(self, mod, name, value):
    self.undo.append((mod, name, getattr(mod, name)))
    setattr(mod, name, value)

  def __exit__(self, *exc):
    for mod, name, old in reversed(self.undo):
      setattr(mod, name, old)


# ============================================================================================ torch side
class TorchSide:
  """bench/torch_reference.py's step, and a sentence-transformers-style encode (BertModel + mean pooling)."""

  def __init__(self):
    import torch
    self.torch = torch
    threads = os.environ.get("JAXEMB_BENCH_TORCH_THREADS")
    if threads:
      torch.set_num_threads(int(threads))
    self.steps = {}   # objective -> step fn (one model + AdamW per objective, reused across batch shapes)
    self.batches = {}

  def versions(self) -> dict:
    import numpy as np
    import transformers
    return {"torch": self.torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
            "torch_threads": self.torch.get_num_threads()}

  def peak(self, repeats: int = 5) -> dict:
    torch = self.torch
    a = torch.randn(MATMUL_N, MATMUL_N, dtype=torch.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return {"torch_matmul_gflops": 2 * MATMUL_N**3 / best / 1e9, "numpy_matmul_gflops": _numpy_matmul_gflops(repeats)}

  def train_setup(self, key: str, objective: str, batch_file: str, dtype: str = "float32", **_) -> dict:
    import numpy as np
    from bench.torch_reference import make_torch_step
    step_key = f"{objective}/{dtype}"
    if step_key not in self.steps:
      self.steps[step_key] = make_torch_step(objective, autocast_dtype=None if dtype == "float32" else dtype)
    self.batches[key] = (step_key, dict(np.load(batch_file)))
    first = _timed(lambda: self.steps[step_key](self.batches[key][1]))
    return {"first_step_s": first}

  def train_time(self, key: str, n: int) -> dict:
    step_key, batch = self.batches[key]
    step = self.steps[step_key]
    secs, loss = [], None
    for _ in range(n):
      t0 = time.perf_counter()
      loss = step(batch)  # float(loss) inside synchronises
      secs.append(time.perf_counter() - t0)
    return {"secs": secs, "loss": loss}

  def drop(self, key: str) -> dict:
    self.batches.pop(key, None)
    return {}

  def embed_setup(self, texts_file: str, batch_size: int, max_length: int) -> dict:
    import transformers
    from bench.torch_reference import minilm_dir
    self.texts = json.loads(Path(texts_file).read_text())
    self.embed_args = (batch_size, max_length)
    self.tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    self.model = transformers.BertModel.from_pretrained(minilm_dir(), dtype=self.torch.float32).eval()
    first = _timed(self._encode)
    return {"first_call_s": first}

  def _encode(self):
    """sentence-transformers' encode(): sort by text length (longest first), tokenise each batch padded to its
    longest row, forward under inference_mode, masked mean pooling, back to input order."""
    import numpy as np
    torch = self.torch
    batch_size, max_length = self.embed_args
    texts = self.texts
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), self.model.config.hidden_size), np.float32)
    with torch.inference_mode():
      for s in range(0, len(texts), batch_size):
        rows = order[s:s + batch_size]
        feats = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt")
        hidden = self.model(**feats).last_hidden_state
        m = feats["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out[rows] = ((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)).numpy()
    return out

  def embed_time(self, n: int, out: str | None = None) -> dict:
    import numpy as np
    secs, y = [], None
    for _ in range(n):
      t0 = time.perf_counter()
      y = self._encode()
      secs.append(time.perf_counter() - t0)
    if out:
      np.save(out, y)
    return {"secs": secs}


# ============================================================================================ main loop
def main() -> None:
  framework = sys.argv[1]
  proto = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)  # library prints (Python or C level) go to stderr, the protocol keeps the real stdout
  sys.stdout = sys.stderr
  side = JaxSide() if framework == "jax" else TorchSide()
  for line in sys.stdin:
    msg = json.loads(line)
    cmd = msg.pop("cmd")
    if cmd == "quit":
      break
    try:
      reply = {"ok": True, **(getattr(side, cmd)(**msg) or {})}
    except Exception:  # noqa: BLE001 - the driver reports it with the traceback
      reply = {"ok": False, "error": traceback.format_exc()}
    reply.update(rss_mb=_rss_mb(), maxrss_mb=_maxrss_mb())
    proto.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
  main()
