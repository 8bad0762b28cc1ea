"""Findings: which series grow without bound, tied together into what a person reads.

Pure functions over a loaded run: nothing here prints or needs a live process.
"""

from __future__ import annotations

import itertools
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from heapwatch.analysis import phases as _phases
from heapwatch.analysis.series import Series, build, main_pid
from heapwatch.analysis.trend import DEFAULT, Trend, TrendParams, assess, theil_sen, warmup_cut
from heapwatch.model import Finding, Growth
from heapwatch.store import RunData, open_run
from heapwatch.units import fmt_bytes

UNREACHABLE = "<unreachable from module globals>"
_KIND_RANK = {"container": 0, "fds": 1, "sockets": 1, "threads": 1, "files": 1, "processes": 1,
              "garbage": 2, "native": 2, "site": 3, "type": 4}
# process figure -> (finding kind, label, unit)
_RESOURCES = (
    ("sockets", "sockets", "open sockets", "sockets"),
    ("fds", "fds", "open file descriptors", "fds"),
    ("threads", "threads", "threads", "threads"),
    ("children", "processes", "child processes", "processes"),
    ("tmp_files", "files", "files in the temp directory", "files"),
    ("gc_garbage", "garbage", "uncollectable objects in gc.garbage", "objects"),
)


@dataclass(frozen=True)
class AnalysisParams:
    """Effect sizes below which growth is not worth a finding, per unit of the series."""

    trend: TrendParams = DEFAULT
    container_min_growth: float = 50
    container_min_per_hour: float = 2_000
    type_min_growth: float = 200
    type_min_per_hour: float = 5_000
    site_min_growth: float = 256 * 1024
    site_min_per_hour: float = 4 * 1024 * 1024
    rss_min_growth: float = 8 * 1024 * 1024
    rss_min_per_hour: float = 64 * 1024 * 1024
    fds_min_growth: float = 10
    threads_min_growth: float = 5
    files_min_growth: float = 10
    processes_min_growth: float = 3
    garbage_min_growth: float = 20
    max_findings: int = 25


@dataclass
class Analysis:
    """Everything a report shows; renderers only format these numbers."""

    run_dir: str
    verdict: str
    verdict_reason: str
    findings: list[Finding]
    run: dict[str, Any]
    trace: dict[str, Any]
    agent: dict[str, Any]
    phases: dict[str, Any]
    phases_derived: bool
    phase_comparison: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Filled by soak: per-fingerprint status vs history, budget results, what is ignored.
    statuses: dict[str, str] = field(default_factory=dict)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, Any] | None = None
    ignored: set[str] = field(default_factory=set)
    series: Series | None = None
    data: RunData | None = None
    # A run of several processes (analysis/tree.py): one row per process, the tree's summary,
    # each process's own analysis by pid, and per finding fingerprint where it holds.
    processes: list[dict[str, Any]] = field(default_factory=list)
    tree: dict[str, Any] | None = None
    per_process: dict[int, Analysis] = field(default_factory=dict)
    spread: dict[str, dict[str, Any]] = field(default_factory=dict)


def analyze_run(path: str, params: AnalysisParams | None = None) -> Analysis:
    """Load the run at ``path`` (a run directory or its store) and analyse it: each process
    of the run, then across them (a run of one process is analysed as it always was)."""
    from heapwatch.analysis.tree import analyze_tree

    return analyze_tree(open_run(path), params or AnalysisParams())


def _params(base: TrendParams, min_growth: float, min_per_hour: float) -> TrendParams:
    return replace(base, min_growth=min_growth, min_per_hour=min_per_hour)


def _severity(tr: Trend) -> str:
    if tr.confidence >= 0.75:
        return "high"
    if tr.confidence >= 0.45:
        return "medium"
    return "low"


def _growth(tr: Trend, unit: str) -> Growth:
    return Growth(first=tr.first, last=tr.last, unit=unit, per_hour=tr.per_hour,
                  grew_in=f"{tr.grew}/{tr.intervals} intervals")


def _rate(per_hour: float, unit: str) -> str:
    per_min = per_hour / 60
    if unit == "bytes":
        return f"+{fmt_bytes(per_hour)}/h"
    if abs(per_min) >= 1:
        return f"+{_num(per_min)} {unit}/min"
    return f"+{_num(per_hour)} {unit}/h"


