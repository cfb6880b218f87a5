"""Retrieval evaluation: `python eval.py --config configs/retrieval.py --workdir OUT
--config.data.path=PATH_OR_BEIR_DIR --config.models=minilm,...`.

Each model searches a document pool with its embeddings (exact cosine search in blocks); BM25 (model `bm25`)
is the reference row and each model's fusion with BM25 a hybrid row (weight chosen on validation queries).
Rows have mode `retrieval` (dense and BM25), `retrieval_rrf` / `retrieval_minmax` (hybrids), metrics
nDCG@10 (the headline), MRR@10, Recall@1/10/100, MAP@100 (pytrec_eval). The verdict pairs every row with the
base's dense row and with BM25's over test queries. See jaxemb/eval/evaluators/retrieval.py.

data.path is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv [, qrels/dev.tsv]) or one corpus
whose data.text_field is the document and retrieval.query_field the query (each query is relevant to its own
document and its exact duplicates; queries from the validation and test splits of the training data spec):

  python eval.py --config configs/retrieval.py --workdir runs/ret_medquad \\
    --config.data.path=../shared/data/medquad_answers.jsonl.gz --config.retrieval.query_field=question \\
    --config.models=minilm,runs/pairs_medquad/model
  python eval.py --config configs/retrieval.py --workdir runs/ret_mts \\
    --config.data.path=../shared/data/mtsamples_notes.jsonl.gz --config.retrieval.query_field=description

Variant `:smoke`: 100 queries per split, max_length 64.
"""

import importlib.util
from pathlib import Path

import ml_collections


def _eval_config() -> ml_collections.ConfigDict:
  # configs/ is a folder of files, not a package: configs/eval.py is read by path (config_flags reads files
  # the same way), so every evaluation setting keeps its one default there.
  spec = importlib.util.spec_from_file_location("jaxemb_configs_eval", Path(__file__).with_name("eval.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = _eval_config()
  config.modes = "retrieval"
  config.tfidf = False
  config.geometry.enabled = False
  config.data.label_field = ""
  config.data.metadata_field = ""
  config.max_length = 256          # tokens per document and per query (today's truncating embedding)

  config.retrieval = ml_collections.ConfigDict()
  config.retrieval.query_field = "question"  # one-corpus input: the query field (data.text_field = the document)
  config.retrieval.pool = "all"    # one-corpus input: "all" documents, or "eval" (validation + test only)
  config.retrieval.max_queries = 0  # > 0: a seeded subset of this many queries per split
  config.retrieval.k = 100         # depth of every run (Recall@100, MAP@100; the fusions' candidates)
  config.retrieval.query_block = 1024  # exact search: queries x documents scored per block on the device
  config.retrieval.doc_block = 16384
  config.retrieval.bm25 = True     # the BM25 row and the hybrid rows
  config.retrieval.fusions = "rrf,minmax"
  config.retrieval.weight_grid = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"  # weight of the dense run
  config.retrieval.default_weight = 0.5  # without validation queries; ties on validation go nearest to it
  config.retrieval.verdict_metric = "ndcg@10"

  if arg == "smoke":
    config.max_length = 64
    config.retrieval.max_queries = 100
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r} (expected '' or 'smoke')")
  return config
