"""History across soak runs (``--history FILE``): one SQLite file of runs and findings.

Each finding is known by its fingerprint (kind, owner path, type, site file), so the
next run can say which findings are new, still present, or gone, and how rates moved.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from heapwatch.errors import StoreError

HISTORY_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, run_dir TEXT, command TEXT, verdict TEXT NOT NULL,
    passed INTEGER NOT NULL, duration_s REAL);
CREATE TABLE IF NOT EXISTS findings (
    run_id INTEGER NOT NULL, fingerprint TEXT NOT NULL, kind TEXT, severity TEXT,
    title TEXT, path TEXT, per_hour REAL, unit TEXT);
"""


@dataclass(frozen=True)
class Comparison:
    previous_run: int | None
    status: dict[str, str]          # fingerprint -> new | still present
    previous_rate: dict[str, float]  # fingerprint -> per_hour last time
    gone: list[dict[str, Any]]       # findings of the previous run absent now

    def as_dict(self) -> dict[str, Any]:
        return {"previous_run": self.previous_run, "gone": self.gone}


def _open(path: str) -> sqlite3.Connection:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StoreError(f"cannot create history {path}: directory {parent} does not exist")
    try:
        conn = sqlite3.connect(path, timeout=10.0)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "runs" not in tables:
            raise StoreError(f"{path} is not a heapwatch history file")
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('version', ?)", (str(HISTORY_VERSION),))
            conn.commit()
        elif int(row[0]) != HISTORY_VERSION:
            raise StoreError(f"{path} is a history of version {row[0]}; this heapwatch reads "
                             f"{HISTORY_VERSION}")
        return conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot use history {path}: {exc}") from None


def compare(path: str, findings: list[dict[str, Any]]) -> Comparison:
    """Compare ``findings`` (report.json dicts) with the last run in the history."""
    if not os.path.exists(path):
        return Comparison(None, {f["fingerprint"]: "new" for f in findings}, {}, [])
    conn = _open(path)
    try:
        row = conn.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return Comparison(None, {f["fingerprint"]: "new" for f in findings}, {}, [])
        prev = {r[0]: {"fingerprint": r[0], "kind": r[1], "severity": r[2], "title": r[3],
                       "path": r[4], "per_hour": r[5], "unit": r[6]}
                for r in conn.execute("SELECT fingerprint, kind, severity, title, path,"
                                      " per_hour, unit FROM findings WHERE run_id=?", (row[0],))}
    finally:
        conn.close()
    now = {f["fingerprint"] for f in findings}
    return Comparison(
        previous_run=row[0],
        status={fp: "still present" if fp in prev else "new" for fp in now},
        previous_rate={fp: prev[fp]["per_hour"] for fp in now if fp in prev},
        gone=[p for fp, p in prev.items() if fp not in now],
    )


def record(path: str, run: dict[str, Any], verdict: str, passed: bool,
           findings: list[dict[str, Any]], run_dir: str) -> int:
    conn = _open(path)
    try:
        with conn:
            cur = conn.execute(
                "INSERT INTO runs (t, run_dir, command, verdict, passed, duration_s)"
                " VALUES (?,?,?,?,?,?)",
                (time.time(), run_dir, json.dumps(run.get("command") or []), verdict,
                 int(passed), run.get("duration_s")))
            run_id = cur.lastrowid
            conn.executemany(
                "INSERT INTO findings VALUES (?,?,?,?,?,?,?,?)",
                [(run_id, f["fingerprint"], f["kind"], f["severity"], f["title"], f.get("path"),
                  f["growth"]["per_hour"], f["growth"]["unit"]) for f in findings])
        assert run_id is not None
        return run_id
    finally:
        conn.close()


def recent(path: str, last: int = 10) -> list[dict[str, Any]]:
    """The last ``last`` runs, oldest first, each with its findings."""
    if not os.path.exists(path):
        raise StoreError(f"no history at {path}")
    conn = _open(path)
    try:
        runs = conn.execute("SELECT id, t, verdict, passed, duration_s, command FROM runs"
                            " ORDER BY id DESC LIMIT ?", (last,)).fetchall()
        out = []
        for rid, t, verdict, passed, dur, cmd in reversed(runs):
            fs = [{"fingerprint": r[0], "kind": r[1], "severity": r[2], "title": r[3],
                   "per_hour": r[4], "unit": r[5]}
                  for r in conn.execute("SELECT fingerprint, kind, severity, title, per_hour, unit"
                                        " FROM findings WHERE run_id=?", (rid,))]
            out.append({"id": rid, "t": t, "verdict": verdict, "passed": bool(passed),
                        "duration_s": dur, "command": json.loads(cmd or "[]"), "findings": fs})
        return out
    finally:
        conn.close()
