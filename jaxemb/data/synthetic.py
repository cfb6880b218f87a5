"""A deterministic synthetic clinical-note corpus for the quick start (no data files: templates and a vocabulary).

~3,000 notes of 55-150 words (median 95; ~200 MiniLM tokens, 95% under 250) in 5 note types (progress note,
consult, discharge summary, clinic note, procedure note), labelled with the service that wrote them (`specialty`:
8 classes, balanced), about ~1,000 synthetic patients (`group`; a patient keeps age, sex and comorbidities and
mostly sees one service). It is built so that no single word gives the label and a reader has more to go on than
a bag of words:
- a note is about one of 31 presenting problems, most written about by two or three services (heart failure:
  cardiology or nephrology; back pain: orthopedics, neurology or oncology). The service shows in its habits in the
  plan (daily weights, neuro checks, renally dosed meds; half of them shared by two services; half the plans also
  carry one of another service's) and in which findings co-occur;
- every note lists comorbidities, home medicines and denied symptoms of any specialty ("Denies CP, SOB & N/V"):
  that a word is there says little, whether it is reported or denied says more;
- labs and vitals: a basic panel whose names are no clue; the problem and the service's patients move values out
  of range (Cr 4.2 for nephrology, WBC 1.8 for oncology), mostly as decimals a word tokenizer drops;
- shorthand: each concept is written abbreviated or expanded (SOB / shortness of breath, Lasix / furosemide,
  TKA / total knee arthroplasty) by the note's writer (terse, dictated or mixed), and mixed writers define some
  on first use ("atrial fibrillation (AFib)"): pairs an encoder can learn from the unlabelled text. Some letters
  mean different things by context (HD: hemodialysis / hospital day; PD, MS, RA, PT, Ca);
- a note never names its own service; it may name another ("appreciate cards recs").
note_type is easy (a word gives it): it is the metadata for the geometry report, not a task.
Fields: id, text, note_type, specialty, group (patient id), split (train/test by patient).

The vocabulary (concepts, labs, problems, each service's habits; what each table means is its "about" entry) is
data, `synthetic_vocab.json` beside this module; this module is the generator.

  python -m jaxemb.data.synthetic OUT.jsonl.gz [--notes 3000] [--seed 0]
"""

import argparse
import dataclasses
import gzip
import hashlib
import importlib.resources
import json
import os
import random
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jaxemb.data import default_cache_dir
from jaxemb.data.splits import TEST_FRACTION  # the generated corpus's own test share: the scheme's

# The cache key of `quickstart_corpus_path`: bump on any change to the generated text.
GENERATOR_VERSION = 3


def _tuples(x):
  """JSON lists as tuples (the tables are constants), dicts kept."""
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  return x


_VOCAB = _tuples(json.loads(importlib.resources.files(__package__).joinpath("synthetic_vocab.json").read_text(
    encoding="utf-8")))

# The labels (field `specialty`): the service that wrote the note.
SPECIALTIES: tuple[str, ...] = _VOCAB["specialties"]
# key -> (abbreviations, expansions); the JSON groups them by kind (symptoms, conditions, ...).
CONCEPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
  k: v for kind in _VOCAB["concepts"].values() for k, v in kind.items()}
# key -> (abbreviations, expansions, normal low, normal high, decimals).
LABS: dict[str, tuple[tuple[str, ...], tuple[str, ...], float, float, int]] = _VOCAB["labs"]
_PANEL: tuple[str, ...] = _VOCAB["panel"]
# service -> {lab: (low, high)} its patients tend to have, whatever brought them in.
SIGNATURE_LABS: dict[str, dict[str, tuple[float, float]]] = _VOCAB["signature_labs"]
_SIGNATURE_RATE = 0.6  # share of notes whose labs carry the service's signature values


