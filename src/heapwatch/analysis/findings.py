"""Findings: which series grow without bound, tied together into what a person reads.

Pure functions over a loaded run: nothing here prints or needs a live process.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from heapwatch.analysis import phases as _phases
from heapwatch.analysis.integrity import agent_errors
from heapwatch.analysis.lifecycle import death_note, target_exit
from heapwatch.analysis.series import Series, build, main_pid
from heapwatch.analysis.trend import DEFAULT, Trend, TrendParams, assess, theil_sen, warmup_cut
from heapwatch.model import Finding, Growth, Mark
from heapwatch.retention import note as retention_note
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
    target_exit: dict[str, Any] = field(default_factory=dict)  # analysis.lifecycle
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


# The pure-Python core adds no audit hook to the target (a hook in Python slows every
# id() and deepcopy of the target): it counts only the temp files the target holds open.
TMP_FILES_NOTE = ("Temp files were counted while the target held them open: those it "
                  "created and closed are counted only on the native core.")


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
    if run.skipped:
        notes.append(f"The store is damaged: {run.skipped_summary()}.")
    kept = retention_note(run.meta)
    if kept:
        notes.append(kept)
    if source == "agent" and (agent_meta or {}).get("core") == "python":
        notes.append(TMP_FILES_NOTE)
    ser = build(run, pid, source)
    n = len(ser.snapshots)
    findings: list[Finding] = []
    work = idle_tail(ser, run.marks, params.trend)
    if work is not None:
        notes.append(f"The load stopped at {work.end_s:.0f}s ({work.how}); growth is judged "
                     f"while it ran, and what the idle {work.idle_s:.0f}s kept.")
    if n:
        if source == "agent":
            findings += _container_findings(ser, params, cwd, work)
            findings += _type_findings(ser, params, findings, cwd, work)
            findings += _site_findings(ser, params, findings, cwd, work)
        findings += _process_findings(ser, params, source, work, findings)
        findings = _link_resources(_group(findings))
    findings.sort(key=lambda f: (f.sort_key()[0], _KIND_RANK.get(f.kind, 9), -f.score))
    findings = _native_after_holders(findings)
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
        reason = _inconclusive(ser, params, start)
    else:
        verdict, reason = "no-leak", f"nothing grew without bound over {n} snapshots"

    ended = target_exit(run.meta, ser.snapshots[0].t if ser.snapshots else None, pid)
    died = death_note(ended)
    if died:
        reason = f"{died}; {reason}"
    pauses = [s.duration_s for s in ser.snapshots] if source == "agent" else []
    traced = sum(1 for s in ser.snapshots if s.traced)
    errors = agent_errors(run, ser.snapshots, pid)
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
            "retention": run.meta.get("retention"),
        },
        trace=_trace_info(agent_meta or {}, meta_run, traced, n),
        agent={
            "checked_in": agent_meta is not None,
            "snapshots": n if source == "agent" else 0,
            "pause_median_s": round(statistics.median(pauses), 4) if pauses else None,
            "pause_max_s": round(max(pauses), 4) if pauses else None,
            "errors": errors[:20],
            "stopped": (run.meta.get("agent_stopped") or {}).get("reason"),
            "core": (agent_meta or {}).get("core"),
            "core_fallback": (agent_meta or {}).get("core_fallback"),
        },
        phases=phase_info,
        phases_derived=derived,
        phase_comparison=phase_cmp,
        notes=notes,
        series=ser,
        data=run,
        target_exit=ended,
    )


def _trace_info(agent_meta: dict[str, Any], meta_run: dict[str, Any], traced: int, n: int
                ) -> dict[str, Any]:
    """How allocation sites were known: the mode that ran (``sample``: the native sampler,
    with its mean interval in bytes), why it fell back from the one asked for, and a line
    for people (``summary``)."""
    mode = agent_meta.get("trace") or meta_run.get("trace", "off")
    depth = agent_meta.get("trace_depth", 0)
    share = round(traced / n, 3) if n else 0.0
    interval = agent_meta.get("sample_interval") if mode == "sample" else None
    fallback = agent_meta.get("trace_fallback")
    if mode == "sample" and interval:
        summary = (f"sampled: sites estimated from about one sampled block per "
                   f"{fmt_bytes(interval)} allocated (mean interval), {depth} frames each")
    elif mode == "off":
        summary = "off: no allocation sites"
    else:
        summary = f"tracemalloc {mode} (depth {depth}), {share:.0%} of snapshots traced"
    if fallback:
        summary += f" (sample was asked for: {fallback})"
    return {"mode": mode, "depth": depth, "share": share, "sample_interval": interval,
            "fallback": fallback, "summary": summary}


_WEAK = {"weakref.ReferenceType", "weakref", "weakref.KeyedRef", "weakcallableproxy",
         "weakproxy"}
ABC_CACHE = "<abc cache>"


# -- activity: verdicts that follow the work ------------------------------------------------
@dataclass(frozen=True)
class Work:
    """The run ended idle: the load stopped at ``end_s`` and the target stayed idle for
    ``idle_s`` seconds (from its own CPU time, or from phase marks: ``how``)."""

    end_s: float
    idle_s: float
    how: str


_IDLE_MARKS = ("after", "idle", "cooldown", "drain", "rest", "recovery")
# A tail is idle when its median activity is at most this share of the busy head's. By CPU
# time: a light service's own idle loop keeps ~60% of its busy CPU (measured on the
# load-stops scenarios), more where a wake-up costs more. By bytes allocated: an idle loop
# allocates next to nothing, while a service whose cache has filled still allocates for
# every request (a hit builds its response), so the bar is lower.
_IDLE_SHARE = {"cpu": 0.7, "alloc": 0.25}


def activity(ser: Series) -> tuple[list[float], list[float], str]:
    """The target's activity per interval, as (interval end times, rates, unit): bytes it
    allocated per second (``alloc``) when the native sampler counted them in every
    snapshot, else CPU seconds per second (``cpu``), else gc generation-0 collections per
    second (``gc``). Bytes allocated follow the work alone; CPU time also counts an idle
    loop's wake-ups, which on some machines cost nearly as much as light work."""
    snaps = ser.snapshots
    if len(snaps) > 1 and all(s.process.alloc_bytes is not None for s in snaps):
        unit = "alloc"
    elif len(snaps) > 1 and all(s.process.cpu_s is not None for s in snaps):
        unit = "cpu"
    else:
        unit = "gc"
    xs: list[float] = []
    ys: list[float] = []
    for (xa, a), (xb, b) in itertools.pairwise(zip(ser.xs, snaps, strict=False)):
        dt = xb - xa
        if dt <= 0:
            continue
        if unit == "alloc":
            rate = (b.process.alloc_bytes - a.process.alloc_bytes) / dt  # type: ignore[operator]
        elif unit == "cpu":
            rate = (b.process.cpu_s - a.process.cpu_s) / dt  # type: ignore[operator]
        elif a.process.gc_collections and b.process.gc_collections:
            rate = (b.process.gc_collections[0] - a.process.gc_collections[0]) / dt
        else:
            return [], [], unit
        xs.append(xb)
        ys.append(max(0.0, rate))
    return xs, ys, unit


