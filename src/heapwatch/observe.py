"""Follow a run's process tree from outside (``heapwatch run`` and ``attach --tree``).

The agents record their own processes. What they cannot, this records: processes of the
tree without an agent (not Python, isolated with ``-I/-E/-S``, or not checked in yet) get
an external stream of process figures (RSS, fds, threads); a watched process that
vanishes without saying so (killed, ``os._exit``) is ended as ``gone``; a process that
takes the place of one that ended (same parent and role: a recycled worker) is recorded
as ``replaced``. Exit codes are only observable for the launched command itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from heapwatch.agent import lineage
from heapwatch.model import ProcessInfo, ProcessStat, Snapshot
from heapwatch.store import LiveReader, Writer


def _psutil() -> Any:
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    return psutil


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has ended: it only waits for its parent)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(512)
    except OSError:
        return False
    state = stat.rsplit(b")", 1)[-1].split()[:1]
    return state not in ([b"Z"], [b"X"])


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it that still runs."""
    ps = _psutil()
    if ps is None or not alive(pid):
        return [pid] if alive(pid) else []
    try:
        root = ps.Process(pid)
        kids = [p.pid for p in root.children(recursive=True)]
    except Exception:
        return [pid] if alive(pid) else []
    return [pid] + [k for k in kids if alive(k)]


def external_stat(pid: int) -> ProcessStat | None:
    """Process figures read from outside: RSS, fds, threads, children."""
    ps = _psutil()
    if ps is None:
        return None
    try:
        p = ps.Process(pid)
        with p.oneshot():
            return ProcessStat(rss=p.memory_info().rss, fds=p.num_fds(),
                               threads=p.num_threads(), children=len(p.children()))
    except Exception:
        return None


@dataclass
class TreeObserver:
    """One poll per ``interval``: call :meth:`poll` from the CLI's follow loop."""

    writer: Writer
    reader: LiveReader
    root: int
    interval: float
    follow: bool = True  # record the root's descendants; False: the root alone
    _seq: dict[int, int] = field(default_factory=dict)
    _due: float = 0.0
    _known: set[int] = field(default_factory=set)  # process row ids already looked at
    _replaced: set[int] = field(default_factory=set)  # row ids of ended ones replaced
    _start: float | None = None

    def poll(self, now: float | None = None, force: bool = False) -> None:
        mono = time.monotonic() if now is None else now
        if not force and mono < self._due:
            return
        if self._start is None:
            self._start = mono
        # often at first: a short run of a non-Python command still gets a drawn RSS line
        self._due = mono + (min(self.interval, 0.5) if mono - self._start < 10.0
                            else self.interval)
        rows = self.reader.processes()
        wall = time.time()
        # An agent that said "exit" leaves a process still ending for a moment: not a new one.
        watched = {p.pid for p in rows if p.how != "external"
                   and (p.t_end is None or wall - p.t_end < 10.0)}
        tree = descendants(self.root) if self.follow else ([self.root] if alive(self.root)
                                                           else [])
        open_external = {p.pid for p in rows if p.how == "external" and p.t_end is None}
        for pid in tree:
            if pid in watched:
                continue
            stat = external_stat(pid)
            if stat is None:
                continue
            if pid not in open_external:
                ppid = parent_pid(pid)
                program, role = lineage.describe("external", pid, ppid)
                self.writer.register_process(ProcessInfo(
                    pid=pid, t_start=time.time(), how="external", ppid=ppid,
                    role="main" if pid == self.root else role, program=program))
            seq = self._seq[pid] = self._seq.get(pid, 0) + 1
            self.writer.write_snapshot(Snapshot(
                seq=seq, pid=pid, t=time.time(), mono=mono, reason="external", duration_s=0.0,
                phase=None, traced=False, process=stat, source="external"))
        for p in rows:
            if p.t_end is None and p.pid != self.root and not alive(p.pid):
                self.writer.end_process(p.pid, time.time(), "gone")
        self._note_replacements(self.reader.processes())

    def _note_replacements(self, rows: list[ProcessInfo]) -> None:
        """A new process of the same parent and role as one that ended before it started
        replaced it (a recycled worker, a restarted helper)."""
        ended = [p for p in rows if p.t_end is not None and p.id not in self._replaced
                 and p.how != "external"]
        for p in rows:
            if p.id is None or p.id in self._known:
                continue
            self._known.add(p.id)
            if p.how == "root" or p.ppid is None:
                continue
            old = next((e for e in ended if e.ppid == p.ppid and e.role == p.role
                        and e.t_end is not None and e.t_end <= p.t_start + 1.0
                        and e.id != p.id), None)
            if old is None or old.id is None:
                continue
            self._replaced.add(old.id)
            ended.remove(old)
            self.writer.write_event(p.pid, p.t_start, "replaced",
                                    f"pid {p.pid} replaced pid {old.pid} ({p.role} of {p.ppid})")


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(512)
        return int(stat.rsplit(b")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
