from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "scenarios")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))



@pytest.fixture(params=["native", "python"])
def census_core(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per census core (STYLE.md 16); the native run is skipped, saying
    why, where the extension is not built or is turned off (HEAPWATCH_NO_NATIVE=1)."""
    from heapwatch.agent import core
    from heapwatch.errors import AgentError

    try:
        core.use(request.param)
    except AgentError as exc:
        pytest.skip(str(exc))
    try:
        yield request.param
    finally:
        core.use(None)
