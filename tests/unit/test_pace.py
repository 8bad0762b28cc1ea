"""The agent's long walk leaves the GIL to the target between short slices (pace.py)."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import types
from typing import Any

import pytest

from heapwatch.agent import pace, paths
from heapwatch.agent.sampler import Agent, AgentConfig
from heapwatch.store import open_run


def test_a_pacer_naps_only_once_its_slice_is_used() -> None:
    never = pace.Pacer(slice_s=3600.0)
    for _ in range(1000):
        never.step()
    assert never.naps == 0
    always = pace.Pacer(slice_s=0.0, nap_s=1e-4)
    for _ in range(5):
        always.step()
    assert always.naps == 5
    off = pace.Pacer(slice_s=0.0, nap_s=0.0)
    off.step()
    assert off.naps == 0
    calls: list[bool] = []
    told = pace.Pacer(slice_s=0.0, nap_s=1e-4)
    told.around = calls.append  # the snapshot's unsampled window lets go during a nap
    told.step()
    assert calls == [True, False]


@pytest.fixture
def big_module() -> Any:
    """A module whose walk takes a while: 40 x 40 x 40 small lists under one global (the
    walk reads at most 64 children of a container)."""
    mod = types.ModuleType("hw_pace_big")
    mod.ROWS = [[[[i] for i in range(40)] for _ in range(40)]  # type: ignore[attr-defined]
                for _ in range(40)]
    mod.TABLE = {f"k{i}": [i] for i in range(200)}  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    try:
        yield mod
    finally:
        del sys.modules[mod.__name__]


def _other_thread_ran_during_walk(pacer: pace.Pacer | None) -> bool:
    """A thread woken as the walk starts: did it get the GIL before the walk ended? Once
    this thread holds the GIL and has set ``walking``, the other thread can only run when
    this one lets the GIL go; with a switch interval of 30 s, only the walk itself can. gc
    is off meanwhile: a collection may run a finalizer that lets the GIL go."""
    paths.discover(100, 30.0, 1_000_000)  # a first walk imports the native core: files read
    walking = [False]
    seen: list[bool] = []
    go = threading.Event()

    def other() -> None:
        go.wait()
        seen.append(walking[0])

    old = sys.getswitchinterval()
    t = threading.Thread(target=other)
    sys.setswitchinterval(30.0)
    gc.disable()
    try:
        t.start()
        walking[0] = True
        go.set()  # the other thread now waits for the GIL
        found = paths.discover(100, 30.0, 1_000_000, pacer=pacer)
        walking[0] = False
    finally:
        gc.enable()
        sys.setswitchinterval(old)
        t.join()
    assert found.complete and found.nodes > 60_000, "the walk did not reach the big module"
    return seen[0]


def test_a_paced_walk_lets_a_waiting_thread_run(big_module: Any) -> None:
    # the control: unpaced, the walk never lets the GIL go, so the test can fail
    assert not _other_thread_ran_during_walk(None)
    assert _other_thread_ran_during_walk(pace.Pacer(slice_s=0.0005, nap_s=0.0005))


def test_a_paced_walk_finds_what_an_unpaced_one_finds(big_module: Any) -> None:
    plain = paths.discover(30, 30.0, 1_000_000)
    pacer = pace.Pacer(slice_s=0.0, nap_s=1e-5)  # a nap every 64 nodes
    paced = paths.discover(30, 30.0, 1_000_000, pacer=pacer)
    assert pacer.naps >= plain.nodes // 64 - 1
    assert paced.paths == plain.paths
    assert "hw_pace_big.ROWS" in paced.paths.values()


def test_only_the_agents_own_thread_paces_its_walk(tmp_path: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pacers: list[tuple[str, pace.Pacer | None]] = []
    real = paths.discover

    def spy(*args: Any, **kwargs: Any) -> paths.Found:
        pacers.append((threading.current_thread().name, kwargs.get("pacer")))
        return real(*args, **kwargs)

    monkeypatch.setattr(paths, "discover", spy)
    agent = Agent(AgentConfig(store=os.path.join(str(tmp_path), "run.sqlite"), floor=10,
                              interval=3600.0, trace="off"))
    agent.start()  # its first snapshot, on its own thread, walks
    try:
        deadline = time.monotonic() + 30
        while agent.snapshots < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        agent.snapshot()  # the second walks too (the first two do), on this thread
    finally:
        agent.stop()
    mine = [p for name, p in pacers if name == threading.current_thread().name]
    its = [p for name, p in pacers if name == "heapwatch-agent"]
    assert its and all(isinstance(p, pace.Pacer) and p.nap_s > 0 for p in its), pacers
    assert mine and all(p is not None and p.nap_s == 0 for p in mine), pacers  # never naps


def test_naps_are_not_counted_as_the_snapshots_pause(tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot's recorded duration is the pause report.md and the pause budget see; the
    naps leave the GIL to the target, so they are not part of it."""
    made: list[pace.Pacer] = []
    real = pace.Pacer

    def long_naps(nap_s: float = pace.NAP_S) -> pace.Pacer:
        # a nap at each step between phases (where the agent naps at all)
        made.append(real(slice_s=0.0, nap_s=0.3 if nap_s > 0 else 0.0))
        return made[-1]

    monkeypatch.setattr(pace, "Pacer", long_naps)
    monkeypatch.setattr(paths, "discover", lambda *a, **k: paths.Found())  # no walk naps
    agent = Agent(AgentConfig(store=os.path.join(str(tmp_path), "run.sqlite"), floor=10,
                              interval=3600.0, trace="off"))
    agent.start()  # the first snapshot, on the agent's own thread
    try:
        deadline = time.monotonic() + 30
        while agent.snapshots < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        agent.stop()
    first = open_run(str(tmp_path)).snapshots[0]
    assert first.reason == "start" and made, "the start snapshot was not paced"
    napped = made[0].napped_s
    assert made[0].naps >= 3 and napped >= 0.9
    assert 0.0 <= first.duration_s < napped, (first.duration_s, napped)
    assert 0.0 <= agent.pauses[0] < napped