def _num(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}" if a >= 10 else f"{v:.1f}"


def short_site(site: str | None, cwd: str | None) -> str | None:
    """``/home/me/svc/app.py:42`` as ``app.py:42`` when under the run's working directory."""
    if not site:
        return site
    filename, _, line = site.rpartition(":")
    if cwd and filename.startswith(cwd.rstrip(os.sep) + os.sep):
        filename = os.path.relpath(filename, cwd)
    return f"{filename}:{line}"


def finding_series(ser: Series, f: Finding) -> tuple[list[float], list[float]]:
    """The series a finding was judged on (times in seconds from the first snapshot)."""
    key = f.series_key or ""
    if f.kind == "container" and key in ser.containers:
        return ser.containers[key]
    if f.kind == "type":
        return ser.xs, ser.type_series(key)
    if f.kind == "site":
        return ser.site_series(key)
    return ser.points(key) if key else ([], [])


def _with_fit(ser: Series, f: Finding, params: AnalysisParams) -> Finding:
    xs, ys = finding_series(ser, f)
    start = warmup_cut(len(xs), params.trend)
    if len(xs) - start < 3:
        return f
    slope, intercept = theil_sen(xs[start:], ys[start:])
    return replace(f, fit=(slope, intercept, xs[start], xs[-1]))


def analyze(run: RunData, params: AnalysisParams | None = None) -> Analysis:
    params = params or AnalysisParams()
    meta_run = run.meta.get("run") or {}
    agent_meta = run.meta.get("agent")
    cwd = meta_run.get("cwd")
    notes: list[str] = []
    pid = main_pid(run)
    source = "agent"
    if pid is None:
        ext = [s for s in run.snapshots if s.source == "external"]
        pid = ext[0].pid if ext else 0
        source = "external"
        why = (run.meta.get("launch") or {}).get("no_agent_reason") or (
            "the agent never checked in"
        )
        notes.append(f"No Python heap data: {why}. Only process figures were recorded.")
    ser = build(run, pid, source)
    n = len(ser.snapshots)
    findings: list[Finding] = []
    if n:
        if source == "agent":
            findings += _container_findings(ser, params, cwd)
            findings += _type_findings(ser, params, findings, cwd)
            findings += _site_findings(ser, params, findings, cwd)
        findings += _process_findings(ser, params, source)
        findings = _link_resources(findings)
    findings.sort(key=lambda f: (f.sort_key()[0], _KIND_RANK.get(f.kind, 9), -f.score))
    findings = [_with_fit(ser, replace(f, id=f"F{i}", pid=pid), params)
                for i, f in enumerate(findings[: params.max_findings], 1)]

    start = warmup_cut(n, params.trend)
    enough = n - start >= params.trend.min_samples
    serious = [f for f in findings if f.severity in ("high", "medium")]
    if source != "agent":
        verdict, reason = "inconclusive", notes[0]
    elif serious:
        verdict = "leak"
        reason = f"{len(serious)} finding(s) of medium or high severity; first: {serious[0].title}"
    elif not enough:
        verdict = "inconclusive"
        reason = (f"too few snapshots to judge: {n} taken, {params.trend.min_samples} needed "
                  f"after warm-up; run longer or sample more often (--interval)")
    else:
        verdict, reason = "no-leak", f"nothing grew without bound over {n} snapshots"

    pauses = [s.duration_s for s in ser.snapshots] if source == "agent" else []
    traced = sum(1 for s in ser.snapshots if s.traced)
    errors = sorted({e for s in ser.snapshots for e in s.errors})
    duration = ser.xs[-1] if ser.xs else 0.0
    phase_info, derived = _phases.phases(ser, run.marks, start)
    phase_cmp = _phases.comparison(phase_info)
    return Analysis(
        run_dir=os.path.dirname(os.path.abspath(run.path)),
        verdict=verdict,
        verdict_reason=reason,
        findings=findings,
        run={
            "command": meta_run.get("command", []),
            "pid": pid,
            # the target's Python, known only from its agent (heapwatch's own is not it)
            "python": (agent_meta or {}).get("python") or None,
            "started": meta_run.get("started") or (agent_meta or {}).get("started", ""),
            "duration_s": round(duration, 3),
            "snapshots": n,
            "interval_s": meta_run.get("interval_s") or (agent_meta or {}).get("interval_s", 0.0),
            "exit_code": (run.meta.get("launch") or {}).get("exit_code"),
        },
        trace={
            "mode": (agent_meta or {}).get("trace") or meta_run.get("trace", "off"),
            "depth": (agent_meta or {}).get("trace_depth", 0),
            "share": round(traced / n, 3) if n else 0.0,
        },
        agent={
            "checked_in": agent_meta is not None,
            "snapshots": n if source == "agent" else 0,
            "pause_median_s": round(statistics.median(pauses), 4) if pauses else None,
            "pause_max_s": round(max(pauses), 4) if pauses else None,
            "errors": errors[:20],
            "stopped": (run.meta.get("agent_stopped") or {}).get("reason"),
        },
        phases=phase_info,
        phases_derived=derived,
        phase_comparison=phase_cmp,
        notes=notes,
        series=ser,
        data=run,
    )


