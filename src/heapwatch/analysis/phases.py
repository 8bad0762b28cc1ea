"""Phases of a run: from marks when there are any, otherwise derived from the series.

Derived phases: warm-up (the samples the trend analysis excludes), baseline (the next
fifth), load (the rest), peak (the window around the highest RSS) and after (from the
peak on, when RSS fell back by at least a quarter of its rise).
"""

from __future__ import annotations

import statistics
from typing import Any

from heapwatch.analysis.series import Series
from heapwatch.analysis.trend import theil_sen
from heapwatch.model import Mark

KNOWN = ("baseline", "load", "peak", "after")


def _p95(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def figures(ser: Series, lo: int, hi: int) -> dict[str, Any]:
    """Figures of snapshots ``lo`` to ``hi`` (exclusive) of ``ser``."""
    snaps = ser.snapshots[lo:hi]
    if not snaps:
        return {}
    xs = ser.xs[lo:hi]
    rss = [s.process.rss for s in snaps]
    objs = [s.process.gc_objects for s in snaps if s.process.gc_objects is not None]
    traced = [s.process.traced_current for s in snaps if s.process.traced_current is not None]
    fds = [s.process.fds for s in snaps if s.process.fds is not None]
    threads = [s.process.threads for s in snaps if s.process.threads is not None]
    gc_a, gc_b = snaps[0].process.gc_collections, snaps[-1].process.gc_collections
    # a rate needs enough points: on a handful of snapshots the slope is noise
    slope = theil_sen(xs, [float(v) for v in rss])[0] if len(snaps) >= 5 else None
    return {
        "start_s": round(xs[0], 3),
        "end_s": round(xs[-1], 3),
        "snapshots": len(snaps),
        "rss_median": int(statistics.median(rss)),
        "rss_p95": _p95(rss),
        "rss_max": max(rss),
        "rss_growth_per_hour": None if slope is None else round(slope * 3600, 1),
        "traced_median": int(statistics.median(traced)) if traced else None,
        "objects_median": int(statistics.median(objs)) if objs else None,
        "gc_collections": [b - a for a, b in zip(gc_a, gc_b, strict=False)] if gc_a else [],
        "fds_max": max(fds) if fds else None,
        "threads_max": max(threads) if threads else None,
    }


def phases(ser: Series, marks: list[Mark], warmup: int) -> tuple[dict[str, Any], bool]:
    """Per-phase figures, and whether the phases were derived (no marks)."""
    n = len(ser.snapshots)
    if n == 0:
        return {}, True
    t0 = ser.snapshots[0].t
    own = [m for m in marks if m.pid == ser.pid]
    if own:
        out: dict[str, Any] = {}
        bounds = [(m.phase, m.t - t0) for m in own]
        for i, (name, start) in enumerate(bounds):
            end = bounds[i + 1][1] if i + 1 < len(bounds) else float("inf")
            idx = [j for j, x in enumerate(ser.xs) if start <= x < end]
            if idx:
                fig = figures(ser, idx[0], idx[-1] + 1)
                fig["marked_at_s"] = round(start, 3)
                out[name if name not in out else f"{name}#{i + 1}"] = fig
        return out, False
    out = {}
    if warmup:
        out["warmup"] = figures(ser, 0, warmup)
    rest = n - warmup
    base_end = min(n, warmup + max(1, rest // 5))
    out["baseline"] = figures(ser, warmup, base_end)
    if base_end < n:
        out["load"] = figures(ser, base_end, n)
    rss = [s.process.rss for s in ser.snapshots]
    peak = max(range(n), key=lambda i: rss[i])
    out["peak"] = figures(ser, max(0, peak - 1), min(n, peak + 2))
    rise = rss[peak] - min(rss[: peak + 1])
    if peak < n - 2 and rise > 0 and rss[peak] - rss[-1] >= 0.25 * rise:
        out["after"] = figures(ser, peak + 1, n)
    return out, True


def comparison(phase_figures: dict[str, Any]) -> dict[str, Any]:
    """Baseline -> load -> peak -> after: does memory return after load?"""
    got = {k: v for k, v in phase_figures.items() if k in KNOWN and v}
    base = got.get("baseline")
    out: dict[str, Any] = {}
    if base:
        for name in ("load", "peak", "after"):
            if name in got:
                out[f"{name}_vs_baseline_rss"] = got[name]["rss_median"] - base["rss_median"]
    if "after" in got and "peak" in got and base:
        rise = got["peak"]["rss_max"] - base["rss_median"]
        back = got["peak"]["rss_max"] - got["after"]["rss_median"]
        out["returned_share"] = round(back / rise, 3) if rise > 0 else None
    return out
