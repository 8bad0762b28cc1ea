"""Leak checks for a callable, run in-process: the engine of the pytest plugin.

The callable runs ``warmup`` times, then ``iterations`` times with ``gc.collect()`` and
an agent snapshot after each; the snapshots are analysed with the same trend statistics
as a run, iterations standing in for time. Known interpreter and stdlib caches (re,
typing, linecache, logging's registries, functools caches of the stdlib...) fill up and
are never reported.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from heapwatch.agent.sampler import Agent, AgentConfig
from heapwatch.analysis import AnalysisParams, analyze
from heapwatch.analysis.trend import TrendParams
from heapwatch.errors import HeapwatchError
from heapwatch.model import DEFAULT_TRACE, Finding
from heapwatch.store import open_run

#: A test's loop allocates little between snapshots: sample about every 4 KiB (the cost is
#: the test's, not a production service's) so small leaked items are sited.
LEAKCHECK_SAMPLE_INTERVAL = 4096

KNOWN_CACHES = (
    "re._cache", "re._cache2", "re._*cache*", "typing.*", "linecache.*", "functools.*",
    "logging._handlerList", "logging._at_fork_reinit_lock_weakset*", "logging._handlers",
    "logging.Logger.manager.loggerDict", "logging.root.manager.loggerDict",
    "logging.Logger.manager.loggerDict[*]", "sys.modules", "sys.path_importer_cache",
    "abc.*", "_abc*", "encodings.*", "importlib.*", "inspect.*", "fnmatch.*", "tokenize.*",
    "copyreg.*", "weakref.*", "_weakrefset.*", "collections.*", "threading._*", "string.*",
    "enum.*", "dataclasses.*", "ast.*", "warnings.*", "locale.*", "decimal.*", "json.*",
    "<thread *", "re.Pattern", "typing._*", "functools._lru_list_elem", "_abc_data",
    "weakref.ReferenceType", "re.Match", "_pytest.*", "pytest.*", "pluggy.*",
)


@dataclass
class LeakResult:
    """Outcome of a leak check; ``message`` names what grew."""

    leaked: bool
    findings: list[Finding]
    iterations: int
    message: str

    def __bool__(self) -> bool:
        return self.leaked


def _stdlib_cache(f: Finding) -> bool:
    """An ``lru_cache`` of a stdlib function, or a stdlib module's global."""
    path = f.path or ""
    top = path.split(".", 1)[0]
    return top in getattr(sys, "stdlib_module_names", ()) and (
        ".<lru_cache>" in path or path.count(".") <= 1)


def _ignored(f: Finding, patterns: Iterable[str]) -> bool:
    values = [v for v in (f.path, f.type, f.site) if v]
    if f.items:
        values.append(str(f.items[0].get("type")))
    return _stdlib_cache(f) or any(fnmatch.fnmatchcase(v, p) for p in patterns for v in values)


def params_for(iterations: int) -> AnalysisParams:
    trend = TrendParams(warmup_fraction=0.0, warmup_max_samples=0, min_samples=8)
    return AnalysisParams(
        trend=trend,
        container_min_growth=max(5.0, 0.2 * iterations), container_min_per_hour=0.0,
        type_min_growth=max(10.0, 0.5 * iterations), type_min_per_hour=0.0,
        site_min_growth=64 * 1024, site_min_per_hour=0.0,
        rss_min_growth=1e18,  # RSS of a test runner is too noisy per iteration
        fds_min_growth=max(3.0, 0.2 * iterations), threads_min_growth=3,
        files_min_growth=max(3.0, 0.2 * iterations),
    )


def check(fn: Callable[[], Any], iterations: int = 50, warmup: int = 5,
          ignore: Iterable[str] = (), name: str | None = None) -> LeakResult:
    """Run ``fn`` repeatedly and report what keeps growing."""
    if iterations < 8:
        raise HeapwatchError(f"leakcheck needs at least 8 iterations to see a trend, not "
                             f"{iterations}")
    if warmup < 0:
        raise HeapwatchError("leakcheck warmup must be 0 or more")
    tmp = tempfile.mkdtemp(prefix="heapwatch-leakcheck-")
    agent = Agent(AgentConfig(store=os.path.join(tmp, "run.sqlite"), interval=86400.0,
                              trace=DEFAULT_TRACE, trace_depth=None,
                              sample_interval=LEAKCHECK_SAMPLE_INTERVAL, floor=8, trace_window=3,
                              trace_cooldown=2, discover_every=10, max_containers=500))
    try:
        for _ in range(warmup):
            fn()
        agent.start()
        try:
            gc.collect()
            agent.snapshot()
            for _ in range(iterations):
                fn()
                gc.collect()
                agent.snapshot()
        finally:
            agent.stop("leakcheck")
        run = open_run(tmp)
        snaps = [s for s in run.snapshots if s.reason == "manual"]
        # iterations stand in for seconds: growth "per hour" is per 3600 iterations
        run.snapshots = [dataclasses.replace(s, t=float(i)) for i, s in enumerate(snaps)]
        a = analyze(run, params_for(iterations))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    patterns = (*KNOWN_CACHES, *ignore)
    bad = [f for f in a.findings
           if f.severity in ("high", "medium") and not _ignored(f, patterns)]
    label = name or getattr(fn, "__qualname__", "the function")
    if not bad:
        return LeakResult(False, [], iterations, f"{label}: nothing kept growing over "
                                                 f"{iterations} iterations")
    lines = [f"{label} leaks over {iterations} iterations (after {warmup} warm-up):"]
    for f in bad[:5]:
        per_it = f.growth.per_hour / 3600
        what = f.path or f.type or f.kind
        held = f" of {f.items[0]['type']}" if f.items else ""
        lines.append(f"  {what} ({f.type or f.kind}{held}) grows {per_it:+.2f} "
                     f"{f.growth.unit}/iteration"
                     + (f", allocated at {f.site}" if f.site else "")
                     + f" [{f.growth.grew_in}]")
    return LeakResult(True, bad, iterations, "\n".join(lines))
