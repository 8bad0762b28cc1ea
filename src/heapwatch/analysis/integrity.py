"""What a run's store lost or could not give back, said once for every report.

A snapshot the agent took but could not store (a full disk, a refused write) leaves a
gap in its process's sequence numbers, and usually an ``error`` event naming where it
failed; rows the reader could not use are counted in ``RunData.skipped``. Snapshots that
``--retain`` thinned leave gaps too: they are counted in the store's retention meta, and
are not lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from heapwatch.model import Snapshot
from heapwatch.retention import dropped
from heapwatch.store import RunData


def lost_snapshots(snapshots: list[Snapshot], thinned: Mapping[int, int] | None = None) -> int:
    """Snapshots numbered but missing: each agent numbers its snapshots 1, 2, 3... and a
    failed write leaves its number unused; ``thinned`` (per pid) were dropped on purpose."""
    by_pid: dict[int, set[int]] = {}
    for s in snapshots:
        if s.source == "agent" and s.seq > 0:
            by_pid.setdefault(s.pid, set()).add(s.seq)
    thinned = thinned or {}
    return sum(max(0, max(seqs) - len(seqs) - thinned.get(pid, 0))
               for pid, seqs in by_pid.items())


def store_problems(run: RunData) -> list[str]:
    """One line per kind of loss, most important first (report.json ``agent.errors``)."""
    out: list[str] = []
    lost = lost_snapshots(run.snapshots, {pid: n for pid, (n, _, _) in dropped(run.meta).items()})
    failed = sorted({m for _, _, kind, m in run.events
                     if kind == "error" and m.startswith("snapshot:")})
    if lost:
        out.append(f"{lost} snapshot(s) were lost: taken but not stored"
                   + (f" ({'; '.join(failed[:3])})" if failed else ""))
    elif failed:
        out.append(f"snapshots failed: {'; '.join(failed[:3])}")
    if any((run.meta.get(k) or {}).get("disk_full") for k in ("launch", "attach")):
        out.append("the disk was full when the run ended: snapshots taken after it filled "
                   "were not stored" + ("" if run.meta.get("agent_stopped") else
                                        ", the agent's final one included"))
    summary = run.skipped_summary()
    if summary:
        out.append(summary)
    return out


def agent_errors(run: RunData, snapshots: Iterable[Snapshot], pid: int | None = None
                 ) -> list[str]:
    """report.json ``agent.errors``: what the store lost first, then what the collectors of
    ``snapshots`` recorded and the agent's own failures (its thread died, a snapshot could
    not be taken: ``error`` events of ``pid``, any process when None) — type and place of
    each error, never its message."""
    failed = {m for epid, _, kind, m in run.events
              if kind == "error" and (pid is None or epid == pid) and not m.startswith("snapshot:")}
    return store_problems(run) + sorted({e for s in snapshots for e in s.errors} | failed)
