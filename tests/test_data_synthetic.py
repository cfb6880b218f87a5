"""The quick-start corpus: deterministic, fields as documented, cached by `quickstart_corpus_path`."""

import collections
import gzip
import json

from jaxemb.data.synthetic import NOTE_TYPES, SPECIALTIES, generate, quickstart_corpus_path, write_corpus


def test_generator_is_deterministic_and_has_the_documented_fields(tmp_path):
  a = write_corpus(tmp_path / "a.jsonl.gz", n_notes=300, seed=0)
  b = write_corpus(tmp_path / "b.jsonl.gz", n_notes=300, seed=0)
  assert a.read_bytes() == b.read_bytes()  # byte-identical: the prepared-data cache key is stable
  assert a.read_bytes() != write_corpus(tmp_path / "c.jsonl.gz", n_notes=300, seed=1).read_bytes()
  records = [json.loads(line) for line in gzip.open(a)]
  assert len(records) == 300
  assert all(set(r) == {"id", "text", "note_type", "specialty", "group", "split"} for r in records)
  assert {r["note_type"] for r in records} == set(NOTE_TYPES)
  assert {r["specialty"] for r in records} == set(SPECIALTIES)
  words = [len(r["text"].split()) for r in records]
  assert min(words) < 60 and max(words) > 250
  # Splits are by patient: no patient on both sides.
  by_group = collections.defaultdict(set)
  for r in records:
    by_group[r["group"]].add(r["split"])
  assert all(len(s) == 1 for s in by_group.values())
  assert 0.1 < sum(r["split"] == "test" for r in records) / 300 < 0.3


def test_specialty_vocabulary_is_informative_but_noisy():
  records = list(generate(400, seed=0))
  # A note usually contains a drug of its own specialty, sometimes (ambiguous notes) only another's.
  own = [any(d in r["text"] for d in SPECIALTIES[r["specialty"]]["drug"]) for r in records]
  assert 0.5 < sum(own) / len(own) < 0.98


def test_quickstart_path_generates_once(tmp_path):
  p = quickstart_corpus_path(tmp_path, n_notes=50)
  mtime = p.stat().st_mtime_ns
  assert quickstart_corpus_path(tmp_path, n_notes=50) == p and p.stat().st_mtime_ns == mtime
  assert not list(p.parent.glob("*.tmp"))
