"""The SQLite history backend: one file, the default (``--history soak-history.sqlite``)."""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from heapwatch.errors import StoreError
from heapwatch.history import HISTORY_VERSION, RunRecord
from heapwatch.rundir import private_file, shown

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, run_dir TEXT, command TEXT, verdict TEXT NOT NULL,
    passed INTEGER NOT NULL, duration_s REAL, service TEXT, host TEXT);
CREATE TABLE IF NOT EXISTS findings (
    run_id INTEGER NOT NULL, fingerprint TEXT NOT NULL, kind TEXT, severity TEXT,
    title TEXT, path TEXT, per_hour REAL, unit TEXT);
"""
# Columns added since the first history files; older files get them on open.
_ADDED = (("runs", "service", "TEXT"), ("runs", "host", "TEXT"))
_FINDING_COLS = ("fingerprint", "kind", "severity", "title", "path", "per_hour", "unit")


class SqliteHistory:
    """Runs and findings in one SQLite file; writers serialize on the file's lock."""

    def __init__(self, path: str) -> None:
        self.where = shown(path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreError(f"cannot create history {self.where}: directory {shown(parent)} "
                             f"does not exist")
        try:
            # a new file is private (0600) like a run store; an existing one (or a link the
            # user made) is left as it is
            if not os.path.lexists(path):
                private_file(path)
        except OSError as exc:
            raise StoreError(f"cannot create history {self.where}: {exc}") from None
        try:
            self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open history {self.where}: {exc}") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"cannot use history {self.where}: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        conn = self._conn
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "runs" not in tables:
            raise StoreError(f"{self.where} is not a heapwatch history file")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            row = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('version', ?)", (str(HISTORY_VERSION),))
            elif int(row[0]) != HISTORY_VERSION:
                raise StoreError(f"{self.where} is a history of version {row[0]}; this "
                                 f"heapwatch reads {HISTORY_VERSION}")
            for table, column, decl in _ADDED:
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            conn.execute("CREATE INDEX IF NOT EXISTS runs_service ON runs(service, id)")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _findings(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            f"SELECT {', '.join(_FINDING_COLS)} FROM findings WHERE run_id=?", (run_id,))
        return [dict(zip(_FINDING_COLS, r, strict=True)) for r in rows]

    def last_run(self, service: str) -> tuple[int, list[dict[str, Any]]] | None:
        row = self._conn.execute(
            "SELECT id FROM runs WHERE service=? OR service IS NULL ORDER BY id DESC LIMIT 1",
            (service,)).fetchone()
        return None if row is None else (row[0], self._findings(row[0]))

    def add_run(self, run: RunRecord, findings: list[dict[str, Any]]) -> int:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO runs (t, run_dir, command, verdict, passed, duration_s, service,"
                    " host) VALUES (?,?,?,?,?,?,?,?)",
                    (run.t, run.run_dir, json.dumps(run.command), run.verdict, int(run.passed),
                     run.duration_s, run.service, run.host))
                run_id = cur.lastrowid
                conn.executemany(
                    "INSERT INTO findings VALUES (?,?,?,?,?,?,?,?)",
                    [(run_id, f["fingerprint"], f["kind"], f["severity"], f["title"],
                      f.get("path"), f["growth"]["per_hour"], f["growth"]["unit"])
                     for f in findings])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the run in history {self.where}: {exc}") from None
        assert run_id is not None
        return run_id

    def runs(self, last: int, service: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE r.service=?", [service]) if service else ("", [])
        rows = self._conn.execute(
            "SELECT id, t, verdict, passed, duration_s, command, service, host FROM ("
            " SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.service ORDER BY r.id DESC) AS n"
            f" FROM runs r {where}) WHERE n <= ? ORDER BY id", (*args, last)).fetchall()
        return [{"id": rid, "t": t, "verdict": verdict, "passed": bool(passed),
                 "duration_s": dur, "command": json.loads(cmd or "[]"), "service": svc,
                 "host": host, "findings": self._findings(rid)}
                for rid, t, verdict, passed, dur, cmd, svc, host in rows]

    def close(self) -> None:
        self._conn.close()
