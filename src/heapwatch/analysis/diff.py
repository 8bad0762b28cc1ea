"""What changed between two snapshots (or phases) of a run, by type, site or container."""

from __future__ import annotations

from dataclasses import dataclass

from heapwatch.analysis.findings import Analysis, short_site
from heapwatch.errors import UsageError
from heapwatch.model import Snapshot

BY = ("container", "type", "site")


@dataclass(frozen=True, slots=True)
class DiffRow:
    name: str
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before

    def _sort_key(self) -> tuple[int, str]:
        return (-self.delta, self.name)


@dataclass(frozen=True)
class Diff:
    by: str
    unit: str
    before: Snapshot
    after: Snapshot
    before_label: str
    after_label: str
    rows: list[DiffRow]
    unchanged: int = 0  # rows left out because their value did not change


def pick(a: Analysis, spec: str | None, end: bool) -> tuple[Snapshot, str]:
    """A snapshot from ``spec``: a snapshot number (1-based), a phase name (its first
    snapshot for --from, its last for --to), or the default (after warm-up / the last)."""
    assert a.series is not None
    snaps, xs = a.series.snapshots, a.series.xs
    if not snaps:
        raise UsageError("the run has no snapshots to compare")
    if spec is None:
        if end:
            return snaps[-1], f"#{len(snaps)} (last)"
        first = a.phases.get("baseline") or {}
        idx = next((i for i, x in enumerate(xs) if x >= first.get("start_s", 0.0)), 0)
        return snaps[idx], f"#{idx + 1} (baseline)"
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n <= len(snaps):
            raise UsageError(f"snapshot {n} does not exist: the run has 1 to {len(snaps)}")
        return snaps[n - 1], f"#{n}"
    phase = a.phases.get(spec)
    if not phase:
        known = ", ".join(a.phases) or "none"
        raise UsageError(f"no phase {spec!r} in this run (phases: {known})")
    bound = phase["end_s"] if end else phase["start_s"]
    idx = min(range(len(xs)), key=lambda i: abs(xs[i] - bound))
    return snaps[idx], f"#{idx + 1} ({spec} {'end' if end else 'start'})"


def diff(a: Analysis, start: str | None, end: str | None, by: str = "container",
         top: int = 20, changed_only: bool = True) -> Diff:
    """Rows of what changed most, largest growth first; ``changed_only`` leaves out the rows
    whose value did not change (``Diff.unchanged`` counts them)."""
    if by not in BY:
        raise UsageError(f"--by must be one of {', '.join(BY)}, not {by!r}")
    before, bl = pick(a, start, end=False)
    after, al = pick(a, end, end=True)
    cwd = (a.data.meta.get("run") or {}).get("cwd") if a.data else None
    rows: list[DiffRow]
    if by == "container":
        b = {c.key: c.length for c in before.containers}
        f = {c.key: c.length for c in after.containers}
        unit = "items"
        rows = [DiffRow(k, b.get(k, 0), f.get(k, 0)) for k in b.keys() | f.keys()]
    elif by == "type":
        unit = "objects"
        rows = [DiffRow(k, before.types.get(k, 0), after.types.get(k, 0))
                for k in before.types.keys() | after.types.keys()]
    else:
        unit = "bytes"
        if not (before.traced and after.traced):
            raise UsageError("--by site needs two traced snapshots: run with --trace on, or "
                             "pick snapshots inside a tracing window")
        rows = [DiffRow(short_site(k, cwd) or k, before.sites.get(k, (0, 0))[1],
                        after.sites.get(k, (0, 0))[1])
                for k in before.sites.keys() | after.sites.keys()]
    unchanged = sum(1 for r in rows if r.delta == 0)
    if changed_only:
        rows = [r for r in rows if r.delta != 0]
    rows.sort(key=DiffRow._sort_key)
    return Diff(by, unit, before, after, bl, al, rows[:top], unchanged if changed_only else 0)
