"""A run of several processes, built from literals: judged per process, then across the tree."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest

from heapwatch.analysis import analyze, analyze_run
from heapwatch.analysis.budgets import check, parse_budget
from heapwatch.errors import SchemaError
from heapwatch.model import ContainerStat, ProcessInfo, ProcessStat, Snapshot
from heapwatch.report.json_report import to_dict
from heapwatch.store import Writer, open_run

T0 = 1_000_000.0
MIB = 1024 * 1024


def _snap(pid: int, seq: int, t: float, cache: int, rss: int = 30 * MIB) -> Snapshot:
    conts = (ContainerStat("shop.CACHE", "dict", cache, 0, "shop.CACHE"),) if cache else ()
    return Snapshot(seq=seq, pid=pid, t=t, mono=t, reason="interval", duration_s=0.01,
                    phase=None, traced=False, process=ProcessStat(rss=rss, fds=8, threads=2),
                    types={"dict": 500, "str": 2000}, containers=conts)


def _process(w: Writer, pid: int, how: str, role: str, start: float, end: float, step: float,
             grow: float, ppid: int | None = 1, reason: str = "stop") -> None:
    w.register_process(ProcessInfo(pid=pid, t_start=start, how=how, ppid=ppid, role=role,
                                   program="shop"))
    n = int((end - start) / step)
    for i in range(n + 1):
        t = start + i * step
        w.write_snapshot(_snap(pid, i + 1, t, int(200 + grow * (t - start)),
                               rss=int(30 * MIB + grow * 100 * (t - start))))
    w.end_process(pid, end, reason)


def _recycled(w: Writer, grow: float, last_reason: str = "exit") -> float:
    """A master and 4 workers that replace each other, each living 9 s (too short to judge
    on its own); returns when the next one would start."""
    _process(w, 100, "root", "main", T0, T0 + 40, 1.0, 0)
    start = T0 + 0.5
    for k in range(4):
        _process(w, 110 + k, "fork", "worker", start, start + 9, 0.5, grow, ppid=100,
                 reason="exit" if k < 3 else last_reason)
        start += 9.5
    return start


def _run(tmp_path: Any, build: Any) -> str:
    path = os.path.join(str(tmp_path), "run.sqlite")
    w = Writer(path, meta={"run": {"command": ["gunicorn"], "interval_s": 1.0},
                           "agent": {"pid": 100, "trace": "off"}})
    build(w)
    w.close()
    return str(tmp_path)


def test_a_cache_growing_in_both_workers_is_one_finding_in_2_of_2(tmp_path: Any) -> None:
    def build(w: Writer) -> None:
        _process(w, 100, "root", "main", T0, T0 + 40, 1.0, 0)
        _process(w, 101, "fork", "worker", T0 + 0.5, T0 + 40, 1.0, 30.0, ppid=100)
        _process(w, 102, "fork", "worker", T0 + 0.7, T0 + 40, 1.0, 28.0, ppid=100)

    a = analyze_run(_run(tmp_path, build))
    assert a.verdict == "leak", a.verdict_reason
    first = a.findings[0]
    assert first.path == "shop.CACHE" and "2 of 2 workers" in first.title, first.title
    assert "each" in first.title
    assert [r["role"] for r in a.processes] == ["master", "worker", "worker"]
    assert all(r["judged"] for r in a.processes)
    rep = to_dict(a)
    assert rep["findings"][0]["in_processes"]["pids"] == [101, 102] or \
        sorted(rep["findings"][0]["in_processes"]["pids"]) == [101, 102]
    assert rep["tree"]["judged"] == 3 and rep["run"]["processes"] == 3
    assert rep["findings"][0]["pid"] in (101, 102)


def test_a_short_lived_process_is_summarised_not_judged(tmp_path: Any) -> None:
    def build(w: Writer) -> None:
        _process(w, 100, "root", "main", T0, T0 + 40, 1.0, 0)
        _process(w, 101, "fork", "worker", T0 + 1, T0 + 40, 1.0, 0.0, ppid=100)
        _process(w, 103, "exec", "child", T0 + 5, T0 + 15, 0.5, 80.0, ppid=100, reason="exit")

    a = analyze_run(_run(tmp_path, build))
    assert a.verdict == "no-leak", (a.verdict_reason, [f.title for f in a.findings])
    row = next(r for r in a.processes if r["pid"] == 103)
    assert not row["judged"] and row["verdict"] == "not judged: short-lived"
    assert any("too briefly" in n for n in a.notes)


def test_recycled_workers_are_judged_as_generations(tmp_path: Any) -> None:
    def build(w: Writer) -> None:
        _recycled(w, 40.0, last_reason="stop")

    a = analyze_run(_run(tmp_path, build))
    assert a.verdict == "leak", a.verdict_reason
    first = a.findings[0]
    assert first.path == "shop.CACHE" and "every worker generation" in first.title
    assert "before it is replaced" in first.evidence
    info = a.spread[first.fingerprint]
    assert info["generations"] == 4 and len(info["rss_before_replaced"]) == 3


def test_a_last_generation_cut_by_the_end_of_the_run_does_not_hide_the_leak(tmp_path: Any
                                                                            ) -> None:
    """The run stopped 1 s into the newest worker, after the load: its cache went 200, 256,
    256 (a rise in 1 of 2 intervals). The generations that were replaced still decide."""
    def build(w: Writer) -> None:
        start = _recycled(w, 40.0)
        w.register_process(ProcessInfo(pid=120, t_start=start, how="fork", ppid=100,
                                       role="worker", program="shop"))
        for i, cache in enumerate((200, 256, 256)):
            w.write_snapshot(_snap(120, i + 1, start + 0.5 * i, cache))
        w.end_process(120, start + 1.0, "stop")

    a = analyze_run(_run(tmp_path, build))
    assert a.verdict == "leak", a.verdict_reason
    first = a.findings[0]
    assert first.path == "shop.CACHE" and "every worker generation" in first.title, first.title


def test_steady_recycled_workers_are_not_a_leak(tmp_path: Any) -> None:
    def build(w: Writer) -> None:
        _recycled(w, 0.0)

    a = analyze_run(_run(tmp_path, build))
    assert a.verdict != "leak", [f.title for f in a.findings]


def test_a_run_of_one_process_is_analysed_as_before(tmp_path: Any) -> None:
    def build(w: Writer) -> None:
        _process(w, 100, "root", "main", T0, T0 + 40, 1.0, 30.0)

    path = _run(tmp_path, build)
    a = analyze_run(path)
    b = analyze(open_run(path))
    assert a.verdict == b.verdict == "leak"
    assert [f.title for f in a.findings] == [f.title for f in b.findings]
    assert a.processes == [] and a.tree is None


def test_tree_budgets_sum_the_processes(tmp_path: Any) -> None:
    def build(w: Writer) -> None:
        _process(w, 100, "root", "main", T0, T0 + 40, 1.0, 0)
        _process(w, 101, "fork", "worker", T0 + 0.5, T0 + 40, 1.0, 0.0, ppid=100)
        _process(w, 102, "fork", "worker", T0 + 0.7, T0 + 40, 1.0, 0.0, ppid=100)

    a = analyze_run(_run(tmp_path, build))
    results = {r.scope: r for r in check(a, [parse_budget("rss-max=50MB")])}
    assert results["run"].status == "pass"
    assert results["tree"].status == "fail" and results["tree"].value == 90 * MIB
    assert results["pid 101 (worker)"].status == "pass"


def test_version_1_stores_are_read_and_never_appended_to(tmp_path: Any) -> None:
    def build(w: Writer) -> None:
        for i in range(12):
            w.write_snapshot(_snap(42, i + 1, T0 + i, 200 + 60 * i))

    path = _run(tmp_path, build)
    store = os.path.join(path, "run.sqlite")
    conn = sqlite3.connect(store)
    conn.execute("DROP TABLE processes")
    # and the nullable columns added in version 2 (a version-1 file never had them)
    for table, column in (("snapshots", "cpu_s"), ("container_lens", "bound"),
                          ("item_samples", "inferred"), ("item_samples", "evidence")):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    run = open_run(path)
    assert run.schema == 1 and run.processes == [] and len(run.snapshots) == 12
    assert analyze_run(path).verdict == "leak"
    with pytest.raises(SchemaError, match="older heapwatch"):
        Writer(store)


def test_lifecycle_events(tmp_path: Any) -> None:
    def build(w: Writer) -> None:
        w.register_process(ProcessInfo(pid=7, t_start=T0, how="external", role="child"))
        w.register_process(ProcessInfo(pid=7, t_start=T0 + 1, how="exec", role="worker"))
        w.register_process(ProcessInfo(pid=7, t_start=T0 + 2, how="external", role="child"))
        w.end_process(7, T0 + 5, "exit")
        w.end_process(7, T0 + 6, "exit", exit_code=3)

    run = open_run(_run(tmp_path, build))
    assert len(run.processes) == 1  # the outside view became the agent's row
    p = run.processes[0]
    assert (p.how, p.role, p.t_start, p.t_end, p.exit_code) == ("exec", "worker", T0, T0 + 5, 3)
    kinds = [e[2] for e in run.events]
    assert kinds == ["started", "started", "exited", "exited"]
