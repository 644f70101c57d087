"""Shared fixtures. The real MNIST files must be in rote's cache: `rote data fetch mnist`."""

from __future__ import annotations

import os

import pytest

from rote.data.sources import load_dataset
from rote.errors import DataError

# a sweep's default --jobs is measured on the machine (rote.experiments.packing); tests never time anything
os.environ.setdefault("ROTE_PACKING", "one")


@pytest.fixture(scope="session")
def mnist():
    try:
        return load_dataset("mnist", allow_download=False, log=lambda s: None)
    except DataError as e:
        pytest.fail(f"real MNIST is needed for this test; run `rote data fetch mnist` first ({e})")
