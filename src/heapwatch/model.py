"""Plain data shared by the agent, the store and the analysis: frozen, slotted, no I/O.

A profiler pays for every record it keeps, so the bulk of a snapshot (thousands of
type counts) is held in plain mappings; the records around them are frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401

SCHEMA_VERSION = 2
# Store versions this heapwatch can read: 1 (one process per run, no ``processes`` table).
READABLE_SCHEMAS = (1, 2)
REPORT_SCHEMA = "heapwatch.report/1"
TRACE_MODES = ("sample", "auto", "on", "off")
#: The default trace mode: ``sample`` (the native sampler), which the agent turns into
#: ``auto`` where the native core is absent (and records why).
DEFAULT_TRACE = "sample"


def default_trace_depth(trace: str) -> int:
    """Frames per traced allocation when not given: ``sample`` reads 16 frames per sampled
    block (cheap: only a sample pays, and library code can sit deep above the user's
    line); ``auto`` traces only short windows, so it takes 5 frames (enough for a stdlib
    allocation such as asyncio.create_task to name the user's line); ``on`` traces
    everything and keeps 1 (tracemalloc's cost grows with depth: measured here, 10 frames
    made allocation 59-78x slower during a window)."""
    return {"sample": 16, "auto": 5}.get(trace, 1)


@dataclass(frozen=True, slots=True)
class ProcessStat:
    """Process-level figures at one instant. ``None`` means "not measurable here"."""

    rss: int
    fds: int | None = None
    threads: int | None = None
    children: int | None = None
    allocated_blocks: int | None = None
    gc_objects: int | None = None
    gc_collections: tuple[int, ...] = ()
    traced_current: int | None = None
    traced_peak: int | None = None
    tracemalloc_overhead: int | None = None
    sockets: int | None = None
    tmp_files: int | None = None
    gc_garbage: int | None = None
    cpu_s: float | None = None  # the target's CPU time (the agent's own thread left out)
    # bytes the target allocated through Python's allocators since sampling began (the
    # agent's own left out): known only while the native sampler runs
    alloc_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerStat:
    """One container's size at one snapshot. ``key`` is its owner path once known,
    otherwise ``type@0xID`` (an id only stands for the same container while it lives)."""

    key: str
    type: str
    length: int
    size: int = 0
    path: str | None = None
    bound: int | None = None  # a known maximum length: deque maxlen, lru_cache maxsize...

    def _sort_key(self) -> tuple[bool, int, str]:
        return (self.path is None, -self.length, self.key)  # named ones survive a cap


@dataclass(frozen=True, slots=True)
class ItemSample:
    """What a growing container's newest items are: their type, and where they were
    allocated (``site``; ``user_site`` is the first frame outside the stdlib)."""

    key: str
    item_type: str
    sampled: int
    site: str | None = None
    user_site: str | None = None
    item_bytes: int = 0
    inferred: bool = False  # the site is a field's (the item itself had no trace)
    # where ``site`` comes from: "own" (the item's block, or a field's when inferred),
    # "storage" (its container's storage, where that last grew: a stand-in for items with no
    # sample of their own) or "recycled" (the block of an item of a free-list type, which
    # another line may have allocated first: weak evidence, sampling only)
    evidence: str = "own"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one agent snapshot recorded."""

    seq: int
    pid: int
    t: float
    mono: float
    reason: str
    duration_s: float
    phase: str | None
    traced: bool
    process: ProcessStat
    types: Mapping[str, int] = field(default_factory=dict)
    sites: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    containers: tuple[ContainerStat, ...] = ()
    items: tuple[ItemSample, ...] = ()
    errors: tuple[str, ...] = ()
    source: str = "agent"


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process of a run (a run is a tree of processes). ``how`` it came to be watched:
    ``root`` (the first Python process of ``heapwatch run``, or the attached one), ``fork``
    (a forked child, given a fresh agent by the fork hook), ``exec`` (a Python child started
    by exec, given the agent by the bootstrap), ``attach`` (entered by ``attach --tree``),
    ``external`` (recorded from outside: not Python, or isolated with -I/-E/-S).
    ``role`` is a guess (``main``, ``worker``, ``resource tracker``...), ``program`` the
    program's name only: never its arguments. ``end_reason``: ``exit`` (the interpreter
    exited), ``stop`` (the agent was stopped, the process went on), ``gone`` (seen to vanish
    from outside), ``exec`` (replaced by exec). ``exit_code``/``exit_signal`` where
    observable (the launched command's own)."""

    pid: int
    t_start: float
    how: str
    ppid: int | None = None
    role: str | None = None
    program: str | None = None
    control: str | None = None
    python: str | None = None
    t_end: float | None = None
    end_reason: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    t: float
    phase: str
    pid: int
    source: str = "api"


@dataclass(frozen=True, slots=True)
class Growth:
    first: float
    last: float
    unit: str
    per_hour: float
    grew_in: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "last": self.last,
            "unit": self.unit,
            "per_hour": round(self.per_hour, 3),
            "grew_in": self.grew_in,
        }


SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that grows, with the evidence tied together (see DESIGN.md, report.json)."""

    id: str
    kind: str
    severity: str
    title: str
    growth: Growth
    confidence: float
    evidence: str
    type: str | None = None
    path: str | None = None
    site: str | None = None
    alloc_site: str | None = None
    items: tuple[dict[str, Any], ...] = ()
    bytes: int | None = None
    series_key: str | None = None
    score: float = 0.0
    fit: tuple[float, float, float, float] | None = None  # slope/s, intercept, x from, x to
    pid: int | None = None  # the process whose series this finding was judged on
    site_note: str | None = None  # how the site was found, when not from the item's own trace
    retained: dict[str, Any] | None = None  # growth while active, kept when idle
    group: int = 1  # identical findings folded into this one

    @property
    def fingerprint(self) -> str:
        """Stable across runs and code moves: kind, owner path, type and the site's file
        (not its line), hashed."""
        import hashlib

        site_file = (self.site or "").rpartition(":")[0] or (self.site or "")
        item = self.items[0]["type"] if self.items else ""
        resource = self.kind in ("native", "fds", "threads", "sockets", "files", "processes",
                                 "garbage")
        key = (self.series_key or "") if resource else ""
        text = "|".join((self.kind, self.path or "", self.type or "", site_file, str(item), key))
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def sort_key(self) -> tuple[int, float, str]:
        return (SEVERITY_RANK.get(self.severity, 9), -self.score, self.title)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "type": self.type,
            "path": self.path,
            "site": self.site,
            "alloc_site": self.alloc_site,
            "growth": self.growth.as_dict(),
            "confidence": round(self.confidence, 3),
            "evidence": self.evidence,
            "items": list(self.items),
            "bytes": self.bytes,
            "series": self.series_key,
            "fingerprint": self.fingerprint,
            "pid": self.pid,
            "site_note": self.site_note,
            "retained": self.retained,
            "group": self.group,
        }
        return out
