"""Issue 12 on literal runs: verdicts that follow the load, bounded caches, grouping,
native only when the heap cannot explain RSS, inconclusive that helps; the owner walk on
dunder globals, ABC caches and bounds; temp files of the target only."""

from __future__ import annotations

import collections
import functools
import os
import sys
import tempfile
import types
from dataclasses import replace
from typing import Any

from heapwatch.agent import paths, process
from heapwatch.analysis import analyze
from heapwatch.durations import default_interval
from heapwatch.model import ContainerStat, ItemSample, Mark, ProcessStat, Snapshot
from heapwatch.store import RunData

MB = 1024 * 1024


def run_of(n: int, containers: Any = (), cpu: Any = None, rss: Any = None, items: Any = None,
           types_: Any = None, marks: Any = ()) -> RunData:
    snaps = []
    for i in range(n):
        conts = tuple(ContainerStat(k, t, int(f(i)), 0, None if "@0x" in k else k, b)
                      for k, t, f, b in containers)
        proc = ProcessStat(rss=int(rss(i)) if rss else 50 * MB, fds=8, threads=2, children=0,
                           allocated_blocks=100_000, gc_objects=20_000, tmp_files=3,
                           sockets=0, gc_garbage=0, cpu_s=cpu(i) if cpu else None,
                           gc_collections=(i * 3, 0, 0))
        snaps.append(Snapshot(seq=i + 1, pid=7, t=1000.0 + i / 2, mono=i / 2, reason="interval",
                              duration_s=0.01, phase=None, traced=False, process=proc,
                              types=types_(i) if types_ else {"dict": 500}, containers=conts,
                              items=tuple(items(i)) if items else ()))
    meta = {"run": {"command": ["python", "app.py"], "cwd": "/srv/app"},
            "agent": {"pid": 7, "trace": "auto", "python": "3.11.7"}}
    return RunData(path="/tmp/x/run.sqlite", meta=meta, snapshots=snaps, marks=list(marks))


def busy_then_idle(stop: int) -> Any:
    """CPU seconds: 0.02 s per snapshot while busy (a little jitter), 0.002 once idle."""
    def cpu(i: int) -> float:
        busy = min(i, stop)
        return busy * 0.02 + (i % 3) * 0.001 + max(0, i - stop) * 0.002
    return cpu


def test_load_stops_growth_retained_when_idle_is_a_leak_with_baseline_and_after() -> None:
    run = run_of(40, containers=[("app.TRACKER._pending", "dict",
                                  lambda i: 200 + 40 * min(i, 24), None)],
                 cpu=busy_then_idle(24))
    a = analyze(run)
    assert a.verdict == "leak", a.verdict_reason
    f = a.findings[0]
    assert f.path == "app.TRACKER._pending" and "retained after load" in f.title
    assert f.retained is not None and f.retained["after"] > f.retained["baseline"]
    assert f.as_dict()["retained"]["kept_share"] >= 0.99
    assert any("load stopped" in n for n in a.notes)


def test_load_stops_but_given_back_or_plateau_while_busy_is_not_a_leak() -> None:
    drained = run_of(40, containers=[("app.QUEUE", "list",
                                      lambda i: 200 + 40 * i if i <= 24 else 200, None)],
                     cpu=busy_then_idle(24))
    assert analyze(drained).verdict == "no-leak"
    plateau = run_of(40, containers=[("app.CACHE", "dict", lambda i: 200 + 60 * min(i, 12), None)],
                     cpu=busy_then_idle(24))
    assert analyze(plateau).verdict == "no-leak"
    # the same flat tail without an idle tail stays a plateau: no activity data, no change
    flat = run_of(40, containers=[("app.TRACKER._pending", "dict",
                                   lambda i: 200 + 40 * min(i, 24), None)])
    assert analyze(flat).verdict == "no-leak"


def test_an_after_mark_ends_the_load_too() -> None:
    marks = [Mark(t=1000.0, phase="load", pid=7), Mark(t=1000.0 + 12.5, phase="after", pid=7)]
    run = run_of(40, containers=[("app.SUBS", "list", lambda i: 100 + 30 * min(i, 25), None)],
                 marks=marks)
    a = analyze(run)
    assert a.verdict == "leak" and a.findings[0].retained is not None


def test_bounded_cache_filling_is_low_and_says_so() -> None:
    run = run_of(40, containers=[("app.CACHE._Cache__data", "dict", lambda i: 100 + 60 * i, 4096)],
                 types_=lambda i: {"tuple": 500 + 60 * i})
    a = analyze(run)
    assert a.verdict == "no-leak"
    f = a.findings[0]
    assert f.severity == "low" and "bounded cache filling: 2,440 of 4,096" in f.title
    # beyond its bound it was not a bound: a leak again
    over = run_of(40, containers=[("app.CACHE", "dict", lambda i: 100 + 60 * i, 1000)])
    assert analyze(over).verdict == "leak"


def test_identical_abc_caches_are_one_low_finding() -> None:
    conts = [(f"collections.abc.{n}._abc_impl.<abc cache>", "set", lambda i: 100 + 20 * i, None)
             for n in ("Mapping", "Sequence", "Set", "Iterable")]
    a = analyze(run_of(40, containers=conts))
    assert a.verdict == "no-leak"
    assert len(a.findings) == 1 and a.findings[0].group == 4
    assert "ABC" in a.findings[0].title and a.findings[0].severity == "low"


