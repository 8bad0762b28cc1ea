"""Series from a run: one list of (t, value) per container, type, site and process figure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from heapwatch.model import Snapshot
from heapwatch.store import RunData


@dataclass
class Series:
    """A run's series, times in seconds from the first snapshot."""

    pid: int
    snapshots: list[Snapshot]
    xs: list[float]
    containers: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    container_types: dict[str, str] = field(default_factory=dict)
    container_paths: dict[str, str | None] = field(default_factory=dict)
    items: dict[str, Counter[tuple[str, str | None, str | None]]] = field(default_factory=dict)
    item_bytes: dict[str, int] = field(default_factory=dict)
    container_bounds: dict[str, int] = field(default_factory=dict)
    inferred_sites: set[str] = field(default_factory=set)  # sites taken from an item's field
    # per container: the sites its items only got from weak evidence, never from an item's
    # own sample: the container's storage (where it last grew: a stand-in for items with no
    # sample of their own) or a free-list type's block (which another line may have made)
    stand_ins: dict[str, set[str]] = field(default_factory=dict)
    storage_sites: dict[str, set[str]] = field(default_factory=dict)  # of those, storage's

    def points(self, name: str, lo: float = float("-inf"), hi: float = float("inf")
               ) -> tuple[list[float], list[float]]:
        """A process figure between ``lo`` and ``hi`` seconds, snapshots without it left out.
        ``heap`` is the traced Python heap while tracing, else allocator blocks x 64 bytes
        (an estimate)."""
        xs: list[float] = []
        ys: list[float] = []
        for x, s in zip(self.xs, self.snapshots, strict=False):
            if not lo <= x <= hi:
                continue
            p = s.process
            if name == "heap":
                v: float | None = (float(p.traced_current) if p.traced_current is not None
                                   and s.traced else
                                   (p.allocated_blocks * 64.0 if p.allocated_blocks else None))
            else:
                raw = getattr(p, name)
                v = None if raw is None else float(raw)
            if v is not None:
                xs.append(x)
                ys.append(v)
        return xs, ys

    def type_series(self, name: str) -> list[float]:
        return [float(s.types.get(name, 0)) for s in self.snapshots]

    def site_series(self, name: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for x, s in zip(self.xs, self.snapshots, strict=False):
            if not s.traced:
                continue
            xs.append(x)
            ys.append(float(s.sites.get(name, (0, 0))[1]))
        return xs, ys


def main_pid(run: RunData) -> int | None:
    counts = Counter(s.pid for s in run.agent_snapshots)
    return counts.most_common(1)[0][0] if counts else None


def build(run: RunData, pid: int, source: str = "agent") -> Series:
    snaps = [s for s in run.snapshots if s.pid == pid and s.source == source]
    t0 = snaps[0].t if snaps else 0.0
    ser = Series(pid=pid, snapshots=snaps, xs=[s.t - t0 for s in snaps])
    weak: dict[str, set[str]] = {}
    own: dict[str, set[str]] = {}
    for x, s in zip(ser.xs, snaps, strict=False):
        for c in s.containers:
            xs, ys = ser.containers.setdefault(c.key, ([], []))
            xs.append(x)
            ys.append(float(c.length))
            ser.container_types[c.key] = c.type
            ser.container_paths[c.key] = c.path
            if c.bound:
                ser.container_bounds[c.key] = c.bound
        for it in s.items:
            ser.items.setdefault(it.key, Counter())[(it.item_type, it.site, it.user_site)] += (
                it.sampled
            )
            if it.item_bytes:
                ser.item_bytes[it.key] = it.item_bytes
            if it.inferred and it.site:
                ser.inferred_sites.add(it.site)
            if it.site:
                (own if it.evidence == "own" else weak).setdefault(it.key, set()).add(it.site)
                if it.evidence == "storage":
                    ser.storage_sites.setdefault(it.key, set()).add(it.site)
    for key, sites in weak.items():
        if only := sites - own.get(key, set()):
            ser.stand_ins[key] = only
    return ser
