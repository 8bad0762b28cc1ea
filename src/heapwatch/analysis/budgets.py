"""Budgets for soak runs: ``rss-growth=5MB/h``, ``heap-growth=2MB/h``, ``fds-growth=0/h``,
``threads-max=64``, checked per phase and over the whole run.

Rates are Theil-Sen slopes per hour, and only over windows long enough to mean
something (``min_window``, 60 s by default): a 30 s phase does not extrapolate to an hour,
so its rate checks are reported as skipped, never as passed. Sizes take B, KB, MB, GB
(powers of 1024).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from heapwatch.analysis.findings import Analysis
from heapwatch.analysis.series import Series
from heapwatch.analysis.tree import tree_series
from heapwatch.analysis.trend import theil_sen, warmup_cut
from heapwatch.errors import UsageError
from heapwatch.units import SIZE_UNITS

# name -> (process figure, kind, unit)
METRICS: dict[str, tuple[str, str, str]] = {
    "rss-growth": ("rss", "rate", "bytes"),
    "heap-growth": ("heap", "rate", "bytes"),
    "fds-growth": ("fds", "rate", "count"),
    "threads-growth": ("threads", "rate", "count"),
    "objects-growth": ("gc_objects", "rate", "count"),
    "rss-max": ("rss", "max", "bytes"),
    "fds-max": ("fds", "max", "count"),
    "threads-max": ("threads", "max", "count"),
}
_SIZE = SIZE_UNITS
_VALUE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*(?:/\s*(h|hour|m|min|s))?\s*$")
_PER = {"h": 1.0, "hour": 1.0, "m": 60.0, "min": 60.0, "s": 3600.0}


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    limit: float  # bytes or count; per hour for rates
    spec: str

    @property
    def kind(self) -> str:
        return METRICS[self.name][1]


@dataclass(frozen=True, slots=True)
class BudgetResult:
    budget: str
    scope: str  # "run" or a phase name
    status: str  # "pass" | "fail" | "skipped"
    value: float | None
    limit: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "scope": self.scope, "status": self.status,
                "value": None if self.value is None else round(self.value, 3),
                "limit": self.limit, "message": self.message}


def parse_budget(spec: str) -> Budget:
    name, eq, value = spec.partition("=")
    name = name.strip().lower()
    if not eq or name not in METRICS:
        raise UsageError(f"invalid budget {spec!r}: use NAME=VALUE with NAME one of "
                         f"{', '.join(METRICS)} (e.g. rss-growth=5MB/h, threads-max=64)")
    m = _VALUE.match(value)
    if m is None or m.group(2).upper() not in _SIZE:
        raise UsageError(f"invalid budget value in {spec!r}: e.g. 5MB/h, 0/h, 64")
    kind, unit = METRICS[name][1], METRICS[name][2]
    if kind == "rate" and m.group(3) is None:
        raise UsageError(f"budget {spec!r} is a rate: give it per hour, e.g. {name}=5MB/h")
    if kind == "max" and m.group(3) is not None:
        raise UsageError(f"budget {spec!r} is a maximum, not a rate: e.g. {name}=64")
    if unit == "count" and m.group(2):
        raise UsageError(f"budget {spec!r} counts {name.split('-')[0]}: give a number")
    limit = float(m.group(1)) * _SIZE[m.group(2).upper()]
    if kind == "rate":
        limit *= _PER[m.group(3)]
    return Budget(name, limit, spec)


def _fmt(value: float, unit: str, rate: bool) -> str:
    if unit == "bytes":
        return f"{value / 1048576:.2f}MB" + ("/h" if rate else "")
    return (f"{value:.1f}/h" if rate else f"{value:.0f}")


def _scopes(a: Analysis) -> list[tuple[str, Series, float, float]]:
    """(name, series, from, to): the run (its root process) after warm-up and each phase;
    for a tree of processes also the whole tree (figures summed over the processes alive
    at each moment) and each judged process on its own."""
    assert a.series is not None
    xs_all = a.series.xs
    start = xs_all[min(warmup_cut(len(xs_all)), len(xs_all) - 1)]
    out: list[tuple[str, Series, float, float]] = [("run", a.series, start, xs_all[-1])]
    out += [(name, a.series, p["start_s"], p["end_s"]) for name, p in a.phases.items()
            if p and name != "warmup"]
    if a.tree:
        whole = tree_series(a)
        if whole is not None and whole.xs:
            out.append(("tree", whole, start, whole.xs[-1]))
        root = a.run.get("pid")
        for row in a.processes:
            ser = a.per_process[row["pid"]].series if row["pid"] in a.per_process else None
            if row["judged"] and row["pid"] != root and ser is not None and ser.xs:
                cut = ser.xs[min(warmup_cut(len(ser.xs)), len(ser.xs) - 1)]
                out.append((f"pid {row['pid']} ({row['role']})", ser, cut, ser.xs[-1]))
    return out


def check(a: Analysis, budgets: list[Budget], min_window: float = 60.0) -> list[BudgetResult]:
    """Each budget over the run and over each phase (and, for a tree of processes, over
    the whole tree and each long-lived process)."""
    out: list[BudgetResult] = []
    if a.series is None or not a.series.snapshots:
        return [BudgetResult(b.name, "run", "skipped", None, b.limit, "no snapshots")
                for b in budgets]
    # The run is judged after warm-up, like the trend analysis (imports and first requests
    # are not a rate per hour).
    scopes = _scopes(a)
    for b in budgets:
        figure, kind, unit = METRICS[b.name]
        for scope, ser, lo, hi in scopes:
            xs, ys = ser.points(figure, lo, hi)
            if len(xs) < 2:
                why = (f"{figure} was not recorded" if not xs
                       else "fewer than 2 snapshots in this window")
                out.append(BudgetResult(b.name, scope, "skipped", None, b.limit, why))
                continue
            if kind == "max":
                value = max(ys)
            else:
                if xs[-1] - xs[0] < min_window:
                    out.append(BudgetResult(
                        b.name, scope, "skipped", None, b.limit,
                        f"window of {xs[-1] - xs[0]:.0f}s is shorter than {min_window:.0f}s: "
                        f"too short to extrapolate a rate per hour"))
                    continue
                value = theil_sen(xs, ys)[0] * 3600
            ok = value <= b.limit
            note = "" if figure != "heap" or a.trace.get("mode") == "on" else (
                " (heap estimated from allocator blocks outside tracing)")
            out.append(BudgetResult(
                b.name, scope, "pass" if ok else "fail", value, b.limit,
                f"{b.name} {_fmt(value, unit, kind == 'rate')} "
                f"{'within' if ok else 'exceeds'} {_fmt(b.limit, unit, kind == 'rate')}{note}"))
    return out