@dataclasses.dataclass(frozen=True)
class Problem:
  """One presenting problem: what the note reports positive or out of range, and what is done about it.

  `owners` weighs the specialties that write notes about it: most problems belong to two or three, so the
  problem alone does not give the label; the service's own plan lines (`APPROACH`) and the details do.
  `tests` and `plan` are templates: `<key>` is a concept or a lab's name, `<a-b>` a random integer in [a, b].
  `labs` and `vitals` map a name to its (low, high) range in this problem.
  """
  owners: dict[str, float]
  dx: tuple[str, ...]
  sx: tuple[str, ...]
  exam: dict[str, tuple[str, ...]]
  labs: dict[str, tuple[float, float]]
  tests: tuple[str, ...]
  plan: tuple[str, ...]
  vitals: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


PROBLEMS: tuple[Problem, ...] = tuple(Problem(**p) for p in _VOCAB["problems"])
# (plan line, services whose habit it is).
APPROACH: tuple[tuple[str, tuple[str, ...]], ...] = _VOCAB["approach"]
# (comorbidity concept, the home medicine that goes with it; "" = none).
COMORBID: tuple[tuple[str, str], ...] = _VOCAB["comorbid"]
_SYMPTOMS: tuple[str, ...] = _VOCAB["symptoms"]
_NORMAL_EXAM: dict[str, tuple[str, ...]] = _VOCAB["normal_exam"]
_GENERIC: tuple[str, ...] = _VOCAB["generic"]
# service -> procedures it writes a procedure note for.
PROCEDURES: dict[str, tuple[str, ...]] = _VOCAB["procedures"]

# Difficulty knobs: how evenly a service's notes spread over problems it shares with other services (1 = as
# weighted in PROBLEMS, 0 = uniformly), and how often a plan carries a line of another service's habits.
_OWNER_FLATTEN = 0.3
_CROSS_COVER_RATE = 0.5

NOTE_TYPES = ("progress_note", "consult", "discharge_summary", "clinic_note", "procedure_note")
_NOTE_WEIGHTS = (0.35, 0.2, 0.15, 0.2, 0.1)

_TOKEN = re.compile(r"<([a-z_0-9]+)>|<(\d+)-(\d+)>")


class _Writer:
  """Renders `<key>` templates in one note's style: its abbreviation rate, its habit of defining terms."""

  def __init__(self, rng: random.Random):
    self.rng = rng
    # Terse, dictated and mixed writers: the same concept is written both ways across the corpus.
    self.abbr_rate = rng.choice([0.9, 0.9, 0.5, 0.15])
    self.define_rate = 0.0 if self.abbr_rate > 0.8 else 0.35
    self.seen: set[str] = set()

  def concept(self, key: str) -> str:
    abbrs, exps = CONCEPTS[key] if key in CONCEPTS else LABS[key][:2]
    first = key not in self.seen
    self.seen.add(key)
    if not abbrs or (exps and self.rng.random() >= self.abbr_rate):
      exp = self.rng.choice(exps)
      # "atrial fibrillation (AF)": the definitions that tie the two forms together in unlabelled text.
      abbr = abbrs[exps.index(exp) % len(abbrs)] if abbrs else exp
      if abbr != exp and first and self.rng.random() < self.define_rate:
        return f"{exp} ({abbr})"
      return exp
    return abbrs[self.rng.randrange(len(abbrs))]

  def render(self, template: str) -> str:
    def sub(m: re.Match) -> str:
      if m.group(1):
        return self.concept(m.group(1))
      return str(self.rng.randint(int(m.group(2)), int(m.group(3))))
    return _TOKEN.sub(sub, template)

  def join(self, items: list[str]) -> str:
    if len(items) <= 1:
      return "".join(items)
    return ", ".join(items[:-1]) + self.rng.choice([" and ", ", ", " & "]) + items[-1]


def _value(lab: str, lo: float, hi: float, rng: random.Random) -> str:
  v = rng.uniform(lo, hi)
  decimals = LABS[lab][4]
  return f"{v:.{decimals}f}" if decimals else str(int(round(v)))