_WEAK = {"weakref.ReferenceType", "weakref", "weakref.KeyedRef", "weakcallableproxy",
         "weakproxy"}


def _item_list(items: Counter[tuple[str, str | None, str | None]], cwd: str | None
               ) -> list[dict[str, Any]]:
    """Sampled items grouped by (type, site), sited ones first. ``site`` is the first frame
    in the user's code when the allocation itself happened inside the stdlib
    (``alloc_site``)."""
    out: list[dict[str, Any]] = []
    for (t, s, u), k in sorted(items.items(), key=lambda kv: (kv[0][1] is None, -kv[1])):
        site, alloc = (u, s) if u else (s, None)
        out.append({"type": t, "site": short_site(site, cwd),
                    "alloc_site": short_site(alloc, cwd), "sampled": k})
    return out[:5]


def _container_findings(ser: Series, params: AnalysisParams, cwd: str | None) -> list[Finding]:
    out: list[Finding] = []
    tp = _params(params.trend, params.container_min_growth, params.container_min_per_hour)
    total = len(ser.snapshots)
    for key, (xs, ys) in ser.containers.items():
        if len(xs) < max(tp.min_samples, total // 2) or ys[-1] - min(ys) < tp.min_growth:
            continue
        tr = assess(xs, ys, tp)
        if not tr.growing:
            continue
        ctype = ser.container_types.get(key, "container")
        path = ser.container_paths.get(key) or UNREACHABLE
        items = ser.items.get(key, Counter())
        item_list = _item_list(items, cwd)
        item_type = item_list[0]["type"] if item_list else None
        sited = next((i for i in item_list if i["site"]), None)
        site = sited["site"] if sited else None
        alloc_site = sited["alloc_site"] if sited else None
        weak = item_type in _WEAK
        per_item = ser.item_bytes.get(key, 0)
        nbytes = int(per_item * tr.growth) if per_item else None
        holds = f" of {item_type}" if item_type else ""
        title = f"{path} grows without bound: {_rate(tr.per_hour, 'items')} ({ctype}{holds})"
        ev = [f"{ctype} at {path} went from {tr.first:.0f} to {tr.last:.0f} items; {tr.reason}."]
        if site:
            ev.append(f"Its newest items are {item_type} allocated at {site}"
                      + (f" (inside {alloc_site})" if alloc_site else "") + ".")
        elif items:
            ev.append(f"Its newest items are {item_type}; their allocation site was not traced.")
        if nbytes:
            ev.append(f"The items gained retain about {fmt_bytes(nbytes)} (deep size of a sample,"
                      f" scaled).")
        severity = _severity(tr)
        if weak:
            # Weak references keep nothing alive: this grows because something else holds
            # the objects (logging's _handlerList, asyncio's task set mirror a real leak).
            severity = "low"
            ev.append("It holds weak references, so it only mirrors objects kept alive "
                      "elsewhere: look at the other findings.")
        out.append(Finding(
            id="", kind="container", severity=severity, title=title,
            growth=_growth(tr, "items"), confidence=tr.confidence, evidence=" ".join(ev),
            type=ctype, path=path, site=site, alloc_site=alloc_site, items=tuple(item_list),
            bytes=nbytes, series_key=key, score=tr.per_hour * max(per_item, 1) * tr.confidence,
        ))
    return out


def _type_findings(ser: Series, params: AnalysisParams, found: list[Finding], cwd: str | None
                   ) -> list[Finding]:
    out: list[Finding] = []
    tp = _params(params.trend, params.type_min_growth, params.type_min_per_hour)
    snaps = ser.snapshots
    start = warmup_cut(len(snaps), tp)
    if len(snaps) - start < tp.min_samples:
        return out
    first, last = snaps[start].types, snaps[-1].types
    item_types = [str(i["type"]) for f in found for i in f.items[:1]]
    held = {t.removeprefix("bound method of ") for t in item_types}
    if any(t.startswith("bound method of ") for t in item_types):
        held.add("method")
    for name, count in last.items():
        if count - first.get(name, 0) < tp.min_growth:
            continue
        tr = assess(ser.xs, ser.type_series(name), tp)
        if not tr.growing:
            continue
        if name in held:
            continue  # the container finding that holds them already says so
        samples = ser.items.get("type:" + name, Counter())
        sited = [i for i in _item_list(samples, cwd) if i["site"]]
        site = sited[0]["site"] if sited else None
        alloc_site = sited[0]["alloc_site"] if sited else None
        per_obj = ser.item_bytes.get("type:" + name, 0)
        out.append(Finding(
            id="", kind="type", severity=_severity(tr),
            title=f"{name} objects accumulate: {_rate(tr.per_hour, 'objects')}",
            growth=_growth(tr, "objects"), confidence=tr.confidence,
            evidence=f"Live {name} objects went from {tr.first:.0f} to {tr.last:.0f}; "
                     f"{tr.reason}." + (f" The newest were allocated at {site}." if site else "")
                     + " No growing container holding them was found from module globals or "
                       "thread stacks.",
            type=name, site=site, alloc_site=alloc_site, series_key=name,
            bytes=int(per_obj * tr.growth) if per_obj else None,
            score=tr.per_hour * max(per_obj, 64) * tr.confidence,
        ))
    return out


def _site_findings(
    ser: Series, params: AnalysisParams, found: list[Finding], cwd: str | None
) -> list[Finding]:
    out: list[Finding] = []
    tp = _params(params.trend, params.site_min_growth, params.site_min_per_hour)
    traced = [s for s in ser.snapshots if s.traced]
    start = warmup_cut(len(traced), tp)
    if len(traced) - start < tp.min_samples:
        return out
    first, last = traced[start].sites, traced[-1].sites
    known = {f.site for f in found if f.site}
    for name, (_, size) in last.items():
        if size - first.get(name, (0, 0))[1] < tp.min_growth:
            continue
        xs, ys = ser.site_series(name)
        tr = assess(xs, ys, tp)
        if not tr.growing:
            continue
        site = short_site(name, cwd)
        if site in known:
            continue
        out.append(Finding(
            id="", kind="site", severity=_severity(tr),
            title=f"memory allocated at {site} keeps growing: {_rate(tr.per_hour, 'bytes')}",
            growth=_growth(tr, "bytes"), confidence=tr.confidence,
            evidence=f"Live traced memory allocated at {site} went from {fmt_bytes(tr.first)} to "
                     f"{fmt_bytes(tr.last)}; {tr.reason}.",
            site=site, bytes=int(tr.growth), series_key=name,
            score=tr.per_hour * tr.confidence,
        ))
    return out


def _process_findings(ser: Series, params: AnalysisParams, source: str) -> list[Finding]:
    out: list[Finding] = []
    xs, rss = ser.points("rss")
    if len(rss) >= 3:
        tp = _params(params.trend, params.rss_min_growth, params.rss_min_per_hour)
        tr = assess(xs, rss, tp)
        if tr.growing:
            out.extend(_native(ser, tr, source))
    floors = {"sockets": params.fds_min_growth, "fds": params.fds_min_growth,
              "threads": params.threads_min_growth, "processes": params.processes_min_growth,
              "files": params.files_min_growth, "garbage": params.garbage_min_growth}
    for figure, kind, label, unit in _RESOURCES:
        pxs, pys = ser.points(figure)
        if len(pxs) < 3:
            continue
        floor = floors[kind]
        tr = assess(pxs, pys,
                    _params(params.trend, floor, floor))
        if not tr.growing:
            continue
        if kind == "fds" and any(f.kind == "sockets" for f in out):
            continue  # the sockets finding says it better
        out.append(Finding(
            id="", kind=kind, severity=_severity(tr),
            title=f"{label} keep growing: {_rate(tr.per_hour, unit)}",
            growth=_growth(tr, unit), confidence=tr.confidence,
            evidence=f"The process went from {tr.first:.0f} to {tr.last:.0f} {label}; "
                     f"{tr.reason}.",
            series_key=figure, score=tr.per_hour * 4096 * tr.confidence,
        ))
    return out


def _link_resources(findings: list[Finding]) -> list[Finding]:
    """A growing resource and a container growing at the same time are usually one leak:
    say which container holds the Python side."""
    holders = [f for f in findings if f.kind == "container" and f.severity != "low"]
    if not holders:
        return findings
    out = []
    for f in findings:
        if f.kind in ("sockets", "fds", "threads", "processes") and holders:
            h = holders[0]
            f = replace(f, path=h.path, evidence=f"{f.evidence} The Python side is probably "
                        f"held by {h.path} ({h.type} of {h.items[0]['type'] if h.items else '?'}"
                        f"), which grows at the same time.")
        out.append(f)
    return out


def _heap_share(ser: Series) -> float | None:
    """Of the RSS growth seen while tracing, the share the traced Python heap explains
    (traced memory plus tracemalloc's own). None when nothing was traced while RSS grew."""
    d_rss = d_heap = 0
    snaps = ser.snapshots
    for a, b in itertools.pairwise(snaps):
        pa, pb = a.process, b.process
        if not (a.traced and b.traced) or pa.traced_current is None or pb.traced_current is None:
            continue
        d_rss += pb.rss - pa.rss
        d_heap += (pb.traced_current - pa.traced_current) + (
            (pb.tracemalloc_overhead or 0) - (pa.tracemalloc_overhead or 0))
    if d_rss <= 256 * 1024:
        return None
    return max(0.0, d_heap / d_rss)


def _native(ser: Series, tr: Trend, source: str) -> list[Finding]:
    """RSS growth the Python heap does not explain. The heap's share is measured over the
    snapshots taken while tracing (tracemalloc counts every Python allocation, big buffers
    too); without tracing, live allocator blocks are only a hint, so the finding is low."""
    share = _heap_share(ser) if source == "agent" else None
    if share is not None:
        if share >= 0.5:
            return []
        explained = f"the traced Python heap explains {share:.0%} of the RSS growth while traced"
        severity = _severity(tr)
    else:
        snaps = ser.snapshots
        a, b = snaps[warmup_cut(len(snaps), DEFAULT)].process, snaps[-1].process
        if source == "agent" and a.allocated_blocks and b.allocated_blocks:
            blocks = b.allocated_blocks - a.allocated_blocks
            if blocks * 256 >= 0.5 * (b.rss - a.rss):
                return []  # plausibly the Python heap: with no traced window, no claim
            explained = f"live Python allocator blocks grew by only {blocks:+,}"
        else:
            explained = "no Python heap figures were recorded"
        severity = "low"
    return [Finding(
        id="", kind="native", severity=severity,
        title=f"RSS grows outside the Python heap: {_rate(tr.per_hour, 'bytes')}",
        growth=_growth(tr, "bytes"), confidence=tr.confidence,
        evidence=f"RSS went from {fmt_bytes(tr.first)} to {fmt_bytes(tr.last)} ({tr.reason}) while "
                 f"{explained}. Native memory (C extensions, ctypes, the allocator) is growing;"
                 f" `memray run --native` shows the C stacks that allocate it.",
        bytes=int(tr.growth), series_key="rss", score=tr.per_hour * tr.confidence,
    )]
