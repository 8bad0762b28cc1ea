"""The run store: one SQLite file per run.

WAL mode and one transaction per snapshot, so a run killed at any moment keeps every
finished snapshot and a reader can follow a live run. Strings that repeat (type names,
sites, container keys) are interned in ``names``. The schema is versioned in ``meta``;
a file from another version is refused with a clear error, never guessed at (version 1
stores, from before runs had several processes, are still read).

A run is a tree of processes: every watched process writes its own stream (snapshots by
pid) through its own connection, and its lifecycle into ``processes`` and ``events``.
Many writers share the file safely: WAL, ``BEGIN IMMEDIATE`` (a transaction takes the
write lock up front, so two writers never deadlock upgrading), a busy timeout, and names
interned inside the writing transaction (``INSERT OR IGNORE`` then read back), so ids are
the same for every process.

The writer is used inside the target by the agent, so this module needs the stdlib only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from heapwatch.errors import SchemaError, StoreError
from heapwatch.model import (
    READABLE_SCHEMAS,
    SCHEMA_VERSION,
    ContainerStat,
    ItemSample,
    Mark,
    ProcessInfo,
    ProcessStat,
    Snapshot,
)

STORE_NAME = "run.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL, mono REAL NOT NULL,
    reason TEXT NOT NULL, duration_s REAL NOT NULL, phase TEXT, traced INTEGER NOT NULL,
    source TEXT NOT NULL,
    rss INTEGER NOT NULL, fds INTEGER, threads INTEGER, children INTEGER,
    allocated_blocks INTEGER, gc_objects INTEGER, gc_collections TEXT,
    traced_current INTEGER, traced_peak INTEGER, tracemalloc_overhead INTEGER,
    errors TEXT, sockets INTEGER, tmp_files INTEGER, gc_garbage INTEGER
);
CREATE TABLE IF NOT EXISTS type_counts (
    snapshot_id INTEGER NOT NULL, name_id INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, name_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_stats (
    snapshot_id INTEGER NOT NULL, name_id INTEGER NOT NULL,
    count INTEGER NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, name_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS container_lens (
    snapshot_id INTEGER NOT NULL, key_id INTEGER NOT NULL, type_id INTEGER NOT NULL,
    length INTEGER NOT NULL, size INTEGER NOT NULL, path_id INTEGER,
    PRIMARY KEY (snapshot_id, key_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS item_samples (
    snapshot_id INTEGER NOT NULL, key_id INTEGER NOT NULL, item_type_id INTEGER NOT NULL,
    sampled INTEGER NOT NULL, site_id INTEGER, user_site_id INTEGER, item_bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS marks (
    id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, t REAL NOT NULL, phase TEXT NOT NULL,
    source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, t REAL NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processes (
    id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, ppid INTEGER, t_start REAL NOT NULL,
    how TEXT NOT NULL, role TEXT, program TEXT, control TEXT, python TEXT,
    t_end REAL, end_reason TEXT, exit_code INTEGER, exit_signal INTEGER);
CREATE INDEX IF NOT EXISTS processes_by_pid ON processes (pid);
"""
_PROCESS_COLUMNS = ("id, pid, ppid, t_start, how, role, program, control, python, t_end,"
                    " end_reason, exit_code, exit_signal")


def _process(row: tuple[Any, ...]) -> ProcessInfo:
    return ProcessInfo(id=row[0], pid=row[1], ppid=row[2], t_start=row[3], how=row[4],
                       role=row[5], program=row[6], control=row[7], python=row[8],
                       t_end=row[9], end_reason=row[10], exit_code=row[11],
                       exit_signal=row[12])


