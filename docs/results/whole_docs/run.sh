#!/usr/bin/env bash
# docs/RESULTS.md "Whole documents": one eval.py per corpus (run from the repo root; ~/.cache holds nothing it
# needs). Base of every verdict = all-MiniLM-L6-v2 truncated at 256 tokens; the other entries embed the same
# encoder in windows (one pass per window size computes every pooling, eval/cache.py). Logistic-regression
# probe with and without balanced class weights, all labels and 16 shots x seeds 0,1,2, the tuned TF-IDF rows.
# bfloat16 embeddings (2x faster on this AMX CPU, cosine >= 0.9999 to float32: docs/PERFORMANCE.md) for the
# CPU budget.
set -euo pipefail
corpus=${1:?mtsamples|fda|medquad}
windows=${2:-128 256}   # window sizes; each is one pass over every document. Further arguments go to eval.py
# (the runs of RESULTS.md: `run.sh mtsamples "128 256" --config.tfidf=False`, `run.sh medquad 128
# --config.tfidf=False`, their TF-IDF rows being docs/results/<corpus>/tfidf_results.json on the same split;
# `run.sh fda "128 256"`).
case $corpus in
  mtsamples) file=mtsamples_notes; label=specialty; docs=0 ;;
  fda) file=fda_device_recalls; label=cause_group; docs=4000 ;;   # the subsets of docs/RESULTS.md (CPU budget)
  medquad) file=medquad_answers; label=qtype; docs=2000 ;;
esac
models=minilm,minilm#window=128#pooling=first
for w in $windows; do
  for p in mean mean_unweighted max mean_max; do models+=",minilm#window=$w#pooling=$p"; done
done
python eval.py --config configs/eval.py --workdir runs/whole_docs/$corpus --config.models="$models" \
  --config.data.path=../shared/data/$file.jsonl.gz --config.data.text_field=text \
  --config.data.label_field=$label --config.data.split_field=split --config.data.group_field= \
  --config.data.max_docs=$docs --config.max_length=256 --config.modes=probe --config.probe.heads=logreg \
  --config.probe.class_weight=none,balanced --config.tfidf_class_weight=none,balanced \
  --config.shots=16,all --config.seeds=0,1,2 --config.geometry.enabled=False --config.embed_dtype=bfloat16 "${@:3}"
