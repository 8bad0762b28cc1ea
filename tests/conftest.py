from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "scenarios")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Tests Ctrl-C the heapwatch commands they start. A suite started in the background by a
# non-interactive shell inherits SIGINT ignored and passes it on to every child (Python
# then installs no handler, and a test's Ctrl-C is lost: the test waits for an exit that
# never comes). A signal this process catches is back at its default in an exec'd child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: leave it
        pass



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
