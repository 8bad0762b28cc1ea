"""Stage 2 of a leak check: the diagnosis, only when the screen saw something grow."""

from __future__ import annotations

import functools
import tracemalloc
from collections.abc import Callable, Sequence

from heapwatch.agent import paths
from heapwatch.agent.items import sample_items
from heapwatch.agent.naming import main_stem, type_name
from heapwatch.analysis import AnalysisParams, analyze
from heapwatch.analysis.trend import TrendParams
from heapwatch.leakcheck.holders import (
    bounded_caches,
    bounded_lru,
    fallback_site,
    newest_of,
    objects_by_id,
    reach,
    verdicts,
)
from heapwatch.leakcheck.screen import FLOOR, Screen
from heapwatch.model import Finding, ItemSample

TRACE_DEPTH = 10     # frames per traced allocation while diagnosing
TRACED_CALLS = 4     # the last calls of the diagnosis run with tracemalloc on
CONFIRM_CALLS = 4    # first calls of the diagnosis: does a container or a type grow at all?
WALK_BUDGET_S = 0.5  # CPU seconds for one owner walk while diagnosing


def params_for(iterations: int) -> AnalysisParams:
    trend = TrendParams(warmup_fraction=0.0, warmup_max_samples=0, min_samples=8)
    return AnalysisParams(
        trend=trend,
        container_min_growth=max(5.0, 0.2 * iterations), container_min_per_hour=0.0,
        type_min_growth=max(6.0, 0.5 * iterations), type_min_per_hour=0.0,
        site_min_growth=64 * 1024, site_min_per_hour=0.0,
        rss_min_growth=1e18,  # RSS of a test runner is too noisy per iteration
        fds_min_growth=max(3.0, 0.2 * iterations), threads_min_growth=3,
        # The temp directory holds other processes' files, and pytest's own tmp_path
        # directories: not the test's growth.
        files_min_growth=1e18,
    )


def diagnose_growth(screen: Screen, call: Callable[[], None], iterations: int,
              patterns: Sequence[str], froze: bool = True) -> tuple[list[Finding], int]:
    """``iterations`` more calls, watching the containers the owner walk finds, the last
    :data:`TRACED_CALLS` of them with tracemalloc on (tracing slows the calls several
    times; the newest items, whose sites are wanted, come from those calls); then the
    analysis of a run names what grows, who holds it and where its items were allocated.
    The costly explaining (item samples, holders of type findings, bounded caches) is
    done only when the analysis found something. Returns the findings that fail the test
    and the calls run. ``froze``: the check froze the heap (see ``frozen_heap``), not the
    process."""
    found = paths.discover(FLOOR, WALK_BUDGET_S, 1_000_000)
    try:
        screen.watch(found)
        bounded = {found.paths[oid] for oid, st in found.steps.items() if bounded_lru(st)}
    finally:
        found.clear()
    started = False
    since = screen.n
    done = 0
    samples: list[ItemSample] = []
    reached: dict[str, set[int]] = {}
    newest: dict[str, list[tuple[int, str | None, list[tuple[str, int]]]]] = {}
    cached_code: list[tuple[str, int, int]] = []
    holds: dict[str, set[int]] = {}
    snap: tracemalloc.Snapshot | None = None
    stem = main_stem()
    params = params_for(iterations)
    try:
        screen.measure()
        for i in range(iterations):
            if i == max(0, iterations - TRACED_CALLS) and not tracemalloc.is_tracing():
                tracemalloc.start(TRACE_DEPTH)
                started = True
            call()
            done += 1
            screen.measure()
            if done == CONFIRM_CALLS and not screen.steady_growth(since, CONFIRM_CALLS):
                # Allocator blocks rose, but no container (old ones too, now watched) and
                # no type grows call after call: interned strings or allocator noise.
                return [], done
        if not any(f.severity in ("high", "medium") for f in
                   analyze(screen.run(since, {}, []), params).findings):
            return [], done
        grown = screen.grown_containers(since)
        objs = objects_by_id({oid for oid, path in grown if path is None})
        for oid, path in grown:
            obj = screen.watched[oid][1] if path is not None else objs.get(oid)
            if obj is None:
                continue
            key = path or f"{type_name(type(obj), stem)}@{oid:#x}"
            samples += sample_items(key, obj, 4, stem, True)
            reached[key] = reach(obj)
        obj = None
        objs.clear()
        for name in screen.grown_types(since, max(6.0, 0.5 * iterations)):
            newest[name], holds[name] = newest_of(name, 16)
        snap = tracemalloc.take_snapshot()  # grouped only if a finding needs it (costly)
        caches, cached_code = bounded_caches(unfreeze=froze)
        for cache in caches:
            reached[f"<bounded lru_cache {id(cache):#x}>"] = reach(cache)
        caches.clear()
        cache = None
    finally:
        if started and tracemalloc.is_tracing():
            tracemalloc.stop()
    names: dict[int, str] = {}
    if any(path is None for _, path in grown):
        found = paths.discover(FLOOR, WALK_BUDGET_S, 1_000_000)
        names = dict(found.paths)
        bounded |= {found.paths[oid] for oid, st in found.steps.items() if bounded_lru(st)}
        found.clear()
    run = screen.run(since, names, samples)
    screen.clear()
    a = analyze(run, params)
    return verdicts(a.findings, [*patterns, *bounded], reached, newest,
                     functools.partial(fallback_site, snap) if snap is not None else None,
                     cached_code, holds), done