def _vitals(problem: Problem, w: _Writer) -> str:
  rng = w.rng
  ranges = {"t": (36.4, 37.3), "hr": (62, 96), "bp": (112, 146), "rr": (14, 19), "spo2": (94, 99)}
  ranges.update(problem.vitals)
  t = rng.uniform(*ranges["t"])
  hr, sbp, rr, spo2 = (rng.randint(*map(int, ranges[k])) for k in ("hr", "bp", "rr", "spo2"))
  on = rng.choice(["RA", "RA", "2L NC"]) if spo2 >= 90 else rng.choice(["RA", "3L NC", "4L NC"])
  return (f"{rng.choice(['VS', 'Vitals'])}: T {t:.1f} HR {hr} BP {sbp}/{rng.randint(60, 95)} RR {rr} "
          f"SpO2 {spo2}% {on}.")


def _labs(problem: Problem, specialty: str, w: _Writer) -> str:
  rng = w.rng
  names = rng.sample(_PANEL, rng.randint(2, 4))
  ranges = {}
  if rng.random() < _SIGNATURE_RATE:
    ranges.update(SIGNATURE_LABS[specialty])
    names += [n for n in ranges if n not in names]
  ranges.update(problem.labs)
  # The problem's labs are out of range; a few others are reported in range (a named lab is no clue).
  names += [n for n in problem.labs if n not in names and rng.random() < 0.8]
  extra = [n for n in LABS if n not in names and n not in _PANEL]
  names += rng.sample(extra, rng.randint(0, 1))
  parts = []
  for n in names:
    lo, hi = ranges.get(n, LABS[n][2:4])
    unit = "%" if n in ("ef", "a1c") else ""
    parts.append(f"{w.concept(n)} {_value(n, lo, hi, rng)}{unit}")
  return rng.choice(["Labs: ", "Labs notable for ", "BMP/CBC: ", ""]) + ", ".join(parts) + "."


def _exam(problem: Problem, w: _Writer) -> str:
  rng = w.rng
  systems = rng.sample(list(_NORMAL_EXAM), rng.randint(2, 4))
  systems += [s for s in problem.exam if s not in systems]
  out = []
  for s in [s for s in _NORMAL_EXAM if s in systems]:
    pool = problem.exam.get(s) if rng.random() < 0.85 else None
    out.append(f"{s}: {w.render(rng.choice(pool or _NORMAL_EXAM[s]))}")
  return ". ".join(out) + "."


class _Patient:
  def __init__(self, rng: random.Random, specialty: str):
    self.specialty = specialty
    self.age = rng.randint(24, 91)
    self.sex = rng.choice(["M", "F"])
    self.comorbid = rng.sample(COMORBID, rng.randint(1, 4))


def _pmh(p: _Patient, w: _Writer) -> str:
  return w.join([w.concept(c) for c, _ in p.comorbid])


def _hpi(p: _Patient, prob: Problem, w: _Writer) -> str:
  rng = w.rng
  pos = rng.sample(prob.sx, min(len(prob.sx), rng.randint(1, 3)))
  if rng.random() < 0.3:  # an unrelated complaint: symptoms are shared between problems anyway
    pos.append(rng.choice([s for s in _SYMPTOMS if s not in pos]))
  neg = rng.sample([s for s in _SYMPTOMS if s not in pos], rng.randint(2, 4))
  sex = p.sex if w.abbr_rate > 0.5 else {"M": "man", "F": "woman"}[p.sex]
  who = f"{p.age}{rng.choice(['yo ', ' y/o ', '-year-old '])}{sex}"
  verb = rng.choice(["c/o", "presents with", "reports", "is here with", "endorses"])
  days = rng.choice([f"x{rng.randint(2, 10)}d", f"for {rng.randint(2, 14)} days", "since yesterday", "x1 wk"])
  neg_lead = rng.choice(["Denies", "ROS neg for", "No", "Pt denies"])
  return (f"{who} w/ PMH of {_pmh(p, w)} who {verb} {w.join([w.concept(s) for s in pos])} {days}. "
          f"{neg_lead} {w.join([w.concept(s) for s in neg])}.")


