"""The model card (README.md) of an exported, adapted model folder: what it was adapted from, on what, how,
and — once `eval.py` has compared it with its base — the verdict. Replaces the base model's card, which
`Encoder.save_pretrained` copies through with the other sentence-transformers files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections

from jaxemb import atomic
from jaxemb.resolve import EXPORT_RECORD

_VERDICT_START = "<!-- jaxemb:verdict -->"
_VERDICT_END = "<!-- /jaxemb:verdict -->"


def _levers(cfg: ml_collections.ConfigDict) -> list[str]:
  out = []
  if cfg.freeze.embeddings or int(cfg.freeze.layers):
    out.append(f"frozen: {'embeddings, ' if cfg.freeze.embeddings else ''}lowest {int(cfg.freeze.layers)} layers")
  if int(cfg.lora.rank):
    out.append(f"LoRA rank {int(cfg.lora.rank)}, alpha {cfg.lora.alpha} on {cfg.lora.targets} (merged)")
  if float(cfg.toward_base.l2sp):
    out.append(f"L2-SP lambda {cfg.toward_base.l2sp}")
  if float(cfg.toward_base.distill):
    out.append(f"embedding self-distillation weight {cfg.toward_base.distill}")
  if int(cfg.mlm_head.warmup_steps):
    out.append(f"MLM head warm-up {int(cfg.mlm_head.warmup_steps)} steps")
  if cfg.mlm_head.bias_init != "zeros":
    out.append(f"MLM decoder bias: {cfg.mlm_head.bias_init}")
  return out


def export_files(*, cfg: ml_collections.ConfigDict, base_name: str, data_spec: dict | None,
                 export: dict[str, Any], steps: int) -> dict[str, str]:
  """The card (README.md) and the export record (EXPORT_RECORD) of an exported model folder, as texts for
  `Encoder.save_pretrained(extra_files=...)`: written with the weights in one rename, so a folder with the
  record is a finished export (eval.py refuses a training run's model/ without it)."""
  corpus = (data_spec or {}).get("corpus", {})
  lines = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
           "tags: [jaxemb, domain-adaptation, healthcare]", "---", "",
           f"# Adapted from {base_name}", "",
           "A BERT-family sentence encoder adapted with [jaxemb](https://github.com/) by continued training on "
           "unlabelled text. Embeddings are the masked mean of the last hidden layer (as the base).", "",
           "| | |", "|---|---|",
           f"| base model | `{base_name}` |",
           f"| corpus | `{corpus.get('path', cfg.data.path or 'quick-start corpus')}` |",
           f"| corpus sha256 | `{corpus.get('sha256', 'n/a')}` |",
           f"| splits seen in training | all but `{','.join(export.get('excluded_splits', []))}` |",
           f"| objective | `{cfg.objective}` |",
           f"| steps x batch | {steps} x {cfg.batch_size} (lr {cfg.optim.lr}, max_length {cfg.data.max_length}) |"]
  for lever in _levers(cfg):
    lines.append(f"| lever | {lever} |")
  interp = export.get("interpolation")
  if interp:
    lines.append(f"| weights | (1 - a) * base + a * trained, a = {interp['chosen_alpha']} ({interp['criterion']}, "
                 f"{interp['n_validation_docs']} validation documents) |")
  if "best_step" in export:
    lines.append(f"| kept step | {export['best_step']} of {export['last_step']} (best validation {export.get('best_metric', 'val_probe_f1')}) |")
  if export.get("validation_trained_on"):
    lines.append("| caution | training also saw the validation documents that chose the weights above "
                 "(validation.include_in_training): the choice is biased toward the trained weights |")
  lines += ["", "## Evaluation", "", _VERDICT_START,
            "Not evaluated yet: `python eval.py --config configs/eval.py --config.models=BASE,THIS_FOLDER ...` "
            "compares it with its base and writes the verdict here.", _VERDICT_END, "",
            "Load it with `jaxemb.Encoder.from_pretrained(folder)` or `sentence_transformers.SentenceTransformer"
            "(folder)`. sentence-transformers embeds a text's first tokens only (it truncates at its "
            "`max_seq_length`); a whole document is embedded in windows with jaxemb: "
            "`Encoder.from_pretrained(folder).embed(texts, window=128, pooling=\"mean\")` or "
            "`python -m jaxemb.eval.embed --model FOLDER --window 128 --pooling mean ...`. The evaluation "
            "below names the embedding each row was measured with.", ""]
  return {"README.md": "\n".join(lines), EXPORT_RECORD: json.dumps({"base": base_name, **export}, indent=2) + "\n"}


def write_verdict(model_dir: Path, markdown: str) -> bool:
  """Replaces the card's evaluation section with `markdown` (a verdict table); False when the folder has no
  jaxemb card (a base model: its card is not ours to edit)."""
  path = Path(model_dir) / "README.md"
  if not path.exists() or _VERDICT_START not in path.read_text():
    return False
  text = path.read_text()
  head, rest = text.split(_VERDICT_START, 1)
  _, tail = rest.split(_VERDICT_END, 1)
  atomic.write_text(path, f"{head}{_VERDICT_START}\n{markdown.strip()}\n{_VERDICT_END}{tail}")
  return True


def _reproduce(windowing, max_length: int) -> str:
  """The jaxemb call that embeds documents as a verdict row was evaluated (windowing None or window 0 =
  truncation)."""
  if windowing is None or windowing.window == 0:
    return f"`embed(texts, max_length={max_length})`"
  args = f"window={windowing.window}, pooling=\"{windowing.pooling}\""
  args += f", stride={windowing.stride}" if windowing.stride else ""
  args += f", max_windows={windowing.max_windows}" if windowing.max_windows else ""
  return f"`embed(texts, {args})`"


def verdict_markdown(rows: list[dict[str, Any]], corpus: str, max_length: int) -> str:
  """The card's evaluation section: one line per verdict row (compare.verdict_rows plus "embedding", the
  report's label, and "windowing", jaxemb.models.windows.Windowing or None), with the jaxemb call that
  reproduces the row's embedding."""
  lines = [f"Against `{rows[0]['base']}` on `{corpus}` (test macro-F1, mean over seeds; 95% paired bootstrap "
           "interval over test documents):", "",
           "| evaluated as | mode | shots | difference | 95% interval | verdict | embedding | reproduce with "
           "`jaxemb.Encoder` |", "|---|---|---|---|---|---|---|---|"]
  lines += [f"| `{v['model']}` | {v['mode']} | {v['shots']} | {v['diff']:+.3f} | [{v['ci_low']:+.3f}, "
            f"{v['ci_high']:+.3f}] | {v['verdict']} | {v['embedding']} | "
            f"{_reproduce(v['windowing'], max_length) if not v['mode'].startswith('finetune') else 'fine-tuned'} |"
            for v in rows]
  return "\n".join(lines)
