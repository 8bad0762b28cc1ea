"""Case 1: the agent never stops tracemalloc tracing that it did not start.

When the target starts tracing while the agent traces (a window of --trace auto, or
--trace on), tracing becomes the target's: the agent's stop leaves it on and the
target's ``take_snapshot()`` works. The wrappers that notice it are gone once the
agent's tracing ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator

import pytest
from faultkit import SRC, write

from heapwatch.agent.tracing import Tracing

REAL_START, REAL_STOP = tracemalloc.start, tracemalloc.stop


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    assert not tracemalloc.is_tracing()
    t = Tracing()
    try:
        yield t
    finally:
        t.stop()
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        assert (tracemalloc.start, tracemalloc.stop) == (REAL_START, REAL_STOP)


def test_case01_a_target_that_starts_tracing_in_a_window_keeps_it(tracing: Tracing) -> None:
    assert tracing.start(3)
    tracemalloc.start(7)  # the target, inside the agent's window
    tracing.stop()  # the window closes
    assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 7
    tracemalloc.take_snapshot()
    assert (tracemalloc.start, tracemalloc.stop) == (REAL_START, REAL_STOP)
    assert tracing.taken_over == 1


def test_case01_same_depth_is_taken_over_without_losing_traces(tracing: Tracing) -> None:
    assert tracing.start(1)
    keep = [bytearray(64) for _ in range(10)]
    tracemalloc.start()
    tracing.stop()
    assert tracemalloc.get_object_traceback(keep[0]) is not None  # not restarted


def test_case01_a_target_that_stops_tracing_in_a_window_stops_it(tracing: Tracing) -> None:
    assert tracing.start(2)
    tracemalloc.stop()
    assert not tracemalloc.is_tracing() and not tracing.owned
    tracing.stop()  # nothing left to do, nothing raised
    assert (tracemalloc.start, tracemalloc.stop) == (REAL_START, REAL_STOP)


def test_case01_tracing_the_target_started_first_is_never_the_agents(tracing: Tracing) -> None:
    tracemalloc.start(4)
    assert not tracing.start(2) and not tracing.owned
    tracing.stop()
    assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 4


def test_case01_a_wrapper_kept_by_the_target_behaves_like_the_real_one(tracing: Tracing) -> None:
    assert tracing.start(1)
    start, stop = tracemalloc.start, tracemalloc.stop  # `from tracemalloc import start`
    tracing.stop()
    start(2)
    assert tracemalloc.get_traceback_limit() == 2
    stop()
    assert not tracemalloc.is_tracing()


def test_case01_end_to_end_with_trace_on_and_a_target_snapshot_after_stop(workdir: str) -> None:
    script = write(os.path.join(workdir, "t.py"), f"""
        import tracemalloc, heapwatch
        heapwatch.start(out={os.path.join(workdir, "run")!r}, interval=0.05, trace="on")
        tracemalloc.start(5)  # the target's own, while the agent traces
        heapwatch.snapshot()
        heapwatch.stop()
        snap = tracemalloc.take_snapshot()
        print(tracemalloc.is_tracing(), tracemalloc.get_traceback_limit(),
              tracemalloc.start.__module__, len(snap.traces) > 0)
    """)
    env = dict(os.environ, PYTHONPATH=SRC, TMPDIR=workdir)
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "True 5 _tracemalloc True\n"  # the real start, not a wrapper
