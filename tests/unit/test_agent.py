"""The agent inside a process: it keeps nothing alive, and its failures stay inside it."""

from __future__ import annotations

import gc
import os
import time
import weakref
from typing import Any

import pytest

from heapwatch.agent import census, core
from heapwatch.agent.sampler import Agent, AgentConfig
from heapwatch.errors import AgentError
from heapwatch.store import open_run


class Payload:
    pass


HOLDER: dict[str, Any] = {}


def make_agent(tmp_path: Any, **kw: Any) -> Agent:
    kw.setdefault("interval", 3600.0)
    kw.setdefault("trace", "off")
    return Agent(AgentConfig(store=os.path.join(str(tmp_path), "run.sqlite"), floor=10, **kw))


def test_dropped_objects_are_collected_while_the_agent_runs(tmp_path: Any) -> None:
    agent = make_agent(tmp_path, trace="on")
    agent.start()
    try:
        items = [Payload() for _ in range(50)]
        HOLDER["items"] = items
        refs = [weakref.ref(p) for p in items]
        del items
        for _ in range(6):  # census, path walk and item sampling all see the container
            agent.snapshot()
        HOLDER.clear()
        gc.collect()
        assert all(r() is None for r in refs), "the agent kept target objects alive"
        run = open_run(str(tmp_path))
        assert any(c.path and c.path.endswith("HOLDER['items']") for s in run.snapshots
                   for c in s.containers), "the container was never seen, so the test proves nothing"
    finally:
        agent.stop()


def test_a_failing_collector_is_recorded_not_raised(tmp_path: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret-value-should-not-be-stored")

    agent = make_agent(tmp_path)
    agent.start()
    try:
        monkeypatch.setattr(core, "census", broken)
        agent.snapshot()  # must not raise
    finally:
        monkeypatch.undo()
        agent.stop()
    run = open_run(str(tmp_path))
    errors = [e for s in run.snapshots for e in s.errors]
    assert any(e.startswith("census: RuntimeError") for e in errors), errors
    assert not any("secret-value" in e for e in errors), "an exception message leaked into the store"
    assert run.snapshots[-1].reason == "stop"


def test_stop_takes_a_final_snapshot_and_closes(tmp_path: Any) -> None:
    agent = make_agent(tmp_path)
    agent.start()
    agent.snapshot()
    agent.stop()
    assert not agent.running
    with pytest.raises(AgentError):
        agent.snapshot()
    run = open_run(str(tmp_path))
    assert [s.reason for s in run.snapshots][-1] == "stop"
    assert run.meta["agent_stopped"]["reason"] == "stop"


def test_control_socket_commands(tmp_path: Any) -> None:
    from heapwatch.launch import send_command

    sock = os.path.join(str(tmp_path), "c.sock")
    agent = make_agent(tmp_path, control=sock)
    agent.start()
    assert send_command(sock, "ping").startswith(f"ok {os.getpid()}")
    assert send_command(sock, "mark load") == "ok"
    assert send_command(sock, "bogus") == "error unknown command"
    assert send_command(sock, "stop").startswith("ok stopped")
    deadline = time.monotonic() + 10
    while agent._thread is not None and agent._thread.is_alive() and time.monotonic() < deadline:
        agent._thread.join(0.1)
    assert not agent.running
    run = open_run(str(tmp_path))
    assert [m.phase for m in run.marks] == ["load"]
    assert not os.path.exists(sock)


def test_census_counts_types_and_finds_big_containers() -> None:
    big = {i: str(i) for i in range(500)}
    tracked = [[i] for i in range(300)]
    res = census.take_census(200, set())
    assert dict(res.type_counts)[list] >= 300
    ids = {oid for oid, _, _ in res.big}
    assert id(tracked) in ids
    # atomic dicts are not gc-tracked before 3.14: the path walk finds them
    assert (id(big) in ids) == gc.is_tracked(big)


class Row:
    pass


def test_a_growing_container_without_a_path_is_sampled(census_core: str, tmp_path: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Known only by id (no owner path), a growing container is still sampled: the census
    hands it back because the agent asks for it by id once it has been seen twice."""
    from heapwatch.agent import paths

    monkeypatch.setattr(paths, "discover", lambda *a, **k: paths.Found())
    agent = make_agent(tmp_path)
    hidden: list[Row] = [Row() for _ in range(20)]
    agent.start()
    try:
        for _ in range(5):
            hidden.extend(Row() for _ in range(10))
            agent.snapshot()
    finally:
        agent.stop()
    key = f"list@{id(hidden):#x}"
    run = open_run(str(tmp_path))
    sampled = [i for s in run.snapshots for i in s.items if i.key == key]
    assert sampled, "the growing container was never sampled"
    assert all(i.item_type.endswith("Row") for i in sampled)


def test_a_growing_container_on_a_thread_stack_is_sampled_between_walks(
        census_core: str, tmp_path: Any) -> None:
    """Named through a thread's stack (a path that cannot be followed again), it is found
    by id at the snapshots without an owner-path walk: the census hands it back."""
    import threading

    grow, grown, done = threading.Semaphore(0), threading.Semaphore(0), threading.Event()

    def poller() -> None:
        seen: list[Row] = [Row() for _ in range(20)]
        while not done.is_set():
            if grow.acquire(timeout=0.05):
                seen.extend(Row() for _ in range(10))
                grown.release()
        seen.clear()

    thread = threading.Thread(target=poller, name="poller", daemon=True)
    thread.start()
    agent = make_agent(tmp_path)
    agent.start()  # snapshots 1-3 walk the owner paths, 4 and 5 do not
    try:
        for _ in range(6):
            grow.release()
            assert grown.acquire(timeout=10)
            agent.snapshot()
    finally:
        agent.stop()
        done.set()
        thread.join(10)
    run = open_run(str(tmp_path))
    between = {s.seq for s in run.snapshots for i in s.items if i.key.startswith("<thread poller>")
               and s.seq in (4, 5)}
    assert between, "the thread's container was not sampled when no walk ran"


def test_the_agent_thread_restarted_after_a_fork_is_still_the_agents(tmp_path: Any) -> None:
    """A fork pauses the agent's thread and the parent starts a new one: its files and CPU
    time must stay the agent's, not count as the target's."""
    from heapwatch.agent import process

    agent = make_agent(tmp_path, interval=0.05)
    agent.start()
    try:
        first = agent._thread
        assert first is not None
        agent.snapshot()
        agent.before_fork()  # what os.fork() runs first; no fork needed to test the parent
        agent.after_fork_in_parent()
        second = agent._thread
        assert second is not None and second is not first
        deadline = time.monotonic() + 30
        while second.ident not in process._WATCH.ignore_threads:
            assert time.monotonic() < deadline, "the new agent thread never registered"
            time.sleep(0.01)
        assert first.ident in process._WATCH.ignore_threads
        assert process._WATCH.agent_cpu_base > 0  # the first thread's CPU time stays ours
    finally:
        agent.stop()
