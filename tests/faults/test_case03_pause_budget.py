"""Case 3: a tracing window never opens when its estimated snapshot pause exceeds the
budget (250 ms), and a traced snapshot whose traces would push it past the budget ends
the window instead of reading them. The estimate is learned from the run's own
snapshots. The figures at 1M/2M/3M objects: bench/trace_window.py.
"""

from __future__ import annotations

import os
import tracemalloc
from typing import Any

from heapwatch.agent.pausebudget import PauseModel
from heapwatch.agent.sampler import Agent, AgentConfig
from heapwatch.store import open_run

GROWING: list[Any] = []


def test_case03_the_estimate_scales_with_objects_and_learns_the_traced_cost() -> None:
    m = PauseModel(budget_s=0.25, factor=10.0)
    m.observe(False, objects=100_000, census_s=0.030, total_s=0.040)
    # untraced census 0.3 µs/object, times the prior factor 10, plus 10 ms of the rest
    assert abs(m.traced_snapshot(100_000, 0) - 0.310) < 1e-9
    assert m.window_fits(50_000, 0)[0] and not m.window_fits(1_000_000, 0)[0]
    m.observe(True, objects=100_000, census_s=0.100, total_s=0.160, blocks=10_000,
              sites_s=0.050, tracer_bytes=500_000)
    # traced census learned: 1 µs/object (factor ~3.3, not 10); traces 5 µs/block
    assert abs(m.census(100_000) - 0.100) < 1e-9
    assert m.blocks_in(1_000_000) == 20_000
    assert m.traces_fit(0.100, 1_000_000) == (True, 0.1)
    assert m.traces_fit(0.200, 1_000_000)[0] is False


def grow(tmp_path: Any, budget_s: float) -> None:
    """A growing list of objects, which wants a tracing window, and 12 snapshots."""
    agent = Agent(AgentConfig(store=os.path.join(str(tmp_path), "run.sqlite"), interval=3600.0,
                              trace="auto", floor=10, trace_pause_budget_s=budget_s))
    agent.start()
    try:
        for _ in range(12):
            GROWING.extend(object() for _ in range(60))
            agent.snapshot()
    finally:
        agent.stop()
        GROWING.clear()


def test_case03_no_window_opens_past_the_budget(tmp_path: Any) -> None:
    grow(tmp_path, 1e-6)
    assert not tracemalloc.is_tracing()
    run = open_run(str(tmp_path))
    assert not any(s.traced for s in run.snapshots)
    said = [m for _, _, kind, m in run.events if kind == "trace"]
    assert len(said) == 1 and said[0].startswith("no tracing window: a traced snapshot would "
                                                 "pause the target ~"), said


def test_case03_the_same_run_opens_a_window_within_the_budget(tmp_path: Any) -> None:
    """The check above can fail: with room in the budget the window opens."""
    grow(tmp_path, 60.0)
    assert any(s.traced for s in open_run(str(tmp_path)).snapshots)


class _TracesNeverFit(PauseModel):
    def window_fits(self, objects: int, blocks: int) -> tuple[bool, float]:
        return True, 0.0

    def traces_fit(self, elapsed_s: float, tracer_bytes: int) -> tuple[bool, float]:
        return False, 1.0


def test_case03_a_traced_snapshot_that_would_overrun_ends_the_window(tmp_path: Any) -> None:
    agent = Agent(AgentConfig(store=os.path.join(str(tmp_path), "run.sqlite"), interval=3600.0,
                              trace="auto", floor=10, trace_window=3))
    agent._pause = _TracesNeverFit()
    agent.start()
    try:
        for _ in range(10):
            GROWING.extend(object() for _ in range(60))
            agent.snapshot()
            if any(s.traced for s in open_run(str(tmp_path)).snapshots):
                break
        assert not tracemalloc.is_tracing()  # closed after one traced snapshot, not three
    finally:
        agent.stop()
        GROWING.clear()
    run = open_run(str(tmp_path))
    traced = [s for s in run.snapshots if s.traced]
    assert len(traced) == 1 and traced[0].sites == {}  # its traces were not read
    assert any(m.startswith("tracing window closed early") for _, _, _, m in run.events)