def idle_tail(ser: Series, marks: list[Mark], tp: TrendParams = DEFAULT) -> Work | None:
    """When the run ends idle after a busy part: where the busy part ended.

    A phase mark named ``after``, ``idle``, ``cooldown``... starts the idle tail when one is
    last. Otherwise, from the target's own CPU time: the split of the per-interval rates into
    a busy head and a tail that fits them best as two levels (least squares on the rates,
    the top 5% clipped), accepted only as a clear step down: the tail's median at most
    ``_IDLE_SHARE`` of the head's, and nearly every tail interval (80%) below the head's 10th
    percentile (a service's idle loop still ticks, so idle is rarely zero; one noisy
    interval in the tail must not hide it). The tail holds at least 3 intervals and a tenth of them; the busy
    part must be long enough to judge on its own (warm-up plus ``min_samples`` snapshots)."""
    n = len(ser.snapshots)
    if n < tp.min_samples + 4:
        return None
    own = [m for m in marks if m.pid == ser.pid]
    t0 = ser.snapshots[0].t
    if own and own[-1].phase.lower() in _IDLE_MARKS and len(own) > 1:
        end = own[-1].t - t0
        k = bisect.bisect_right(ser.xs, end)
        if k >= tp.min_samples + 2 and n - k >= 3:
            return Work(end_s=end, idle_s=ser.xs[-1] - end, how=f"phase {own[-1].phase!r}")
        return None
    xs, rates, unit = activity(ser)
    m = len(rates)
    if m < tp.min_samples + 3:
        return None
    min_idle = max(3, m // 10)
    min_busy = warmup_cut(n, tp) + tp.min_samples - 1
    split = _step_down(rates, min_busy, min_idle, _IDLE_SHARE.get(unit, _IDLE_SHARE["cpu"]))
    if split is None:
        return None
    # the busy part ends at the snapshot before the first idle interval
    end = xs[split - 1]
    k = bisect.bisect_right(ser.xs, end)
    if k < warmup_cut(k, tp) + tp.min_samples:
        return None
    how = {"alloc": "the target's allocations fell to idle",
           "cpu": "the target's CPU time fell to idle"}.get(unit, "its gc activity fell to idle")
    return Work(end_s=end, idle_s=ser.xs[-1] - end, how=how)


def _step_down(rates: list[float], min_busy: int, min_idle: int,
               share: float = _IDLE_SHARE["cpu"]) -> int | None:
    """Index of the first idle interval when ``rates`` step down to a lower level for good,
    else None (see :func:`idle_tail`)."""
    m = len(rates)
    if min_busy < 1 or m - min_busy < min_idle:
        return None
    cap = sorted(rates)[int(0.95 * (m - 1))]
    r = [min(x, cap) for x in rates]
    s1 = [0.0]
    s2 = [0.0]
    for x in r:
        s1.append(s1[-1] + x)
        s2.append(s2[-1] + x * x)
    best: tuple[float, int] | None = None
    for k in range(min_busy, m - min_idle + 1):
        a, b = s1[k], s1[m] - s1[k]
        sse = (s2[k] - a * a / k) + (s2[m] - s2[k] - b * b / (m - k))
        if best is None or sse < best[0]:
            best = (sse, k)
    if best is None:
        return None
    k = best[1]
    head, tail = sorted(rates[:k]), sorted(rates[k:])
    if not statistics.median(tail) <= share * statistics.median(head):
        return None
    low = head[len(head) // 10]
    if sum(1 for x in tail if x < low) < 0.8 * len(tail):
        return None
    return k


def judge(xs: list[float], ys: list[float], tp: TrendParams, work: Work | None
          ) -> tuple[Trend, dict[str, Any] | None]:
    """The trend of one series, and when the run ended idle, what it kept: growth in the busy
    part that the idle tail retains is a leak unless it had plateaued while still busy
    (memlab's baseline / target / final). ``retained`` is {baseline, at_load_end, after,
    load_end_s, kept_share} then."""
    tr = assess(xs, ys, tp)
    if work is None or tr.growing or len(xs) < 3:
        return tr, None
    k = bisect.bisect_right(xs, work.end_s)
    if k >= len(xs) or k < tp.min_samples:
        return tr, None
    busy = assess(xs[:k], ys[:k], tp)
    if not busy.growing:
        return tr, None
    baseline = busy.first
    at_end = statistics.median(ys[max(0, k - 3):k])
    after = statistics.median(ys[k:])
    rise = at_end - baseline
    if rise <= 0:
        return tr, None
    kept = (after - baseline) / rise
    if kept < 0.5:
        return tr, None  # given back once idle: load, not a leak
    retained = {"baseline": baseline, "at_load_end": at_end, "after": after,
                "load_end_s": round(work.end_s, 3), "kept_share": round(min(kept, 9.99), 3)}
    reason = (f"{busy.reason} while the load ran; retained after load: {_num(baseline)} → "
              f"{_num(after)} ({min(kept, 1.0):.0%} of the growth kept over the idle "
              f"{work.idle_s:.0f}s)")
    return replace(busy, last=ys[-1], reason=reason), retained


# -- containers ------------------------------------------------------------------------------
def _item_list(items: Counter[tuple[str, str | None, str | None]], cwd: str | None,
               inferred: set[str] | None = None, stand_ins: set[str] | None = None,
               storage: set[str] | None = None) -> list[dict[str, Any]]:
    """Sampled items grouped by (type, site), sited ones first, and of those the ones whose
    site is the items' own before the ones with only weak evidence (``stand_ins``): their
    container's storage's site (``site_from_storage``: the line where it last grew, standing
    in for items that carry no sample of their own) or a free-list type's block. However
    many snapshots lent the storage's site to an unsampled newest item, a site sampled from
    the items themselves says more about where they come from. ``site`` is the first frame in
    the user's code when the allocation itself happened inside the stdlib or a library
    (``alloc_site``); ``site_inferred`` when it is a field's line, not the item's own."""
    out: list[dict[str, Any]] = []
    stand_ins = stand_ins or set()
    for (t, s, u), k in sorted(items.items(), key=lambda kv: (
            kv[0][1] is None, kv[0][1] in stand_ins, -kv[1])):
        site, alloc = (u, s) if u else (s, None)
        out.append({"type": t, "site": short_site(site, cwd),
                    "alloc_site": short_site(alloc, cwd), "sampled": k,
                    "site_inferred": bool(inferred and s in inferred),
                    "site_from_storage": bool(storage and s in storage and s in stand_ins)})
    return out[:5]


def _site_note(item: dict[str, Any] | None) -> str | None:
    if item and item.get("site_inferred"):
        return ("inferred from a field: the objects themselves carry no trace or sample of "
                "their own (CPython 3.11 instances, gh-101430; shared objects such as True, "
                "whose dict key is read instead), so this is where one of their fields was "
                "allocated")
    return None


def _container_findings(ser: Series, params: AnalysisParams, cwd: str | None,
                        work: Work | None = None) -> list[Finding]:
    out: list[Finding] = []
    tp = _params(params.trend, params.container_min_growth, params.container_min_per_hour)
    need = tp.min_samples + warmup_cut(len(ser.snapshots), tp) // 2
    for key, (xs, ys) in ser.containers.items():
        # A container first seen mid-run (it grew past the walk's floor) is judged on the
        # snapshots that have it, when there are enough of them.
        if len(xs) < need or ys[-1] - min(ys) < tp.min_growth:
            continue
        tr, retained = judge(xs, ys, tp, work)
        if not tr.growing:
            continue
        ctype = ser.container_types.get(key, "container")
        path = ser.container_paths.get(key) or UNREACHABLE
        items = ser.items.get(key, Counter())
        item_list = _item_list(items, cwd, ser.inferred_sites, ser.stand_ins.get(key),
                               ser.storage_sites.get(key))
        item_type = item_list[0]["type"] if item_list else None
        sited = next((i for i in item_list if i["site"]), None)
        site = sited["site"] if sited else None
        alloc_site = sited["alloc_site"] if sited else None
        per_item = ser.item_bytes.get(key, 0)
        nbytes = int(per_item * tr.growth) if per_item else None
        holds = f" of {item_type}" if item_type else ""
        bound = ser.container_bounds.get(key)
        severity = _severity(tr)
        ev = [f"{ctype} at {path} went from {tr.first:.0f} to {tr.last:.0f} items; {tr.reason}."]
        if bound and max(ys) <= bound:
            title = (f"{path}: bounded cache filling: {max(ys):,.0f} of {bound:,} "
                     f"({ctype}{holds})")
            ev = [f"{ctype} at {path} holds at most {bound:,} items (its maxlen, lru_cache "
                  f"maxsize or its holder's size limit) and is filling: {tr.first:.0f} → "
                  f"{tr.last:.0f}. It stops at the bound, so it is not a leak; its full size "
                  f"is about {fmt_bytes(per_item * bound) if per_item else 'unknown'}."]
            severity = "low"
        elif retained:
            title = (f"{path} retained after load: {_num(retained['baseline'])} → "
                     f"{_num(retained['after'])} items ({ctype}{holds})")
        else:
            title = f"{path} grows without bound: {_rate(tr.per_hour, 'items')} ({ctype}{holds})"
        if site and sited and sited["site_from_storage"]:
            ev.append(f"Its newest items are {sited['type']}, put there at {site}"
                      + (f" (inside {alloc_site})" if alloc_site else "")
                      + f", where the {ctype} last grew (no reliable sample of the items' "
                      f"own allocation).")
        elif site:
            ev.append(f"Its newest items are {item_type} allocated at {site}"
                      + (f" (inside {alloc_site})" if alloc_site else "")
                      + (" (inferred from a field)" if sited and sited["site_inferred"] else "")
                      + ".")
        elif items:
            ev.append(f"Its newest items are {item_type}; their allocation site was not traced.")
        if nbytes and severity != "low":
            ev.append(f"The items gained retain about {fmt_bytes(nbytes)} (deep size of a sample,"
                      f" scaled).")
        if ABC_CACHE in path:
            # isinstance/issubclass caches of an ABC: weak references to every class checked
            # against it. They grow while new classes are made and kept by something else.
            severity = "low"
            title = f"{path}: an ABC's weak class cache grows ({_rate(tr.per_hour, 'items')})"
            ev.append("This is an abstract base class's isinstance cache of weak references "
                      "to classes: it only mirrors classes kept alive elsewhere (new classes "
                      "made per request?): look at the other findings.")
        elif item_type in _WEAK:
            # Weak references keep nothing alive: this grows because something else holds
            # the objects (logging's _handlerList, asyncio's task set mirror a real leak).
            severity = "low"
            ev.append("It holds weak references, so it only mirrors objects kept alive "
                      "elsewhere: look at the other findings.")
        # Of holders growing alike, the one whose items come from the user's own line first:
        # a library's bookkeeping beside it (an event registry) mirrors the same growth.
        mine = 2.0 if site and not _is_library(site) else 1.0
        out.append(Finding(
            id="", kind="container", severity=severity, title=title,
            growth=_growth(tr, "items"), confidence=tr.confidence, evidence=" ".join(ev),
            type=ctype, path=path, site=site, alloc_site=alloc_site, items=tuple(item_list),
            bytes=nbytes, series_key=key,
            score=tr.per_hour * max(per_item, 1) * tr.confidence * mine,
            site_note=_site_note(sited), retained=retained,
        ))
    return _mirrors_after_holders(out)


def _mirrors_after_holders(found: list[Finding]) -> list[Finding]:
    """Holders growing alike from the same line: the one that lives in that line's module
    (``app.ENGINE.dispatch.before_execute.listeners``, filled from app.py) ranks before a
    library's bookkeeping that mirrors it (``sqlalchemy.event.registry._key_to_collection``).
    With deep stacks (16 sampled frames) both name the user's line, so the site alone no
    longer tells them apart; the mirror's score is halved."""
    home = [f for f in found if f.site and f.path and _site_module(f.site) in _path_names(f.path)]
    if not home:
        return found
    homes = {id(h) for h in home}
    out = []
    for f in found:
        if id(f) not in homes and any(h.site == f.site
                                      and _alike(h.growth.per_hour, f.growth.per_hour)
                                      for h in home):
            f = replace(f, score=f.score * 0.5)
        out.append(f)
    return out


def _site_module(site: str) -> str:
    return os.path.splitext(os.path.basename(site.rpartition(":")[0]))[0]


def _path_names(path: str) -> list[str]:
    """The dotted names of an owner path before its first key, call or ``<...>`` part
    (``a.b['k'].c``: a, b)."""
    return re.split(r"[\[(<]", path, maxsplit=1)[0].split(".")


def _alike(a: float, b: float) -> bool:
    return abs(a - b) <= 0.1 * max(abs(a), abs(b))


def _is_library(site: str) -> bool:
    return "site-packages" in site or "dist-packages" in site or "/lib/python" in site


def _group(findings: list[Finding]) -> list[Finding]:
    """Identical findings (same kind, type, path, site and item type: 18 ABC caches, a set per
    worker no path reaches) become one, with the count in ``group`` and the title."""
    out: list[Finding] = []
    index: dict[tuple[Any, ...], int] = {}
    for f in findings:
        item = f.items[0]["type"] if f.items else None
        path = f.path or ""
        if ABC_CACHE in path:
            path = ABC_CACHE  # every ABC's cache grows with the same classes
        key = (f.kind, f.type, path, f.site, item, f.severity)
        if f.kind != "container" or key not in index:
            index.setdefault(key, len(out))
            out.append(f)
            continue
        j = index[key]
        kept = out[j] if out[j].score >= f.score else f
        out[j] = replace(kept, group=out[j].group + f.group)
    for j, f in enumerate(out):
        if f.group > 1:
            out[j] = replace(f, title=f"{f.title} (and {f.group - 1} more like it)",
                             evidence=f"{f.evidence} {f.group} containers behave the same; "
                                      f"the biggest grower is shown.")
    return out


# -- types -------------------------------------------------------------------------------
def _type_findings(ser: Series, params: AnalysisParams, found: list[Finding], cwd: str | None,
                   work: Work | None = None) -> list[Finding]:
    out: list[Finding] = []
    tp = _params(params.trend, params.type_min_growth, params.type_min_per_hour)
    snaps = ser.snapshots
    start = warmup_cut(len(snaps), tp)
    if len(snaps) - start < tp.min_samples:
        return out
    first, last = snaps[start].types, snaps[-1].types
    item_types = [str(i["type"]) for f in found for i in f.items[:3]]
    held = {t.removeprefix("bound method of ") for t in item_types}
    if any(t.startswith("bound method of ") for t in item_types):
        held.add("method")
    holders = [f for f in found if f.kind == "container" and f.severity != "low"]
    filling = [f for f in found if f.kind == "container" and f.series_key in ser.container_bounds
               and "bounded cache filling" in f.title]
    for name, count in last.items():
        if count - first.get(name, 0) < tp.min_growth:
            continue
        tr, retained = judge(ser.xs, ser.type_series(name), tp, work)
        if not tr.growing:
            continue
        if name in held:
            continue  # the container finding that holds them already says so
        samples = ser.items.get("type:" + name, Counter())
        sited = [i for i in _item_list(samples, cwd, ser.inferred_sites) if i["site"]]
        site = sited[0]["site"] if sited else None
        alloc_site = sited[0]["alloc_site"] if sited else None
        per_obj = ser.item_bytes.get("type:" + name, 0)
        if filling and not holders:
            h = filling[0]
            who = (f" They are probably the contents of {h.path}, a bounded cache still "
                   f"filling at the same time: they stop when it is full.")
            severity = "low"
        elif holders:
            h = holders[0]
            who = (f" They are probably held through {h.path}, which grows at the same time "
                   f"(a {h.type} of {h.items[0]['type'] if h.items else 'objects'}): look "
                   f"there first.")
            severity = "low" if _severity(tr) != "high" else "medium"
        else:
            who = " No growing container holding them was found from module globals or " \
                  "thread stacks."
            severity = _severity(tr)
        out.append(Finding(
            id="", kind="type", severity=severity,
            title=f"{name} objects accumulate: {_rate(tr.per_hour, 'objects')}",
            growth=_growth(tr, "objects"), confidence=tr.confidence,
            evidence=f"Live {name} objects went from {tr.first:.0f} to {tr.last:.0f}; "
                     f"{tr.reason}." + (f" The newest were allocated at {site}." if site else "")
                     + who,
            type=name, site=site, alloc_site=alloc_site, series_key=name,
            path=holders[0].path if holders else None,
            bytes=int(per_obj * tr.growth) if per_obj else None,
            score=tr.per_hour * max(per_obj, 64) * tr.confidence,
            site_note=_site_note(sited[0] if sited else None), retained=retained,
        ))
    return out


def _site_findings(
    ser: Series, params: AnalysisParams, found: list[Finding], cwd: str | None,
    work: Work | None = None,
) -> list[Finding]:
    out: list[Finding] = []
    tp = _params(params.trend, params.site_min_growth, params.site_min_per_hour)
    traced = [s for s in ser.snapshots if s.traced]
    start = warmup_cut(len(traced), tp)
    if len(traced) - start < tp.min_samples:
        return out
    first, last = traced[start].sites, traced[-1].sites
    known = {f.site for f in found if f.site} | {f.alloc_site for f in found if f.alloc_site}
    for name, (_, size) in last.items():
        if size - first.get(name, (0, 0))[1] < tp.min_growth:
            continue
        xs, ys = ser.site_series(name)
        tr, retained = judge(xs, ys, tp, work)
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
            score=tr.per_hour * tr.confidence, retained=retained,
        ))
    return out