def _connect(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open run store {path}: {exc}") from None


def _check_version(conn: sqlite3.Connection, path: str, write: bool = False) -> int | None:
    """The file's schema version, None when it holds no schema yet; raise when it holds
    another kind of file, or a version this heapwatch cannot read (``write``: append to)."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        raise StoreError(f"{path} is not a heapwatch run store (not an SQLite file)") from None
    if not tables:
        return None
    if "meta" not in tables:
        raise StoreError(f"{path} is not a heapwatch run store (no meta table)")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        raise StoreError(f"{path} is not a heapwatch run store (no schema version)")
    try:
        version = int(row[0])
    except ValueError:
        raise SchemaError(f"{path} has an unknown schema version {row[0]!r}") from None
    if version > SCHEMA_VERSION or version not in READABLE_SCHEMAS:
        newer = "a newer" if version > SCHEMA_VERSION else "an unknown"
        raise SchemaError(
            f"{path} was written by {newer} heapwatch (store schema {version}; this one reads "
            f"{', '.join(map(str, READABLE_SCHEMAS))}): open it with the heapwatch version "
            f"that wrote it"
        )
    if write and version != SCHEMA_VERSION:
        raise SchemaError(
            f"{path} was written by an older heapwatch (store schema {version}): it can be "
            f"read and reported, but not recorded into; start a new run directory"
        )
    return version


class Writer:
    """Appends to a run store. Thread-safe; every public method is one transaction.

    >>> w = Writer("/tmp/x/run.sqlite", meta={"run": {...}})   # doctest: +SKIP
    >>> w.write_snapshot(snapshot); w.close()                   # doctest: +SKIP
    """

    def __init__(self, path: str, meta: dict[str, Any] | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._names: dict[str, int] = {}
        self._cur: sqlite3.Cursor | None = None
        self._parked = False  # connection closed for a fork; the next write reopens it
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreError(f"cannot create run store {path}: directory {parent} does not exist")
        self._conn: sqlite3.Connection | None = _connect(path)
        try:
            existing = _check_version(self._conn, path, write=True) is not None
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            if not existing:
                with self._txn() as cur:
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            cur.execute(stmt)
                    cur.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
            if meta:
                self.set_meta(meta)
        except sqlite3.Error as exc:
            self._conn.close()
            self._conn = None
            raise StoreError(f"cannot write run store {path}: {exc}") from None
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # -- plumbing -----------------------------------------------------------------------
    class _Txn:
        def __init__(self, cur: sqlite3.Cursor) -> None:
            self.cur = cur

        def __enter__(self) -> sqlite3.Cursor:
            self.cur.execute("BEGIN IMMEDIATE")
            return self.cur

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            self.cur.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _txn(self) -> Writer._Txn:
        if self._conn is None and self._parked:
            self._conn = _connect(self.path)
            self._parked = False
        if self._conn is None:
            raise StoreError(f"run store {self.path} is closed")
        # One cursor for the writer's life: sqlite3 keeps a weak reference to every cursor
        # made, and inside a target those weakrefs looked like a growing type.
        if self._cur is None:
            self._cur = self._conn.cursor()
        return Writer._Txn(self._cur)

    def _name_ids(self, cur: sqlite3.Cursor, names: Iterable[str | None]) -> None:
        missing = {n for n in names if n is not None and n not in self._names}
        if not missing:
            return
        cur.executemany("INSERT OR IGNORE INTO names(name) VALUES (?)", [(n,) for n in missing])
        for chunk in _chunks(sorted(missing), 500):
            marks = ",".join("?" * len(chunk))
            for name_id, name in cur.execute(
                f"SELECT id, name FROM names WHERE name IN ({marks})", chunk
            ):
                self._names[name] = name_id

    def _id(self, name: str | None) -> int | None:
        return None if name is None else self._names[name]

    # -- writes -------------------------------------------------------------------------
    def set_meta(self, values: dict[str, Any]) -> None:
        with self._lock, self._txn() as cur:
            cur.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()],
            )

    def write_snapshot(self, snap: Snapshot) -> int:
        p = snap.process
        with self._lock, self._txn() as cur:
            names: list[str | None] = list(snap.types)
            names.extend(snap.sites)
            for c in snap.containers:
                names.extend((c.key, c.type, c.path))
            for it in snap.items:
                names.extend((it.key, it.item_type, it.site, it.user_site))
            self._name_ids(cur, names)
            cur.execute(
                "INSERT INTO snapshots (pid, seq, t, mono, reason, duration_s, phase, traced,"
                " source, rss, fds, threads, children, allocated_blocks, gc_objects,"
                " gc_collections, traced_current, traced_peak, tracemalloc_overhead, errors,"
                " sockets, tmp_files, gc_garbage)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    snap.pid, snap.seq, snap.t, snap.mono, snap.reason, snap.duration_s,
                    snap.phase, int(snap.traced), snap.source, p.rss, p.fds, p.threads,
                    p.children, p.allocated_blocks, p.gc_objects,
                    json.dumps(list(p.gc_collections)), p.traced_current, p.traced_peak,
                    p.tracemalloc_overhead, json.dumps(list(snap.errors)) if snap.errors else None,
                    p.sockets, p.tmp_files, p.gc_garbage,
                ),
            )
            sid = cur.lastrowid
            ids = self._names
            cur.executemany(
                "INSERT INTO type_counts VALUES (?,?,?)",
                [(sid, ids[n], c) for n, c in snap.types.items()],
            )
            cur.executemany(
                "INSERT INTO site_stats VALUES (?,?,?,?)",
                [(sid, ids[n], c, s) for n, (c, s) in snap.sites.items()],
            )
            cur.executemany(
                "INSERT OR REPLACE INTO container_lens VALUES (?,?,?,?,?,?)",
                [
                    (sid, ids[c.key], ids[c.type], c.length, c.size, self._id(c.path))
                    for c in snap.containers
                ],
            )
            cur.executemany(
                "INSERT INTO item_samples VALUES (?,?,?,?,?,?,?)",
                [
                    (sid, ids[i.key], ids[i.item_type], i.sampled, self._id(i.site),
                     self._id(i.user_site), i.item_bytes)
                    for i in snap.items
                ],
            )
            assert sid is not None
            return sid

    def write_mark(self, mark: Mark) -> None:
        with self._lock, self._txn() as cur:
            cur.execute(
                "INSERT INTO marks (pid, t, phase, source) VALUES (?,?,?,?)",
                (mark.pid, mark.t, mark.phase, mark.source),
            )

    def write_event(self, pid: int, t: float, kind: str, message: str) -> None:
        with self._lock, self._txn() as cur:
            cur.execute(
                "INSERT INTO events (pid, t, kind, message) VALUES (?,?,?,?)",
                (pid, t, kind, message[:2000]),
            )

    # -- the processes of a run ---------------------------------------------------------------
    def register_process(self, info: ProcessInfo, supersedes: str = "gone") -> int:
        """Record that ``info.pid`` is watched from now on (lifecycle event ``started``);
        return its row id. A row recorded from outside for the same pid (seen before its
        agent checked in) becomes this one; another open row of the pid is ended with
        ``supersedes`` (``exec``: the process replaced its image; ``gone``: the pid was
        reused after an exit nobody saw)."""
        with self._lock, self._txn() as cur:
            open_rows = cur.execute(
                "SELECT id, how, t_start FROM processes WHERE pid=? AND t_end IS NULL"
                " ORDER BY id", (info.pid,)).fetchall()
            row_id: int | None = None
            if info.how == "external":
                # Seen from outside while (or just after) its agent registered: the agent's
                # row stands.
                agent = [rid for rid, how, _ in open_rows if how != "external"]
                if agent:
                    return int(agent[-1])
            for rid, how, _t_start in open_rows:
                if how == "external" and info.how != "external" and row_id is None:
                    row_id = rid
                    cur.execute(
                        "UPDATE processes SET ppid=COALESCE(?, ppid), how=?, role=?, program=?,"
                        " control=?, python=? WHERE id=?",
                        (info.ppid, info.how, info.role, info.program, info.control,
                         info.python, rid))
                else:
                    cur.execute("UPDATE processes SET t_end=?, end_reason=? WHERE id=?",
                                (info.t_start, supersedes, rid))
                    cur.execute("INSERT INTO events (pid, t, kind, message) VALUES (?,?,?,?)",
                                (info.pid, info.t_start, "exited", supersedes))
            if row_id is None:
                cur.execute(
                    f"INSERT INTO processes ({_PROCESS_COLUMNS}) VALUES"
                    " (NULL,?,?,?,?,?,?,?,?,NULL,NULL,NULL,NULL)",
                    (info.pid, info.ppid, info.t_start, info.how, info.role, info.program,
                     info.control, info.python))
                row_id = cur.lastrowid
            what = " ".join(x for x in (info.how, info.role or "", info.program or "") if x)
            cur.execute("INSERT INTO events (pid, t, kind, message) VALUES (?,?,?,?)",
                        (info.pid, info.t_start, "started",
                         what + (f" (parent {info.ppid})" if info.ppid else "")))
            assert row_id is not None
            return row_id

    def end_process(self, pid: int, t: float, reason: str, exit_code: int | None = None,
                    exit_signal: int | None = None) -> None:
        """Record the end of the latest row of ``pid`` (lifecycle event ``exited``). An
        exit code or signal learnt later (the launcher reaps the command after its agent
        said ``exit``) is added to a row already ended."""
        with self._lock, self._txn() as cur:
            row = cur.execute("SELECT id, t_end FROM processes WHERE pid=? ORDER BY id DESC"
                              " LIMIT 1", (pid,)).fetchone()
            if row is None:
                return
            if row[1] is None:
                cur.execute("UPDATE processes SET t_end=?, end_reason=?, exit_code=?,"
                            " exit_signal=? WHERE id=?",
                            (t, reason, exit_code, exit_signal, row[0]))
            elif exit_code is not None or exit_signal is not None:
                cur.execute("UPDATE processes SET exit_code=COALESCE(exit_code, ?),"
                            " exit_signal=COALESCE(exit_signal, ?) WHERE id=?",
                            (exit_code, exit_signal, row[0]))
            else:
                return
            how = (f"signal {exit_signal}" if exit_signal is not None else
                   f"code {exit_code}" if exit_code is not None else "code not observable")
            cur.execute("INSERT INTO events (pid, t, kind, message) VALUES (?,?,?,?)",
                        (pid, t, "exited", f"{reason}, {how}"))

    # -- fork ---------------------------------------------------------------------------------
    def suspend(self, timeout: float) -> bool:
        """Before a fork: wait (at most ``timeout`` s) for the write in flight, then close the
        connection, so that the child inherits no SQLite state: no mutex held by a call in
        flight, nothing of the parent's file locks in SQLite's per-process lock table (a
        connection opened in the child would trust them). False when the write did not end
        in time (then nothing changed). Holds the writer's lock until :meth:`resume`; the
        next write reopens the connection."""
        if not self._lock.acquire(timeout=timeout):
            return False
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None
            self._cur = None
            self._parked = True
        return True

    def resume(self) -> None:
        """After the fork, in the parent: writes go on (the connection reopens on the next)."""
        try:
            self._lock.release()
        except RuntimeError:
            pass

    def close(self) -> None:
        with self._lock:
            self._parked = False
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
                    self._cur = None

    def internal_ids(self) -> set[int]:
        """Ids of the connection's own containers (its list of cursor weakrefs), which the
        agent must not count as the target's."""
        import gc

        if self._conn is None:
            return set()
        return {id(r) for r in gc.get_referents(self._conn) if isinstance(r, (list, dict))}

    def abandon(self) -> None:
        """Forget the connection without touching it (after fork: it belongs to the parent)."""
        self._conn = None
        self._cur = None
        self._parked = False

    @property
    def closed(self) -> bool:
        return self._conn is None and not self._parked


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class RunData:
    """A whole run, loaded for analysis."""

    path: str
    meta: dict[str, Any]
    snapshots: list[Snapshot]
    marks: list[Mark] = field(default_factory=list)
    events: list[tuple[int, float, str, str]] = field(default_factory=list)
    processes: list[ProcessInfo] = field(default_factory=list)  # empty in version 1 stores
    schema: int = SCHEMA_VERSION

    @property
    def agent_snapshots(self) -> list[Snapshot]:
        return [s for s in self.snapshots if s.source == "agent"]


def open_run(path: str) -> RunData:
    """Read a run store (also one still being written, or left by a killed target).

    ``path`` is the store file or the run directory holding ``run.sqlite``.
    """
    if os.path.isdir(path):
        path = os.path.join(path, STORE_NAME)
    if not os.path.exists(path):
        raise StoreError(f"no run store at {path}: give a run directory or its {STORE_NAME}")
    conn = _connect(path)
    try:
        version = _check_version(conn, path)
        if version is None:
            raise StoreError(f"{path} is empty: the run never started writing")
        return _load(conn, path, version)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read run store {path}: {exc}") from None
    finally:
        conn.close()


def _load(conn: sqlite3.Connection, path: str, version: int) -> RunData:
    meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    names = dict(conn.execute("SELECT id, name FROM names"))
    types: dict[int, dict[str, int]] = {}
    for sid, nid, count in conn.execute("SELECT snapshot_id, name_id, count FROM type_counts"):
        types.setdefault(sid, {})[names[nid]] = count
    sites: dict[int, dict[str, tuple[int, int]]] = {}
    for sid, nid, count, size in conn.execute(
        "SELECT snapshot_id, name_id, count, size FROM site_stats"
    ):
        sites.setdefault(sid, {})[names[nid]] = (count, size)
    conts: dict[int, list[ContainerStat]] = {}
    for sid, kid, tid, length, size, pid_ in conn.execute(
        "SELECT snapshot_id, key_id, type_id, length, size, path_id FROM container_lens"
    ):
        conts.setdefault(sid, []).append(
            ContainerStat(names[kid], names[tid], length, size, names.get(pid_))
        )
    items: dict[int, list[ItemSample]] = {}
    for sid, kid, tid, sampled, site, usite, nbytes in conn.execute(
        "SELECT snapshot_id, key_id, item_type_id, sampled, site_id, user_site_id, item_bytes"
        " FROM item_samples"
    ):
        items.setdefault(sid, []).append(
            ItemSample(names[kid], names[tid], sampled, names.get(site), names.get(usite), nbytes)
        )
    snaps = []
    for row in conn.execute(
        "SELECT id, pid, seq, t, mono, reason, duration_s, phase, traced, source, rss, fds,"
        " threads, children, allocated_blocks, gc_objects, gc_collections, traced_current,"
        " traced_peak, tracemalloc_overhead, errors, sockets, tmp_files, gc_garbage"
        " FROM snapshots ORDER BY t, id"
    ):
        sid = row[0]
        proc = ProcessStat(
            rss=row[10], fds=row[11], threads=row[12], children=row[13],
            allocated_blocks=row[14], gc_objects=row[15],
            gc_collections=tuple(json.loads(row[16] or "[]")), traced_current=row[17],
            traced_peak=row[18], tracemalloc_overhead=row[19], sockets=row[21],
            tmp_files=row[22], gc_garbage=row[23],
        )
        snaps.append(
            Snapshot(
                seq=row[2], pid=row[1], t=row[3], mono=row[4], reason=row[5],
                duration_s=row[6], phase=row[7], traced=bool(row[8]), process=proc,
                types=types.get(sid, {}), sites=sites.get(sid, {}),
                containers=tuple(conts.get(sid, ())), items=tuple(items.get(sid, ())),
                errors=tuple(json.loads(row[20])) if row[20] else (), source=row[9],
            )
        )
    marks = [
        Mark(t=t, phase=phase, pid=pid, source=src)
        for pid, t, phase, src in conn.execute("SELECT pid, t, phase, source FROM marks ORDER BY t")
    ]
    events = list(conn.execute("SELECT pid, t, kind, message FROM events ORDER BY t, id"))
    procs: list[ProcessInfo] = []
    if version >= 2:
        procs = [_process(r) for r in conn.execute(
            f"SELECT {_PROCESS_COLUMNS} FROM processes ORDER BY t_start, id")]
    return RunData(path=path, meta=meta, snapshots=snaps, marks=marks, events=events,
                   processes=procs, schema=version)


class LiveReader:
    """Cheap looks at a run that is being written (for the CLI's progress line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn = _connect(path)

    def meta(self, key: str) -> Any:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return json.loads(row[0]) if row else None

    def progress(self, source: str = "agent") -> tuple[int, int | None, str | None]:
        """(snapshots, latest RSS, the container that grew most since the first snapshot)."""
        try:
            rows = self._conn.execute(
                "SELECT id, rss FROM snapshots WHERE source=? ORDER BY id", (source,)
            ).fetchall()
            if not rows:
                return 0, None, None
            first, last = rows[0][0], rows[-1][0]
            grower = self._conn.execute(
                "SELECT n.name, b.length - COALESCE(a.length, 0) AS d FROM container_lens b"
                " JOIN names n ON n.id = b.key_id LEFT JOIN container_lens a"
                " ON a.key_id = b.key_id AND a.snapshot_id = ?"
                " WHERE b.snapshot_id = ? ORDER BY d DESC LIMIT 1",
                (first, last),
            ).fetchone()
        except sqlite3.Error:
            return 0, None, None
        top = f"{grower[0]} +{grower[1]}" if grower and grower[1] > 0 else None
        return len(rows), rows[-1][1], top

    def processes(self) -> list[ProcessInfo]:
        """The processes of the run so far (none while it has not written any)."""
        try:
            return [_process(r) for r in self._conn.execute(
                f"SELECT {_PROCESS_COLUMNS} FROM processes ORDER BY id")]
        except sqlite3.Error:
            return []

    def close(self) -> None:
        self._conn.close()
