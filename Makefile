# Two commands do all set-up: `make demo` and `make test`. Both create .venv when missing.
# pip (not uv/poetry) is used on purpose: it finds the local CPU build of torch==2.13.0.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install dev lint bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/goldmine quickstart

test: $(VENV)/.installed-dev
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-dev
	$(PY) bench/pretrain_step.py
	$(PY) bench/shakespeare_char.py --data ../shared/datasets/tiny-shakespeare/input.txt
	$(PY) bench/data_prepare.py

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) runs build *.egg-info
