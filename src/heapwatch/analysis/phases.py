"""Phases of a run: from marks when there are any, otherwise derived from the series."""

from __future__ import annotations

import statistics
from typing import Any

from heapwatch.analysis.series import Series
from heapwatch.model import Mark


def _figures(ser: Series, lo: int, hi: int) -> dict[str, Any]:
    snaps = ser.snapshots[lo:hi]
    if not snaps:
        return {}
    rss = [s.process.rss for s in snaps]
    objs = [s.process.gc_objects for s in snaps if s.process.gc_objects is not None]
    return {
        "start_s": round(ser.xs[lo], 3),
        "end_s": round(ser.xs[hi - 1], 3),
        "snapshots": len(snaps),
        "rss_median": int(statistics.median(rss)),
        "rss_max": max(rss),
        "objects_median": int(statistics.median(objs)) if objs else None,
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
                out[name] = _figures(ser, idx[0], idx[-1] + 1)
        return out, False
    out = {}
    if warmup:
        out["warmup"] = _figures(ser, 0, warmup)
    rest = n - warmup
    base_end = warmup + max(1, rest // 5)
    out["baseline"] = _figures(ser, warmup, min(base_end, n))
    if base_end < n:
        out["load"] = _figures(ser, base_end, n)
    peak = max(range(n), key=lambda i: ser.snapshots[i].process.rss)
    out["peak"] = _figures(ser, max(0, peak - 1), min(n, peak + 2))
    return out, True