def _plan(specialty: str, prob: Problem, p: _Patient, w: _Writer, numbered: bool) -> list[str]:
  rng = w.rng
  lines = [w.render(x) for x in rng.sample(prob.plan, rng.randint(1, 2))]
  own = [a for a, owners in APPROACH if specialty in owners]
  lines += [w.render(x) for x in rng.sample(own, rng.randint(0, 2))]
  if rng.random() < _CROSS_COVER_RATE:  # hospital plans mix services' habits: a line of another service's
    lines.append(w.render(rng.choice([a for a, owners in APPROACH if specialty not in owners])))
  if rng.random() < 0.45:  # names another service, never the writer's own
    others = [s for s in prob.owners if s != specialty] or [s for s in SPECIALTIES if s != specialty]
    svc = w.concept("svc_" + rng.choice(others))
    lines.append(rng.choice([f"appreciate {svc} recs", f"{svc} following", f"d/w {svc}", f"will consult {svc}"]))
  rng.shuffle(lines)
  c, med = rng.choice(p.comorbid)
  lines.append(f"{w.concept(c)}: " + (f"cont home {w.render(med)}" if med else "outpatient f/u"))
  if numbered:
    return [f"{i + 1}) {x}" for i, x in enumerate(lines)]
  return lines


def _note(note_type: str, specialty: str, p: _Patient, prob: Problem, rng: random.Random) -> str:
  w = _Writer(rng)
  headings = rng.random() < 0.75
  dx = w.concept(rng.choice(prob.dx))
  tests = [w.render(t) for t in rng.sample(prob.tests, rng.randint(1, 2))]
  sections: list[tuple[str, str]] = []
  if note_type == "progress_note":
    sections += [("S", rng.choice(["No acute events overnight. ", "Interval: ", ""]) + _hpi(p, prob, w)),
                 ("O", f"{_vitals(prob, w)} Exam: {_exam(prob, w)} {_labs(prob, specialty, w)}"),
                 ("A/P", f"{dx}. " + "; ".join(_plan(specialty, prob, p, w, False)) + ".")]
  elif note_type == "consult":
    asker = w.concept("svc_" + rng.choice([s for s in SPECIALTIES if s != specialty])) if rng.random() < 0.5 else \
      rng.choice(["primary team", "hospitalist", "ED", "PCP"])
    sections += [("Reason for consult", f"{rng.choice([dx, w.concept(rng.choice(prob.sx))])}, requested by {asker}"),
                 ("HPI", _hpi(p, prob, w)), ("Exam", _exam(prob, w)),
                 ("Data", f"{_labs(prob, specialty, w)} {'. '.join(tests)}."),
                 ("Recs", "; ".join(_plan(specialty, prob, p, w, True)) + ".")]
  elif note_type == "discharge_summary":
    course = rng.choice(["Admitted with", "Pt admitted for", "Presented with"])
    sections += [("Admission dx", dx), ("HPI", _hpi(p, prob, w)),
                 ("Hospital course", f"{course} {dx}. {'. '.join(tests)}. {_labs(prob, specialty, w)} "
                  f"Managed with: {w.render(rng.choice(prob.plan))}."),
                 ("Discharge plan", "; ".join(_plan(specialty, prob, p, w, False)) + "."),
                 ("F/u", f"clinic in {rng.randint(1, 4)} weeks, labs in {rng.randint(3, 10)} days.")]
  elif note_type == "clinic_note":
    sections += [("CC", f"f/u {dx}"), ("HPI", _hpi(p, prob, w)),
                 ("Meds", w.join([w.render(m) for _, m in p.comorbid if m]) or "none"),
                 ("Exam", f"{_vitals(prob, w)} {_exam(prob, w)}"),
                 ("A/P", f"{dx}, {rng.choice(['stable', 'improving', 'not at goal', 'worse'])}. {tests[0]}. "
                  + "; ".join(_plan(specialty, prob, p, w, False)) + f". RTC {rng.randint(1, 6)} months.")]
  else:
    proc = w.concept(rng.choice(PROCEDURES[specialty]))
    sections += [("Procedure", proc), ("Indication", f"{dx}; {w.concept(rng.choice(prob.sx))}"),
                 ("Pre-procedure", f"{_vitals(prob, w)} {_labs(prob, specialty, w)}"),
                 ("Description", rng.choice(["Consent obtained, time-out performed. ", "Informed consent signed. "])
                  + f"{proc} performed under sterile conditions without complication. "
                  + f"EBL {rng.choice(['minimal', '<5-50> mL'])}.".replace("<5-50>", str(rng.randint(5, 50)))),
                 ("Findings", ". ".join(tests) + "."),
                 ("Plan", "; ".join(_plan(specialty, prob, p, w, False)) + ".")]
  if rng.random() < 0.3:
    sections.append(("", w.render(rng.choice(_GENERIC))))
  if headings:
    return "\n".join(f"{h}: {b}" if h else b for h, b in sections)
  return " ".join(b for _, b in sections)


