"""Retention for long-running recordings (``--retain WINDOW``): keep every snapshot of
the last WINDOW and thin older ones to at most ``old_points`` per process, so the store
of a service watched for weeks stops growing (SQLite reuses the freed pages).

Old deltas are dropped and old keyframes thinned (a keyframe stands alone; see
heapwatch.keyframes), never a keyframe that a kept delta is built on. Opt-in only:
``run`` and ``soak`` keep every finished snapshot unless asked. What was
dropped is recorded in the store's ``retention`` meta (per pid: snapshots, their pause
sum, their errors) and stated in the report. The item samples of a dropped snapshot move
to the next kept one, so what a container's items are and where they were allocated is
not forgotten.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from heapwatch.durations import format_duration, parse_duration
from heapwatch.errors import StoreError, UsageError
from heapwatch.rundir import shown

META_KEY = "retention"
_TABLES = ("type_counts", "site_stats", "container_lens")
_BATCH = 2000  # snapshots dropped per transaction: the agent's writes wait meanwhile


@dataclass(frozen=True)
class Retention:
    window_s: float
    old_points: int = 240

    def as_meta(self) -> dict[str, Any]:
        return {"window_s": self.window_s, "old_points": self.old_points}


def parse_retain(text: str) -> Retention:
    """``--retain 1h``: the window kept at full resolution (at least one minute)."""
    try:
        window = parse_duration(text)
    except Exception:
        raise UsageError(f"invalid --retain {text!r}: give the window kept in full, e.g. 1h"
                         ) from None
    if window < 60:
        raise UsageError(f"invalid --retain {text!r}: the window must be at least 1m")
    return Retention(window)


def _keep(times: list[float], points: int) -> set[int]:
    """Indexes of ``times`` kept when thinning them to about ``points`` evenly spaced
    ones; the first and last always stay."""
    if len(times) <= points:
        return set(range(len(times)))
    spacing = (times[-1] - times[0]) / max(1, points - 1)
    kept = {0, len(times) - 1}
    last = times[0]
    for i, t in enumerate(times[1:-1], 1):
        if t - last >= spacing:
            kept.add(i)
            last = t
    return kept


def apply(store: str, policy: Retention, now: float | None = None) -> int:
    """Thin the snapshots of ``store`` older than the window; return how many were
    dropped. Safe while the agent writes (one short transaction per batch)."""
    now = time.time() if now is None else now
    cutoff = now - policy.window_s
    try:
        conn = sqlite3.connect(store, timeout=30.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open run store {shown(store)}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        dropped_now = 0
        while True:
            n = _apply_batch(conn, policy, cutoff)
            dropped_now += n
            if n < _BATCH:
                return dropped_now
    except sqlite3.Error as exc:
        raise StoreError(f"cannot thin run store {shown(store)}: {exc}") from None
    finally:
        conn.close()


def _apply_batch(conn: sqlite3.Connection, policy: Retention, cutoff: float) -> int:
    """Old deltas go; old keyframes are thinned, except those a kept delta is built on."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (META_KEY,)).fetchone()
        try:
            meta: dict[str, Any] = json.loads(row[0]) if row else {}
        except (TypeError, ValueError):
            meta = {}
        if not isinstance(meta, dict):  # a damaged entry: what it said is lost, go on
            meta = {}
        dropped_meta: dict[str, list[float]] = {
            str(pid): list(v) for pid, v in dropped({META_KEY: meta}).items()}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(snapshots)")}
        base = "base_id" if "base_id" in columns else "NULL"
        drops: list[int] = []
        moves: list[tuple[int, int]] = []  # (dropped id, kept id its item samples move to)
        pids = [r[0] for r in conn.execute(
            "SELECT DISTINCT pid FROM snapshots WHERE source='agent' AND t < ?", (cutoff,))]
        for pid in pids:
            rows = conn.execute(
                f"SELECT id, t, duration_s, errors, {base} FROM snapshots WHERE pid=? AND"
                " source='agent' AND t < ? ORDER BY t, id", (pid, cutoff)).fetchall()
            newer = conn.execute(
                f"SELECT MIN(id), {'MIN' if base == 'NULL' else 'GROUP_CONCAT'}({base})"
                " FROM snapshots WHERE pid=? AND source='agent' AND t >= ?",
                (pid, cutoff)).fetchone()
            protected = {int(b) for b in str(newer[1] or "").split(",") if b}
            frames = [i for i, r in enumerate(rows) if r[4] is None]
            kept = {frames[i] for i in _keep([rows[i][1] for i in frames], policy.old_points)}
            kept |= {i for i in frames if rows[i][0] in protected}
            acc = dropped_meta.setdefault(str(pid), [0, 0.0, 0])
            next_kept = newer[0]
            for i in range(len(rows) - 1, -1, -1):
                if i in kept:
                    next_kept = rows[i][0]
                    continue
                if len(drops) >= _BATCH:
                    continue
                sid, _, pause, errors, _ = rows[i]
                drops.append(sid)
                if next_kept is not None:
                    moves.append((sid, next_kept))
                acc[0] += 1
                acc[1] += pause if isinstance(pause, (int, float)) else 0.0
                acc[2] += _error_count(errors)
        for sid, to in moves:
            conn.execute("UPDATE item_samples SET snapshot_id=? WHERE snapshot_id=?", (to, sid))
        for i in range(0, len(drops), 500):
            chunk = drops[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table} WHERE snapshot_id IN ({marks})", chunk)
            conn.execute(f"DELETE FROM item_samples WHERE snapshot_id IN ({marks})", chunk)
            conn.execute(f"DELETE FROM snapshots WHERE id IN ({marks})", chunk)
        meta.update(policy.as_meta())
        meta["dropped"] = {pid: v for pid, v in dropped_meta.items() if v[0]}
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                     (META_KEY, json.dumps(meta, sort_keys=True)))
        conn.execute("COMMIT")
        return len(drops)
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _error_count(text: Any) -> int:
    """How many errors a snapshot's ``errors`` column lists (0 for a damaged value)."""
    try:
        value = json.loads(text) if text else []
    except (TypeError, ValueError):
        return 0
    return len(value) if isinstance(value, list) else 0


def dropped(meta: dict[str, Any]) -> dict[int, tuple[int, float, int]]:
    """What retention dropped per pid: (snapshots, their pause sum, their errors); an
    entry a damaged store holds in another shape is left out."""
    info = meta.get(META_KEY)
    per_pid = info.get("dropped") if isinstance(info, dict) else None
    out: dict[int, tuple[int, float, int]] = {}
    for pid, v in (per_pid.items() if isinstance(per_pid, dict) else ()):
        try:
            n, pause, errors = v
            out[int(pid)] = (int(n), float(pause), int(errors))
        except (TypeError, ValueError, OverflowError):
            continue
    return out


def note(meta: dict[str, Any]) -> str | None:
    """The report's sentence about retention, when the run had it."""
    info = meta.get(META_KEY)
    if not info or not isinstance(info, dict):
        return None
    n = sum(v[0] for v in dropped(meta).values())
    try:
        window = format_duration(float(info.get("window_s", 0)))
    except (TypeError, ValueError, OverflowError):
        window = "?"
    return (f"Long-running mode (--retain {window}): snapshots older than {window} are thinned "
            f"to at most {info.get('old_points')} per process; {n:,} were dropped, so early "
            f"figures are coarser than recent ones.")
