"""The end of a run: the exported model folder `WORKDIR/model` (the kept step, interpolated with the base by the
weight the validation split chose), its card and its record.

The folder is written once, whole: weights, tokenizer, card (README.md) and the export record
(`resolve.EXPORT_RECORD`) go into a temporary folder that replaces `WORKDIR/model` in one rename
(`Encoder.save_pretrained(extra_files=...)`). `WORKDIR/export.json` (the same record) is written first. A run
whose final checkpoint exists but whose export record is missing or older (a crash during the export) exports
again when the same command is rerun (`export_complete`); the weights are a function of the final checkpoint,
the keep_best record and the deterministic validation choice, so the second export equals the first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jaxemb import atomic
from jaxemb.models.card import export_files
from jaxemb.models.lora import interpolate
from jaxemb.resolve import EXPORT_RECORD
from jaxemb.train.validation import score_key


def export_complete(workdir: Path, total: int) -> bool:
  """Whether WORKDIR/model holds the finished export of the run's last step `total` (optimiser updates)."""
  path = Path(workdir) / "model" / EXPORT_RECORD
  if not path.is_file():
    return False
  try:
    return int(json.loads(path.read_text()).get("last_step", -1)) == int(total)
  except ValueError:  # a damaged record is no record
    return False


def export(cfg, workdir: Path, *, encoder, trained: Any, mlm_head: Any, initial_encoder: Any, best, validator,
           alphas: list[float], total: int, excluded_splits: tuple[str, ...], say) -> dict[str, Any]:
  """Writes WORKDIR/export.json and WORKDIR/model; returns the record. `trained`: the last step's encoder
  (host arrays); `best`: (score, step, encoder) of validation.keep_best (score: `validation.score_key`) or
  None; `validator`: a `validation.Validator` or None (then no interpolation choice)."""
  report: dict[str, Any] = {"last_step": int(total), "excluded_splits": list(excluded_splits),
                            "validation_trained_on": "validation" not in excluded_splits}
  if best is not None:
    key = score_key(cfg)
    trained = best[2]
    report.update({"best_step": best[1], f"best_{key}": best[0], "best_metric": key})
    say(f"keeping step {best[1]} ({key} {best[0]:.4f}) of {total}")
  if validator is not None and alphas:
    choice = validator.choose_alpha(trained, alphas)
    trained = interpolate(initial_encoder, trained, choice["chosen_alpha"])
    report["interpolation"] = choice
    cv, ret = choice.get("cv"), choice.get("retrieval")
    how = (f"cross-validated probe: {cv['folds']} folds x {cv['repeats']} partitions over {cv['n_docs']} "
           f"documents of {cv['n_classes']} classes, {cv['dropped_docs']} documents of single-document classes "
           "left out" if cv else
           f"validation retrieval: nDCG@10 of {ret['n_queries']} {ret['query_field']!r} queries over "
           f"{ret['n_docs']} validation documents" if ret else choice["criterion"])
    say(f"interpolated (1-a)*theta0 + a*theta with a = {choice['chosen_alpha']} ({how})")
  if report["validation_trained_on"] and (best is not None or "interpolation" in report):
    say("caution: training also saw the validation documents that made this choice "
        "(validation.include_in_training=True)")
  atomic.write_json(workdir / "export.json", report)
  spec_path = workdir / "data_spec.json"
  files = export_files(cfg=cfg, base_name=str(cfg.model.init), export=report, steps=total,
                       data_spec=json.loads(spec_path.read_text()) if spec_path.exists() else None)
  final = encoder.replace_params({"encoder": trained, "mlm_head": mlm_head})
  final.save_pretrained(workdir / "model", extra_files=files)
  return report

