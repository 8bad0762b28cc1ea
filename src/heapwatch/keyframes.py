"""Keyframes and deltas: how the store keeps a snapshot's type counts and container
lengths small.

Most of a snapshot repeats the one before: of ~400 types and ~180 containers, a steady
service changes 10-20 between snapshots. So, per process stream, every
``KEYFRAME_EVERY``-th snapshot is written in full (a keyframe, ``base_id`` NULL) and the
others only as what differs from their keyframe (``base_id`` = the keyframe's id): types
whose count changed (a type gone is a row of count 0) and containers whose length, size,
type, path or bound changed (a container gone is a row of length -1). A reader rebuilds a
snapshot from its keyframe and its own rows; any delta can be dropped without touching
the others (retention drops old deltas and thins keyframes); a delta whose keyframe is
damaged or missing is skipped and counted by the reader, like any damaged row.

The writer's memory of a keyframe lives inside the target: only ``dict[str, int]`` (names
to counts, keys to a hash), which the garbage collector does not track, so the census
never counts it as the target's.
"""

from __future__ import annotations

from dataclasses import dataclass

from heapwatch.model import ContainerStat, Snapshot

KEYFRAME_EVERY = 12  # one full snapshot a minute at the default 5 s
TYPE_GONE = 0
CONTAINER_GONE = -1


def _digest(c: ContainerStat) -> int:
    """Everything of a container but its key: a delta writes it when any of it changed."""
    return hash((c.type, c.length, c.size, c.path, c.bound))


@dataclass
class _Keyframe:
    sid: int
    types: dict[str, int]
    containers: dict[str, int]
    since: int = 0


@dataclass(frozen=True)
class Plan:
    """What one snapshot writes: its base, the type counts and containers rows, and the
    keys of containers gone since the keyframe."""

    base_id: int | None
    types: dict[str, int]
    containers: list[ContainerStat]
    gone: list[str]


class Keyframes:
    """The writer's memory of the last keyframe of each stream (pid, source)."""

    def __init__(self, every: int = KEYFRAME_EVERY) -> None:
        self.every = every
        self._frames: dict[tuple[int, str], _Keyframe] = {}

    def plan(self, snap: Snapshot) -> Plan:
        frame = self._frames.get((snap.pid, snap.source))
        if frame is None or frame.since + 1 >= self.every:
            return Plan(None, dict(snap.types), list(snap.containers), [])
        types = {n: c for n, c in snap.types.items() if frame.types.get(n) != c}
        types.update({n: TYPE_GONE for n in frame.types if n not in snap.types})
        seen = {c.key for c in snap.containers}
        changed = [c for c in snap.containers if frame.containers.get(c.key) != _digest(c)]
        gone = [k for k in frame.containers if k not in seen]
        return Plan(frame.sid, types, changed, gone)

    def committed(self, snap: Snapshot, sid: int, plan: Plan) -> None:
        """Call once the snapshot's transaction committed."""
        key = (snap.pid, snap.source)
        if plan.base_id is None:
            self._frames[key] = _Keyframe(
                sid, {n: int(c) for n, c in snap.types.items()},
                {c.key: _digest(c) for c in snap.containers})
        else:
            self._frames[key].since += 1

    def forget(self) -> None:
        self._frames.clear()


def rebuild(base_types: dict[str, int], base_containers: list[ContainerStat],
            types: dict[str, int], containers: list[ContainerStat]
            ) -> tuple[dict[str, int], list[ContainerStat]]:
    """A delta snapshot's full type counts and containers, from its keyframe's (a reader
    skips a delta whose keyframe it cannot read: the delta alone is not the snapshot)."""
    full_types = dict(base_types)
    for name, count in types.items():
        if count == TYPE_GONE:
            full_types.pop(name, None)
        else:
            full_types[name] = count
    by_key = {c.key: c for c in base_containers}
    for c in containers:
        if c.length == CONTAINER_GONE:
            by_key.pop(c.key, None)
        else:
            by_key[c.key] = c
    return full_types, list(by_key.values())
