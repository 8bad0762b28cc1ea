from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def workdir() -> Iterator[str]:
    """A short private directory (Unix socket paths inside it stay < 108 bytes)."""
    path = tempfile.mkdtemp(prefix="hwf-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
