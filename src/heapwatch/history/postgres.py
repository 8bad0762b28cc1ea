"""The PostgreSQL history backend (``--history postgresql://user@host/db``), psycopg 3.

One history for many services and hosts. Tables are prefixed ``heapwatch_`` so they can
live in a database that holds other things; the first user creates them under an
advisory lock (two soak jobs starting at once must not both try), every run is recorded
in one transaction, and ids come from an identity column, so concurrent writers never
collide.
"""

from __future__ import annotations

import json
from typing import Any

from heapwatch.errors import StoreError
from heapwatch.history import HISTORY_VERSION, RunRecord, safe_location

_LOCK_KEY = 0x6865617077  # "heapw": serializes schema setup across writers
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS heapwatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS heapwatch_runs ("
    " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, t DOUBLE PRECISION NOT NULL,"
    " run_dir TEXT, command TEXT, verdict TEXT NOT NULL, passed BOOLEAN NOT NULL,"
    " duration_s DOUBLE PRECISION, service TEXT, host TEXT)",
    "CREATE INDEX IF NOT EXISTS heapwatch_runs_service ON heapwatch_runs (service, id)",
    "CREATE TABLE IF NOT EXISTS heapwatch_findings ("
    " run_id BIGINT NOT NULL REFERENCES heapwatch_runs (id) ON DELETE CASCADE,"
    " fingerprint TEXT NOT NULL, kind TEXT, severity TEXT, title TEXT, path TEXT,"
    " per_hour DOUBLE PRECISION, unit TEXT)",
    "CREATE INDEX IF NOT EXISTS heapwatch_findings_run ON heapwatch_findings (run_id)",
)
_FINDING_COLS = ("fingerprint", "kind", "severity", "title", "path", "per_hour", "unit")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresHistory:
    """Runs and findings in a PostgreSQL database; one connection per use."""

    def __init__(self, url: str) -> None:
        self.where = safe_location(url)
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "a PostgreSQL history needs psycopg 3: pip install 'heapwatch[postgres]'"
            ) from None
        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(url, connect_timeout=10, autocommit=True,
                                         application_name="heapwatch")
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to history {self.where}: {_first_line(exc)}"
                             ) from None
        try:
            self._setup()
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreError(f"cannot use history {self.where}: {_first_line(exc)}") from None
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            for stmt in _SCHEMA:
                cur.execute(stmt)
            cur.execute("INSERT INTO heapwatch_meta VALUES ('version', %s)"
                        " ON CONFLICT (key) DO NOTHING", (str(HISTORY_VERSION),))
            cur.execute("SELECT value FROM heapwatch_meta WHERE key='version'")
            row = cur.fetchone()
        if row is None or int(row[0]) != HISTORY_VERSION:
            raise StoreError(f"{self.where} holds a heapwatch history of version "
                             f"{row[0] if row else '?'}; this heapwatch reads {HISTORY_VERSION}")

    def _findings(self, cur: Any, run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {r: [] for r in run_ids}
        if not run_ids:
            return out
        cur.execute(f"SELECT run_id, {', '.join(_FINDING_COLS)} FROM heapwatch_findings"
                    " WHERE run_id = ANY(%s) ORDER BY run_id", (run_ids,))
        for row in cur.fetchall():
            out[row[0]].append(dict(zip(_FINDING_COLS, row[1:], strict=True)))
        return out

    def last_run(self, service: str) -> tuple[int, list[dict[str, Any]]] | None:
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SELECT id FROM heapwatch_runs WHERE service = %s OR service IS NULL"
                            " ORDER BY id DESC LIMIT 1", (service,))
                row = cur.fetchone()
                if row is None:
                    return None
                return row[0], self._findings(cur, [row[0]])[row[0]]
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot read history {self.where}: {_first_line(exc)}") from None

    def add_run(self, run: RunRecord, findings: list[dict[str, Any]]) -> int:
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO heapwatch_runs (t, run_dir, command, verdict, passed,"
                    " duration_s, service, host) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                    (run.t, run.run_dir, json.dumps(run.command), run.verdict, run.passed,
                     run.duration_s, run.service, run.host))
                row = cur.fetchone()
                assert row is not None
                run_id: int = row[0]
                cur.executemany(
                    "INSERT INTO heapwatch_findings VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                    [(run_id, f["fingerprint"], f["kind"], f["severity"], f["title"],
                      f.get("path"), f["growth"]["per_hour"], f["growth"]["unit"])
                     for f in findings])
                return run_id
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot record the run in history {self.where}: "
                             f"{_first_line(exc)}") from None

    def runs(self, last: int, service: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE service = %s", [service]) if service else ("", [])
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute(
                    "SELECT id, t, verdict, passed, duration_s, command, service, host FROM ("
                    " SELECT *, ROW_NUMBER() OVER (PARTITION BY service ORDER BY id DESC) AS n"
                    f" FROM heapwatch_runs {where}) r WHERE n <= %s ORDER BY id",
                    (*args, last))
                rows = cur.fetchall()
                found = self._findings(cur, [r[0] for r in rows])
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot read history {self.where}: {_first_line(exc)}") from None
        return [{"id": rid, "t": t, "verdict": verdict, "passed": bool(passed),
                 "duration_s": dur, "command": json.loads(cmd or "[]"), "service": svc,
                 "host": host, "findings": found[rid]}
                for rid, t, verdict, passed, dur, cmd, svc, host in rows]

    def close(self) -> None:
        self._conn.close()
