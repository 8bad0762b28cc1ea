"""Analysis on runs built from literals: what is a finding, what is not, and the order."""

from __future__ import annotations

import math
from typing import Any

from heapwatch.analysis import analyze
from heapwatch.model import ContainerStat, ItemSample, ProcessStat, Snapshot
from heapwatch.report.html import render_html
from heapwatch.report.markdown import render_markdown
from heapwatch.store import RunData

MB = 1024 * 1024


def run_of(n: int, *, containers: Any = None, items: Any = None, rss: Any = None,
           traced: Any = None, fds: Any = None, types: Any = None, tmp: Any = None) -> RunData:
    snaps = []
    for i in range(n):
        conts = tuple(ContainerStat(k, t, int(f(i)), 0, None if "@0x" in k else k)
                      for k, t, f in (containers or []))
        its = tuple(items(i)) if items else ()
        proc = ProcessStat(
            rss=int(rss(i)) if rss else 50 * MB, fds=int(fds(i)) if fds else 8, threads=2,
            children=0, allocated_blocks=100_000, gc_objects=20_000,
            traced_current=int(traced(i)) if traced else None,
            tracemalloc_overhead=0 if traced else None,
            tmp_files=int(tmp(i)) if tmp else 10, sockets=0, gc_garbage=0)
        snaps.append(Snapshot(seq=i + 1, pid=7, t=1000.0 + i, mono=float(i), reason="interval",
                              duration_s=0.01, phase=None, traced=traced is not None,
                              process=proc, types=types(i) if types else {"dict": 500},
                              containers=conts, items=its))
    meta = {"run": {"command": ["python", "app.py"], "cwd": "/srv/app"},
            "agent": {"pid": 7, "trace": "auto", "python": "3.11.7"}}
    return RunData(path="/tmp/x/run.sqlite", meta=meta, snapshots=snaps)


def test_a_growing_dict_is_the_first_finding_with_path_and_site() -> None:
    run = run_of(40, containers=[
        ("app.TRACKER._pending", "dict", lambda i: 200 + 50 * i),
        ("app.CACHE", "dict", lambda i: min(500, 100 + 40 * i)),  # fills then plateaus
    ], items=lambda i: [ItemSample("app.TRACKER._pending", "float", 8, "/srv/app/app.py:38",
                                   None, 24)])
    a = analyze(run)
    assert a.verdict == "leak"
    first = a.findings[0]
    assert (first.kind, first.path, first.site) == ("container", "app.TRACKER._pending",
                                                    "app.py:38")
    assert first.severity == "high"
    assert first.growth.grew_in.startswith("3")  # grew in every interval after warm-up
    assert not any(f.path == "app.CACHE" for f in a.findings)


def test_sawtooth_and_spike_and_drain_are_not_leaks() -> None:
    run = run_of(40, containers=[
        ("app.THROTTLE", "dict", lambda i: 300 + 100 * (i % 8)),
        ("app.BACKLOG", "list", lambda i: 150 + (4000 if 10 <= i <= 22 else 0) + 10 * (i % 2)),
    ])
    a = analyze(run)
    assert a.verdict == "no-leak", [f.title for f in a.findings]


def test_weak_reference_mirrors_rank_below_the_real_holder() -> None:
    run = run_of(40, containers=[
        ("logging._handlerList", "list", lambda i: 200 + 40 * i),
        ("logging.Logger.manager.loggerDict['audit'].handlers", "list", lambda i: 200 + 40 * i),
    ], items=lambda i: [
        ItemSample("logging._handlerList", "weakref.ReferenceType", 8, None, None, 72),
        ItemSample("logging.Logger.manager.loggerDict['audit'].handlers", "app.AuditHandler", 8,
                   "/srv/app/app.py:12", None, 400)])
    a = analyze(run)
    assert a.findings[0].path.endswith(".handlers")
    weak = next(f for f in a.findings if f.path == "logging._handlerList")
    assert weak.severity == "low"


def test_a_librarys_registry_growing_alike_ranks_below_the_users_holder() -> None:
    """Sampled stacks name the user's line for both: the holder in that line's module
    (app.ENGINE...) comes first though the registry's items are bigger."""
    lib = "/venv/lib/python3.11/site-packages/sqlalchemy/event"
    registry, listeners = "sqlalchemy.event.registry._key_to_collection", \
        "app.ENGINE.dispatch.before_execute.listeners"
    run = run_of(40, containers=[
        (registry, "collections.defaultdict", lambda i: 200 + 20 * i),
        (listeners, "collections.deque", lambda i: 200 + 20 * i),
    ], items=lambda i: [
        ItemSample(registry, "dict", 8, f"{lib}/registry.py:125", "/srv/app/app.py:30", 700),
        ItemSample(listeners, "function", 8, f"{lib}/attr.py:157", "/srv/app/app.py:30", 600)])
    a = analyze(run)
    assert [f.path for f in a.findings[:2]] == [listeners, registry]
    assert a.findings[1].site == "app.py:30"  # the registry keeps its site and its finding