# -- process figures ---------------------------------------------------------------------------
def _process_findings(ser: Series, params: AnalysisParams, source: str,
                      work: Work | None = None, found: list[Finding] | None = None
                      ) -> list[Finding]:
    out: list[Finding] = []
    xs, rss = ser.points("rss")
    if len(rss) >= 3:
        tp = _params(params.trend, params.rss_min_growth, params.rss_min_per_hour)
        tr, _ = judge(xs, rss, tp, work)
        if tr.growing:
            out.extend(_native(ser, tr, source, found or [], params))
    floors = {"sockets": params.fds_min_growth, "fds": params.fds_min_growth,
              "threads": params.threads_min_growth, "processes": params.processes_min_growth,
              "files": params.files_min_growth, "garbage": params.garbage_min_growth}
    for figure, kind, label, unit in _RESOURCES:
        pxs, pys = ser.points(figure)
        if len(pxs) < 3:
            continue
        floor = floors[kind]
        tr, retained = judge(pxs, pys, _params(params.trend, floor, floor), work)
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
            series_key=figure, score=tr.per_hour * 4096 * tr.confidence, retained=retained,
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


def _native_after_holders(findings: list[Finding]) -> list[Finding]:
    """A native finding never comes before a growing container that is a leak itself."""
    serious = [f for f in findings if f.kind == "container" and f.severity != "low"]
    if not serious:
        return findings
    last = max(findings.index(f) for f in serious)
    native = [f for f in findings[:last] if f.kind == "native"]
    if not native:
        return findings
    rest = [f for f in findings if f not in native]
    at = rest.index(findings[last]) + 1
    return rest[:at] + native + rest[at:]


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


