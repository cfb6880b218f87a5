"""The quick-start corpus: deterministic, fields as documented, balanced, patient-level splits, cached by
`quickstart_corpus_path`, and hard in the documented way (no class is told by one keyword)."""

import collections
import gzip
import hashlib
import json
import re

from jaxemb.data.synthetic import (CONCEPTS, GENERATOR_VERSION, NOTE_TYPES, SPECIALTIES, generate,
                                   quickstart_corpus_path, write_corpus)

# scikit-learn's default word tokenizer (TfidfVectorizer): what a bag-of-words baseline sees.
_WORD = re.compile(r"(?u)\b\w\w+\b")


def test_generator_is_deterministic_and_has_the_documented_fields(tmp_path):
  a = write_corpus(tmp_path / "a.jsonl.gz", n_notes=300, seed=0)
  b = write_corpus(tmp_path / "b.jsonl.gz", n_notes=300, seed=0)
  assert a.read_bytes() == b.read_bytes()  # byte-identical: the prepared-data cache key is stable
  assert a.read_bytes() != write_corpus(tmp_path / "c.jsonl.gz", n_notes=300, seed=1).read_bytes()
  records = [json.loads(line) for line in gzip.open(a)]
  assert len(records) == 300 and len({r["id"] for r in records}) == 300
  assert all(set(r) == {"id", "text", "note_type", "specialty", "group", "split"} for r in records)
  assert {r["note_type"] for r in records} == set(NOTE_TYPES)
  assert {r["specialty"] for r in records} == set(SPECIALTIES)
  # Every template marker was filled in.
  assert not [r["text"] for r in records if re.search(r"<[a-z_0-9-]+>", r["text"])]
  words = sorted(len(r["text"].split()) for r in records)
  assert words[0] >= 40 and words[-1] <= 220 and 80 <= words[len(words) // 2] <= 150


def test_classes_balanced_and_patients_never_span_splits():
  records = list(generate(400, seed=0))
  counts = collections.Counter(r["specialty"] for r in records)
  expected = len(records) / len(SPECIALTIES)
  assert 0.6 * expected <= min(counts.values()) and max(counts.values()) <= 1.4 * expected, counts
  by_group = collections.defaultdict(set)
  for r in records:
    by_group[r["group"]].add(r["split"])
  assert all(len(s) == 1 for s in by_group.values())
  assert 0.1 < sum(r["split"] == "test" for r in records) / len(records) < 0.3
  # Patients write several notes each (the splits have something to keep together).
  assert len(by_group) < len(records) / 2


def test_no_class_is_told_by_one_keyword():
  # For each class, the single word that best flags it ("word in note -> this class"), scored by F1 on the
  # same notes. Measured on these 400 notes: mean 0.38 over the 8 classes, best 0.48 (orthopedics, "hip");
  # version 1 of the corpus (one vocabulary per specialty) scored a mean of 0.73, every class >= 0.67.
  records = list(generate(400, seed=0))
  docs = [set(_WORD.findall(r["text"].lower())) for r in records]
  labels = [r["specialty"] for r in records]
  best = {}
  for c in SPECIALTIES:
    n_pos = labels.count(c)
    tp, n_in = collections.Counter(), collections.Counter()
    for d, y in zip(docs, labels):
      n_in.update(d)
      if y == c:
        tp.update(d)
    best[c] = max(2 * tp[t] / (n_pos + n_in[t]) for t in tp)
  assert sum(best.values()) / len(best) < 0.45, best
  assert max(best.values()) < 0.6, best


def test_shorthand_and_expansions_both_appear():
  # The same concept is written both ways across notes, and some notes define it ("expansion (ABBR)"):
  # what an encoder adapted on the unlabelled text can learn and a bag of words cannot.
  text = "\n".join(r["text"] for r in generate(400, seed=0))
  both = [k for k, (abbrs, exps) in CONCEPTS.items()
          if abbrs and exps and any(a in text for a in abbrs if a not in exps) and any(e in text for e in exps)]
  assert len(both) >= 100
  assert len(re.findall(r"[a-z] \([A-Z][A-Za-z0-9/-]+\)", text)) >= 100


def test_quickstart_path_generates_once(tmp_path):
  p = quickstart_corpus_path(tmp_path, n_notes=50)
  mtime = p.stat().st_mtime_ns
  assert quickstart_corpus_path(tmp_path, n_notes=50) == p and p.stat().st_mtime_ns == mtime
  assert not list(p.parent.glob("*.tmp"))


def test_generator_reproduces_the_recorded_corpus(tmp_path):
  # sha256 of `write_corpus(path, n_notes=200, seed=1)` recorded at commit 8f7cc00 (GENERATOR_VERSION 3), when
  # the vocabulary was still Python literals in synthetic.py: moving it to synthetic_vocab.json changed no byte.
  # The .gz files were identical too (this one a4ca02cd...8e9850, the default 3,000 notes of seed 0
  # e0c5f49e...d62e94), but compressed bytes also depend on the zlib build: the test compares the JSONL text.
  path = write_corpus(tmp_path / "c.jsonl.gz", n_notes=200, seed=1)
  text = gzip.decompress(path.read_bytes())
  assert hashlib.sha256(text).hexdigest() == "b10a354c75a5d10d6a167115cb05cc7508c831af1117dcaa3793e7c8364b4853"
  assert GENERATOR_VERSION == 3  # a change to the text must bump the version (the cache key of the quick start)
