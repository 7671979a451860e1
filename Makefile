# The two commands the README promises: `make demo` and `make test`. Both install first, into
# .venv, from nothing: torch and torchvision are pinned in their own pip call *before* the
# package so that no dependency can resolve a different torch build (the pinned one is a CUDA build
# that also runs on CPU; another pip resolution could fetch a different, multi-GB build).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
STAMP   = $(VENV)/.deqa-installed
TORCH   = torch==2.14.1 torchvision==0.29.1
DEMO_IMAGE = deqa/assets/examples/example.jpg

# Everything runs offline: no hub look-ups from transformers/datasets during tests or the demo.
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: install test test-all demo lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[train,baselines,dev]'
	touch $(STAMP)

install: $(STAMP)

# pytest exit code 5 = "no tests collected": not a failure of the code under test.
test: install
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

test-all: install
	$(PY) -m pytest -q -m ''

demo: install
	$(VENV)/bin/deqa-score $(DEMO_IMAGE)

lint: install
	$(PY) -m ruff check deqa tests bench scripts

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