def _native(ser: Series, tr: Trend, source: str, found: list[Finding],
            params: AnalysisParams) -> list[Finding]:
    """RSS growth the Python heap does not explain, with the share it explains stated.

    The heap's share is the larger of: the traced heap's growth over the snapshots taken
    while tracing (tracemalloc counts every Python allocation, big buffers too), and the
    bytes the growing containers and types are measured to retain. At half or more there
    is no native finding; nor when what is left unexplained is below ``rss_min_growth``.
    Without tracing, live allocator blocks are only a hint, so the finding is low."""
    rss_growth = max(tr.growth, 1.0)
    held = sum(f.bytes or 0 for f in found if f.kind in ("container", "type", "site")
               and f.severity != "low")
    held_share = held / rss_growth
    traced_share = _heap_share(ser) if source == "agent" else None
    share = max(held_share, traced_share or 0.0)
    if share >= 0.5 or rss_growth * (1 - min(share, 1.0)) < params.rss_min_growth:
        return []
    parts = []
    if traced_share is not None:
        parts.append(f"the traced Python heap explains {traced_share:.0%} of the RSS growth "
                     f"while traced")
    if held:
        parts.append(f"the growing Python containers and objects retain about "
                     f"{fmt_bytes(held)} ({held_share:.0%})")
    severity = _severity(tr)
    if traced_share is None:
        snaps = ser.snapshots
        a, b = snaps[warmup_cut(len(snaps), DEFAULT)].process, snaps[-1].process
        if source == "agent" and a.allocated_blocks and b.allocated_blocks:
            blocks = b.allocated_blocks - a.allocated_blocks
            if blocks * 256 >= 0.5 * (b.rss - a.rss):
                return []  # plausibly the Python heap: with no traced window, no claim
            parts.append(f"live Python allocator blocks grew by only {blocks:+,}")
        elif not parts:
            parts.append("no Python heap figures were recorded")
        severity = "low"
    explained = "; ".join(parts)
    return [Finding(
        id="", kind="native", severity=severity,
        title=f"RSS grows outside the Python heap: {_rate(tr.per_hour, 'bytes')} "
              f"(the Python heap explains {share:.0%})",
        growth=_growth(tr, "bytes"), confidence=tr.confidence,
        evidence=f"RSS went from {fmt_bytes(tr.first)} to {fmt_bytes(tr.last)} ({tr.reason}) while "
                 f"{explained}. Native memory (C extensions, ctypes, the allocator) is growing;"
                 f" `memray run --native` shows the C stacks that allocate it.",
        bytes=int(tr.growth), series_key="rss", score=tr.per_hour * tr.confidence,
    )]


