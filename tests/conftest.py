"""Shared fixtures. The real MNIST files must be in rote's cache: `rote data fetch mnist`."""

from __future__ import annotations

import os

import pytest

from rote.data.sources import load_dataset
from rote.errors import DataError

# a sweep's default --jobs is measured on the machine (rote.experiments.packing); tests never time anything
os.environ.setdefault("ROTE_PACKING", "one")


@pytest.fixture(autouse=True)
def _an_idle_machine(monkeypatch, request):
    """Every test sees an idle machine, so that the one-line oversubscription warning (tested on its own, in
    test_threads.py) does not join the output of tests that count lines while other work shares the cores."""
    if request.module.__name__.endswith("test_threads"):
        return
    import rote.threads

    monkeypatch.setattr(rote.threads, "busy_cores", lambda seconds=None: 0.0)


@pytest.fixture(scope="session")
def mnist():
    try:
        return load_dataset("mnist", allow_download=False, log=lambda s: None)
    except DataError as e:
        pytest.fail(f"real MNIST is needed for this test; run `rote data fetch mnist` first ({e})")