def test_type_findings_point_at_the_growing_holder() -> None:
    run = run_of(40, containers=[("app.REGISTRY", "dict", lambda i: 100 + 20 * i, None)],
                 items=lambda i: [ItemSample("app.REGISTRY", "list", 8, None, None, 80)],
                 types_=lambda i: {"type": 900 + 20 * i, "dict": 500})
    a = analyze(run)
    t = next(f for f in a.findings if f.kind == "type")
    assert t.path == "app.REGISTRY" and "app.REGISTRY" in t.evidence
    assert "No growing container" not in t.evidence
    assert a.findings[0].kind == "container"


def test_native_only_when_the_heap_cannot_explain_rss_and_never_before_a_holder() -> None:
    # containers retaining ~all of the RSS growth: no native finding
    run = run_of(40, containers=[("app.BLOBS", "list", lambda i: 100 + 10 * i, None)],
                 items=lambda i: [ItemSample("app.BLOBS", "bytes", 8, None, None, 400_000)],
                 rss=lambda i: 50 * MB + 4 * MB * i)
    a = analyze(run)
    assert [f.kind for f in a.findings] == ["container"]
    # unexplained: native, with the explained share in its title
    run = run_of(40, rss=lambda i: 50 * MB + 2 * MB * i)
    a = analyze(run)
    assert a.findings[0].kind == "native" and "explains" in a.findings[0].title


def test_inconclusive_names_growers_and_what_would_settle_it() -> None:
    run = run_of(6, containers=[("app.TRACKER._pending", "dict", lambda i: 200 + 50 * i, None)])
    a = analyze(run)
    assert a.verdict == "inconclusive"
    assert "app.TRACKER._pending 200 → 450 items" in a.verdict_reason
    assert "more snapshots would settle it" in a.verdict_reason


def test_default_interval_gives_at_least_30_snapshots() -> None:
    assert default_interval(None) == 5.0
    for duration in (5.0, 20.0, 45.0, 120.0, 200.0):
        assert duration / default_interval(duration) >= 30 or default_interval(duration) == 0.2


def test_walk_reaches_dunder_globals_abc_caches_and_reads_bounds() -> None:
    mod = types.ModuleType("hw_realcode_fixture")
    mod.__file__ = "/srv/app/hw_realcode_fixture.py"
    mod.__warningregistry__ = {("text", i): True for i in range(60)}  # type: ignore[attr-defined]
    mod.RECENT = collections.deque(range(40), maxlen=64)  # type: ignore[attr-defined]

    class Holder:
        def __init__(self) -> None:
            self._data = {i: i for i in range(50)}
            self._Cache__maxsize = 4096

    mod.CACHE = Holder()  # type: ignore[attr-defined]

    @functools.lru_cache(maxsize=512)
    def quote(i: int) -> int:
        return i

    for i in range(40):
        quote(i)
    mod.quote = quote  # type: ignore[attr-defined]
    abc_kept = [type(f"T{i}", (), {}) for i in range(40)]
    for t in abc_kept:
        isinstance(t(), collections.abc.Hashable)
    sys.modules[mod.__name__] = mod
    try:
        found = paths.discover(32, 10.0, 10**7)
        by_path = {p: oid for oid, p in found.paths.items()}
        want = {"hw_realcode_fixture.__warningregistry__": None,
                "hw_realcode_fixture.RECENT": 64, "hw_realcode_fixture.CACHE._data": 4096,
                "hw_realcode_fixture.quote.<lru_cache>": 512}
        for path, bound in want.items():
            assert path in by_path, sorted(p for p in by_path if "fixture" in p)
            oid = by_path[path]
            assert paths.bound_of(found.objects[oid], found.steps[oid]) == bound
        assert any(p.endswith("Hashable._abc_impl.<abc cache>") for p in by_path)
        found.clear()
    finally:
        del sys.modules[mod.__name__]


def test_temp_files_count_only_what_the_target_made_or_holds(census_core: str,
                                                            tmp_path: Any) -> None:
    # (the pure-Python core counts only what the target holds open: tests/unit/test_temp_files.py)
    made_and_closed = 1 if census_core == "native" else 0
    other = tmp_path / "not-mine"
    process.watch_files()
    try:
        before = process.process_stat().tmp_files
        assert before is not None
        other.write_text("x")  # opened by this test, which is "the target" here...
        os.utime(other)
        made = []
        for _ in range(4):
            with tempfile.NamedTemporaryFile(delete=False) as f:
                made.append(f)
        after = process.process_stat().tmp_files
        assert after is not None and after - before == 5 * made_and_closed
        # ...whereas a file another process made is never counted
        import subprocess

        subprocess.run([sys.executable, "-c", f"open({str(tmp_path / 'theirs')!r}, 'w')"],
                       check=True)
        assert process.process_stat().tmp_files == after
        for f in made:
            os.unlink(f.name)
        assert process.process_stat().tmp_files == after - 4 * made_and_closed
    finally:
        process.stop_watching()


def test_no_retained_key_is_renamed() -> None:
    run = run_of(40, containers=[("app.X", "dict", lambda i: 200 + 40 * i, None)])
    d = analyze(run).findings[0].as_dict()
    assert {"site_note", "retained", "group", "fingerprint", "site", "alloc_site"} <= set(d)
    assert replace(analyze(run).findings[0], group=2).as_dict()["group"] == 2