def test_a_stdlib_allocation_names_the_users_line() -> None:
    run = run_of(40, containers=[("app.BACKGROUND", "set", lambda i: 200 + 40 * i)],
                 items=lambda i: [ItemSample("app.BACKGROUND", "_asyncio.Task", 8,
                                             "/usr/lib/python3.11/asyncio/base_events.py:436",
                                             "/srv/app/app.py:55", 900)])
    f = analyze(run).findings[0]
    assert f.site == "app.py:55"
    assert f.alloc_site == "/usr/lib/python3.11/asyncio/base_events.py:436"


def test_the_items_own_site_beats_their_containers_storage_however_often_it_stood_in() -> None:
    """A sampled run: the newest items are small and rarely sampled, so most snapshots lend
    the list storage's site (the append) to one unsampled item; a few snapshots see items
    sampled where they were made. The items' own line is the site; the append stays in the
    item list, marked as the storage's."""
    def items(i: int) -> list[ItemSample]:
        if i % 8 == 3:  # evidence in 5 snapshots of 40, 2 items each
            return [ItemSample("app.ERRORS", "ValueError", 2, "/srv/app/validate.py:31", None,
                               900)]
        return [ItemSample("app.ERRORS", "ValueError", 1, "/srv/app/app.py:37", None, 900,
                           evidence="storage")]

    run = run_of(40, containers=[("app.ERRORS", "list", lambda i: 200 + 20 * i)], items=items)
    a = analyze(run)
    f = a.findings[0]
    assert (f.path, f.site) == ("app.ERRORS", "validate.py:31")  # 10 votes against 35
    assert [(i["site"], i["sampled"], i["site_from_storage"]) for i in f.items] == [
        ("validate.py:31", 10, False), ("app.py:37", 35, True)]
    assert "allocated at validate.py:31" in f.evidence
    assert "| `ValueError` | `app.py:37` (where the container grew) | 35 |" in render_markdown(a)
    assert "<code>app.py:37</code> (where the container grew)" in render_html(a)
    # no item ever sampled: the storage's site is the best there is, and says what it is
    run = run_of(40, containers=[("app.ERRORS", "list", lambda i: 200 + 20 * i)],
                 items=lambda i: [ItemSample("app.ERRORS", "int", 1, "/srv/app/app.py:37",
                                             None, 28, evidence="storage")])
    f = analyze(run).findings[0]
    assert f.site == "app.py:37" and f.items[0]["site_from_storage"]
    assert "put there at app.py:37, where the list last grew" in f.evidence


def test_a_free_list_types_own_block_is_weak_evidence_beside_the_storage() -> None:
    """Floats in a dict: while the dict's storage went unsampled, the floats' own blocks
    named lines that freed floats first (free-list reuse). Weak against weak, the counts
    decide: the storage's line, sampled in more snapshots, is the site."""
    def items(i: int) -> list[ItemSample]:
        if i % 3 == 0:
            return [ItemSample("app.PENDING", "float", 6, f"/srv/app/app.py:{46 + i % 2}",
                               None, 24, evidence="recycled")]
        return [ItemSample("app.PENDING", "float", 8, "/srv/app/app.py:38", None, 24,
                           evidence="storage")]

    run = run_of(40, containers=[("app.PENDING", "dict", lambda i: 200 + 50 * i)], items=items)
    f = analyze(run).findings[0]
    assert f.site == "app.py:38"
    assert [(i["site"], i["site_from_storage"]) for i in f.items] == [
        ("app.py:38", True), ("app.py:46", False), ("app.py:47", False)]


def test_an_unnamed_container_is_still_reported() -> None:
    run = run_of(40, containers=[("list@0x7f00", "list", lambda i: 200 + 40 * i)])
    f = analyze(run).findings[0]
    assert f.path == "<unreachable from module globals>" and f.type == "list"


def test_native_growth_when_traced_heap_does_not_explain_rss() -> None:
    run = run_of(40, rss=lambda i: 50 * MB + 2.5 * MB * i, traced=lambda i: 5 * MB + 1000 * i)
    a = analyze(run)
    assert a.findings[0].kind == "native" and a.findings[0].severity in ("high", "medium")
    explained = run_of(40, rss=lambda i: 50 * MB + 2.5 * MB * i,
                       traced=lambda i: 5 * MB + 2.4 * MB * i)
    assert not any(f.kind == "native" for f in analyze(explained).findings)


def test_resources_fds_and_temp_files() -> None:
    a = analyze(run_of(40, fds=lambda i: 10 + 3 * i, tmp=lambda i: 10 + 20 * i))
    kinds = {f.kind for f in a.findings}
    assert {"fds", "files"} <= kinds


def test_too_short_is_inconclusive_not_no_leak() -> None:
    a = analyze(run_of(5))
    assert a.verdict == "inconclusive" and "too few snapshots" in a.verdict_reason


def test_no_agent_is_inconclusive() -> None:
    run = run_of(10)
    run.snapshots = [Snapshot(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                                 "source": "external"}) for s in run.snapshots]
    run.meta.pop("agent")
    a = analyze(run)
    assert a.verdict == "inconclusive" and a.notes and "No Python heap data" in a.notes[0]


def test_confidence_and_growth_are_numbers() -> None:
    run = run_of(40, containers=[("app.X", "list", lambda i: 200 + 40 * i)])
    f = analyze(run).findings[0]
    assert 0.9 <= f.confidence <= 1.0 and math.isclose(f.growth.per_hour, 40 * 3600, rel_tol=0.01)