# -- inconclusive ---------------------------------------------------------------------------
def _inconclusive(ser: Series, params: AnalysisParams, start: int) -> str:
    """Why there is no verdict, what grew meanwhile (with figures), and what would settle it."""
    n = len(ser.snapshots)
    need = params.trend.min_samples
    span = ser.xs[-1] if ser.xs else 0.0
    step = span / (n - 1) if n > 1 else 0.0
    growers: list[tuple[float, str]] = []
    for key, (_, ys) in ser.containers.items():
        d = ys[-1] - ys[0]
        if d > 0:
            path = ser.container_paths.get(key) or key
            growers.append((d, f"{path} {ys[0]:,.0f} → {ys[-1]:,.0f} items"))
    growers.sort(reverse=True)
    top = [g for _, g in growers[:3]]
    _, rss = ser.points("rss")
    if len(rss) >= 2 and rss[-1] > rss[0]:
        top.append(f"RSS {fmt_bytes(rss[0])} → {fmt_bytes(rss[-1])}")
    text = (f"too few snapshots to judge: {n} taken over {span:.0f}s ({n - start} after "
            f"warm-up, {need} needed)")
    if top:
        text += "; meanwhile " + ", ".join(top)
    more = need + warmup_cut(need * 2, params.trend) - n
    if step > 0:
        text += (f"; {max(more, 1)} more snapshots would settle it: run about "
                 f"{max(more, 1) * step:.0f}s longer, or give --interval "
                 f"{max(0.2, span / (need * 2)):.1f}s")
    else:
        text += "; run longer or sample more often (--interval)"
    return text
