"""When a process would hit its memory limit at its current RSS growth rate."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from heapwatch.analysis.findings import Analysis
from heapwatch.analysis.trend import theil_sen, warmup_cut

CGROUP_ROOT = "/sys/fs/cgroup"
# cgroup v1 spells "no limit" as the largest page-aligned 63-bit number.
_V1_UNLIMITED = 1 << 62
# A trend fitted on fewer snapshots than this is noise (one step reads as GiB/h).
MIN_TREND_SNAPSHOTS = 5


# -- the memory limit and the projection --------------------------------------------------------

def _read_number(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # "max" (v2) means no limit


def cgroup_memory_limit(root: str = CGROUP_ROOT, proc_cgroup: str = "/proc/self/cgroup"
                        ) -> int | None:
    """The memory limit of this process's cgroup in bytes, or ``None`` when there is none
    or it cannot be read.

    cgroup v2: ``memory.max`` of this process's cgroup and of every cgroup above it (the
    lowest one applies); ``max`` means unlimited. cgroup v1 as a fallback:
    ``memory.limit_in_bytes``. Only meaningful for a target in the same cgroup as this
    process, e.g. one that ``heapwatch run`` started.
    """
    v2_rel = v1_rel = None
    try:
        with open(proc_cgroup, encoding="utf-8") as f:
            for line in f:
                hid, controllers, rel = line.rstrip("\n").split(":", 2)
                if hid == "0" and controllers == "":
                    v2_rel = rel
                elif "memory" in controllers.split(","):
                    v1_rel = rel
    except (OSError, ValueError):
        pass
    limits = []
    for base, rel, name in ((root, v2_rel or "/", "memory.max"),
                            (os.path.join(root, "memory"), v1_rel or "/", "memory.limit_in_bytes")):
        parts = [p for p in rel.split("/") if p and p != ".."]
        for depth in range(len(parts), -1, -1):
            value = _read_number(os.path.join(base, *parts[:depth], name))
            if value is not None and value < _V1_UNLIMITED:
                limits.append(value)
        if limits:
            break
    return min(limits) if limits else None


def hours_to_limit(rss: float, per_hour: float, limit: float) -> float | None:
    """Hours until ``rss`` reaches ``limit`` growing ``per_hour`` bytes an hour: 0 when it
    is already there, ``None`` when it does not grow."""
    if rss >= limit:
        return 0.0
    if per_hour <= 0:
        return None
    return (limit - rss) / per_hour


@dataclass(frozen=True, slots=True)
class Projection:
    """When the process would hit its memory limit at its current RSS growth rate."""

    limit_bytes: int
    rss_bytes: int  # RSS at the last snapshot
    per_hour: float  # RSS trend over the latest half of the run (Theil-Sen), bytes an hour
    hours: float | None  # until the limit; None: RSS does not grow


def projection(analysis: Analysis, limit: int | None) -> Projection | None:
    """The projection the report shows, or ``None`` without a limit or snapshots.

    "Current" growth rate: the Theil-Sen RSS slope over the latest half of the snapshots
    after warm-up (at least :data:`MIN_TREND_SNAPSHOTS` of them when there are): recent
    enough that growth which stopped does not count, robust to a single spike."""
    ser = analysis.series
    if not limit or limit <= 0 or ser is None or not ser.snapshots:
        return None
    n = len(ser.snapshots)
    warm = warmup_cut(n)
    start = max(warm, n - max(MIN_TREND_SNAPSHOTS, (n - warm) // 2))
    xs = ser.xs[start:]
    rss = [float(s.process.rss) for s in ser.snapshots[start:]]
    slope = theil_sen(xs, rss)[0] if len(xs) >= 2 else 0.0
    per_hour = slope * 3600
    last = ser.snapshots[-1].process.rss
    return Projection(limit, last, per_hour, hours_to_limit(last, per_hour, limit))


def projection_dict(p: Projection | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"limit_bytes": p.limit_bytes, "rss_bytes": p.rss_bytes,
            "per_hour": round(p.per_hour, 1),
            "hours": None if p.hours is None else round(p.hours, 2)}