def generate(n_notes: int = 3000, seed: int = 0, test_fraction: float = TEST_FRACTION) -> Iterator[dict]:
  """Yields the records (dicts with id, text, note_type, specialty, group, split), deterministically."""
  rng = random.Random(seed)
  n_patients = max(1, n_notes // 3)
  # A patient mostly sees one service (notes of a patient are correlated: splits must be group-aware).
  # Home services dealt in turn: the classes stay balanced however few notes are asked for.
  patients = [_Patient(rng, SPECIALTIES[i % len(SPECIALTIES)]) for i in range(n_patients)]
  by_owner = {s: [(prob, prob.owners[s]) for prob in PROBLEMS if s in prob.owners] for s in SPECIALTIES}
  for i in range(n_notes):
    patient = rng.randrange(n_patients)
    p = patients[patient]
    specialty = p.specialty if rng.random() < 0.8 else rng.choice(SPECIALTIES)
    probs, weights = zip(*by_owner[specialty])
    weights = [x**_OWNER_FLATTEN for x in weights]
    prob = rng.choices(probs, weights=weights)[0]
    note_type = rng.choices(NOTE_TYPES, weights=_NOTE_WEIGHTS)[0]
    group = f"patient-{patient:04d}"
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest(), "little") / 2.0**64
    yield {"id": f"syn-{i:05d}", "text": _note(note_type, specialty, p, prob, rng), "note_type": note_type,
           "specialty": specialty, "group": group, "split": "test" if h < test_fraction else "train"}


def write_corpus(path: str | Path, n_notes: int = 3000, seed: int = 0) -> Path:
  """Writes the corpus as gzip JSONL, atomically (tmp file + os.replace), byte-identical for the same args."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as raw:
      # mtime=0 and no file name in the header: same bytes every time, so the prepared-data cache key is stable.
      with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        for record in generate(n_notes, seed):
          f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return path


# Fields of the quick-start corpus for `corpus.Fields(**QUICKSTART_FIELDS)`.
QUICKSTART_FIELDS = {"text": "text", "label": "specialty", "metadata": "note_type", "group": "group",
                     "split": "split", "id": "id"}


def quickstart_corpus_path(cache_dir: str | Path | None = None, *, n_notes: int = 3000, seed: int = 0) -> Path:
  """The quick-start corpus, generated on first use into `cache_dir/synthetic/` (default: `default_cache_dir()`)."""
  if cache_dir is None:
    cache_dir = default_cache_dir()
  path = Path(cache_dir) / "synthetic" / f"quickstart-v{GENERATOR_VERSION}-n{n_notes}-seed{seed}.jsonl.gz"
  if not path.exists():
    write_corpus(path, n_notes, seed)
  return path


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxemb.data.synthetic", description=__doc__.split("\n\n")[0])
  parser.add_argument("out", help="output .jsonl.gz path")
  parser.add_argument("--notes", type=int, default=3000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  path = write_corpus(args.out, args.notes, args.seed)
  print(f"wrote {args.notes} notes to {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
