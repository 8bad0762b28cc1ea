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

A write that fails costs only itself (rolled back with the name ids it looked up and the
keyframe it would have been); the reader checks every value it hands on and skips, counts
and names what it cannot use.

Type counts and container lengths are written as keyframes and deltas (see
heapwatch.keyframes): a delta's ``base_id`` names its keyframe, and a delta whose keyframe
cannot be read is skipped and counted like any damaged row.

The writer is used inside the target by the agent, so this module needs the stdlib only.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import threading
from collections import ChainMap, Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.errors import SchemaError, StoreError, StoreFullError
from heapwatch.keyframes import CONTAINER_GONE, Keyframes, Plan, rebuild
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
from heapwatch.rundir import O_NOFOLLOW, private_file, shown
from heapwatch.rundir import STORE_NAME as STORE_NAME

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
    errors TEXT, sockets INTEGER, tmp_files INTEGER, gc_garbage INTEGER, cpu_s REAL,
    base_id INTEGER, alloc_bytes INTEGER
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
    length INTEGER NOT NULL, size INTEGER NOT NULL, path_id INTEGER, bound INTEGER,
    PRIMARY KEY (snapshot_id, key_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS item_samples (
    snapshot_id INTEGER NOT NULL, key_id INTEGER NOT NULL, item_type_id INTEGER NOT NULL,
    sampled INTEGER NOT NULL, site_id INTEGER, user_site_id INTEGER, item_bytes INTEGER NOT NULL,
    inferred INTEGER, evidence INTEGER);
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
        raise StoreError(f"cannot open run store {shown(path)}: {exc}") from None


_URI_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-_.~")


def _uri(path: str, query: str) -> str:
    """An SQLite URI for ``path``: every byte of it percent-encoded but the safe ones."""
    raw = os.fsencode(os.path.abspath(path))
    return "file:" + "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in raw) + "?" + query


def _connect_read(path: str) -> tuple[sqlite3.Connection, bool]:
    """A connection that reads ``path`` also where it cannot be written (a read-only
    directory or mount): as usual, else ``immutable``. The flag is True when a -wal with
    the newest data exists that the immutable connection cannot see (SQLite reads a -wal
    only with its -shm or with write access to the directory)."""
    first: Exception | None = None
    for target, uri in ((path, False), (_uri(path, "immutable=1"), True)):
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(target, timeout=10.0, check_same_thread=False,
                                   isolation_level=None, uri=uri)
            conn.text_factory = _decode
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            wal = path + "-wal"
            return conn, uri and os.path.exists(wal) and os.path.getsize(wal) > 0
        except _DAMAGE as exc:
            if conn is not None:
                conn.close()
            if first is None:
                first = exc
            if "not a database" in str(exc) or "malformed" in str(exc):
                break  # the file itself, not the access to it: another way will not help
    raise _unreadable(path, first) from None


def _unreadable(path: str, exc: BaseException | None) -> StoreError:
    if exc is not None and "not a database" in str(exc):
        return StoreError(f"{shown(path)} is not a heapwatch run store (not an SQLite file)")
    return StoreError(f"cannot read run store {shown(path)}: {exc}")


def storable(text: str) -> str:
    """``text`` as SQLite can hold it: surrogate-escaped bytes (a path the OS gave that is
    not UTF-8) become ``\\xNN`` escapes instead of failing the whole write."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")


# What a write that SQLite (or the binding of a value) refused raises. Anything else (a
# signal's exception, KeyboardInterrupt) rolls the transaction back and goes on up as it is.
_REFUSED = (sqlite3.Error, ValueError, TypeError, ArithmeticError, LookupError)

# What damage inside a file looks like to the reader (an error message of SQLite's can
# itself carry the damaged bytes).
_DAMAGE = (sqlite3.DatabaseError, UnicodeDecodeError)


def _decode(raw: bytes) -> str:
    """Text read back from a store: damaged bytes become U+FFFD, never an exception."""
    return raw.decode("utf-8", "replace")


def _store_error(exc: BaseException, path: str, doing: str) -> StoreError:
    """A failed write as a StoreError that says what to do; a full disk as StoreFullError."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in text
    ):
        return StoreFullError(f"cannot {doing} in {shown(path)}: the disk is full (every "
                              f"snapshot stored before is kept)")
    return StoreError(f"cannot {doing} in {shown(path)}: {text}")


def _check_version(conn: sqlite3.Connection, path: str, write: bool = False) -> int | None:
    """The file's schema version, None when it holds no schema yet; raise when it holds
    another kind of file, or a version this heapwatch cannot read (``write``: append to)."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except _DAMAGE as exc:
        raise _unreadable(path, exc) from None
    if not tables:
        return None
    if "meta" not in tables:
        raise StoreError(f"{shown(path)} is not a heapwatch run store (no meta table)")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        raise StoreError(f"{shown(path)} is not a heapwatch run store (no schema version)")
    try:
        version = int(row[0])
    except (ValueError, TypeError):
        raise SchemaError(f"{shown(path)} has an unknown schema version {row[0]!r}") from None
    if version > SCHEMA_VERSION or version not in READABLE_SCHEMAS:
        newer = "a newer" if version > SCHEMA_VERSION else "an unknown"
        raise SchemaError(
            f"{shown(path)} was written by {newer} heapwatch (store schema {version}; this one reads "
            f"{', '.join(map(str, READABLE_SCHEMAS))}): open it with the heapwatch version "
            f"that wrote it"
        )
    if write and version != SCHEMA_VERSION:
        raise SchemaError(
            f"{shown(path)} was written by an older heapwatch (store schema {version}): it can be "
            f"read and reported, but not recorded into; start a new run directory"
        )
    return version


class Writer:
    """Appends to a run store. Thread-safe; every public method is one transaction.

    A write that fails (a full disk, a value SQLite refuses) is rolled back whole, and so
    are the name ids it had looked up: it costs only itself, later writes go on as if it
    had not happened. ``failures`` counts them; the error raised is a ``StoreError``
    (``StoreFullError`` for a full disk, and then ``full`` is set).

    ``reserve`` bytes are set aside beside the store (``run.sqlite-reserve``) until
    :meth:`release_reserve`: room for the last metadata and the reports when the disk
    fills during the run.

    >>> w = Writer("/tmp/x/run.sqlite", meta={"run": {...}})   # doctest: +SKIP
    >>> w.write_snapshot(snapshot); w.close()                   # doctest: +SKIP
    """

    def __init__(self, path: str, meta: dict[str, Any] | None = None, reserve: int = 0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._names: dict[str, int] = {}  # committed ids only
        self._frames = Keyframes()  # committed keyframes only
        self._cur: sqlite3.Cursor | None = None
        self._parked = False  # connection closed for a fork; the next write reopens it
        self.failures = 0
        self.full = False
        self._reserve: str | None = None
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreError(f"cannot create run store {shown(path)}: directory "
                             f"{shown(parent)} does not exist")
        try:
            private_file(path)  # 0600 before SQLite opens it: its -wal/-shm take its mode
        except OSError as exc:
            raise StoreError(f"cannot create run store {shown(path)}: "
                             f"{exc.strerror or exc}") from None
        self._conn: sqlite3.Connection | None = _connect(path)
        try:
            existing = _check_version(self._conn, path, write=True) is not None
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            if existing:
                _add_columns(self._conn)
            else:
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
            raise _store_error(exc, path, "create the run store") from None
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        if reserve > 0:
            self._reserve = _set_aside(path + "-reserve", reserve)

    def release_reserve(self) -> bool:
        """Give the reserved room back to the filesystem; True when there was some."""
        path, self._reserve = self._reserve, None
        if path is None:
            return False
        try:
            os.unlink(path)
        except OSError:
            return False
        return True

    # -- plumbing -----------------------------------------------------------------------
    class _Txn:
        def __init__(self, cur: sqlite3.Cursor) -> None:
            self.cur = cur

        def __enter__(self) -> sqlite3.Cursor:
            self.cur.execute("BEGIN IMMEDIATE")
            return self.cur

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None:
                try:
                    self.cur.execute("COMMIT")
                    return
                except BaseException:
                    self._rollback()
                    raise
            self._rollback()

        def _rollback(self) -> None:
            # SQLite may have rolled back by itself (a full disk): then there is none left.
            if self.cur.connection.in_transaction:
                try:
                    self.cur.execute("ROLLBACK")
                except sqlite3.Error:
                    pass

    def _txn(self) -> Writer._Txn:
        if self._conn is None and self._parked:
            self._conn = _connect(self.path)
            self._parked = False
        if self._conn is None:
            raise StoreError(f"run store {shown(self.path)} is closed")
        # One cursor for the writer's life: sqlite3 keeps a weak reference to every cursor
        # made, and inside a target those weakrefs looked like a growing type.
        if self._cur is None:
            self._cur = self._conn.cursor()
        return Writer._Txn(self._cur)

    def _write(self, doing: str, body: Callable[[sqlite3.Cursor], Any],
               committed: Callable[[], None] | None = None) -> Any:
        """Run ``body`` in one transaction, then ``committed``; a failure rolls the
        transaction back and raises StoreError."""
        with self._lock:
            try:
                with self._txn() as cur:
                    result = body(cur)
            except _REFUSED as exc:
                self.failures += 1
                error = _store_error(exc, self.path, doing)
                self.full = self.full or isinstance(error, StoreFullError)
                raise error from None
            if committed is not None:
                committed()
            return result

    def _name_ids(self, cur: sqlite3.Cursor, names: Iterable[str | None]) -> dict[str, int]:
        """Ids of the names not known yet, looked up inside the running transaction. They
        join the writer's cache only once it commits (a rollback may take them away)."""
        missing = {n for n in names if n is not None and n not in self._names}
        found: dict[str, int] = {}
        if not missing:
            return found
        by_text: dict[str, list[str]] = {}
        for n in missing:
            by_text.setdefault(storable(n), []).append(n)
        texts = sorted(by_text)
        cur.executemany("INSERT OR IGNORE INTO names(name) VALUES (?)", [(t,) for t in texts])
        for chunk in _chunks(texts, 500):
            marks = ",".join("?" * len(chunk))
            for name_id, text in cur.execute(
                f"SELECT id, name FROM names WHERE name IN ({marks})", chunk
            ):
                for n in by_text[text]:
                    found[n] = name_id
        return found

    # -- writes -------------------------------------------------------------------------
    def set_meta(self, values: dict[str, Any]) -> None:
        rows = [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()]
        self._write("write the run's metadata",
                    lambda cur: cur.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows))

    def write_snapshot(self, snap: Snapshot) -> int:
        """Write one snapshot in one transaction: in full (a keyframe) or as what differs
        from its stream's keyframe. The new name ids and the keyframe are remembered only
        once the transaction committed."""
        new: dict[str, int] = {}
        written: list[tuple[int, Plan]] = []

        def body(cur: sqlite3.Cursor) -> int:
            plan = self._frames.plan(snap)  # under the writer's lock, as is committed()
            sid, ids = self._snapshot_rows(cur, snap, plan)
            new.update(ids)
            written.append((sid, plan))
            return sid

        def committed() -> None:
            self._names.update(new)
            self._frames.committed(snap, *written[-1])

        sid: int = self._write("write a snapshot", body, committed=committed)
        return sid

    def _snapshot_rows(self, cur: sqlite3.Cursor, snap: Snapshot, plan: Plan
                       ) -> tuple[int, dict[str, int]]:
        p = snap.process
        names: list[str | None] = list(plan.types)
        names.extend(snap.sites)
        for c in plan.containers:
            names.extend((c.key, c.type, c.path))
        names.extend(plan.gone)
        for it in snap.items:
            names.extend((it.key, it.item_type, it.site, it.user_site))
        new = self._name_ids(cur, names)
        # Most snapshots bring no new name: then the cache itself, no layer to look through.
        ids: Mapping[str, int] = ChainMap(new, self._names) if new else self._names

        def opt(name: str | None) -> int | None:
            return None if name is None else ids[name]

        cur.execute(
            "INSERT INTO snapshots (pid, seq, t, mono, reason, duration_s, phase, traced,"
            " source, rss, fds, threads, children, allocated_blocks, gc_objects,"
            " gc_collections, traced_current, traced_peak, tracemalloc_overhead, errors,"
            " sockets, tmp_files, gc_garbage, cpu_s, base_id, alloc_bytes)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                snap.pid, snap.seq, snap.t, snap.mono, storable(snap.reason), snap.duration_s,
                None if snap.phase is None else storable(snap.phase), int(snap.traced),
                storable(snap.source), p.rss, p.fds, p.threads,
                p.children, p.allocated_blocks, p.gc_objects,
                json.dumps(list(p.gc_collections)), p.traced_current, p.traced_peak,
                p.tracemalloc_overhead, json.dumps(list(snap.errors)) if snap.errors else None,
                p.sockets, p.tmp_files, p.gc_garbage, p.cpu_s, plan.base_id, p.alloc_bytes,
            ),
        )
        sid = cur.lastrowid
        assert sid is not None
        cur.executemany(
            "INSERT INTO type_counts VALUES (?,?,?)",
            [(sid, ids[n], c) for n, c in plan.types.items()],
        )
        cur.executemany(
            "INSERT INTO site_stats VALUES (?,?,?,?)",
            [(sid, ids[n], c, s) for n, (c, s) in snap.sites.items()],
        )
        rows = [(sid, ids[c.key], ids[c.type], c.length, c.size, opt(c.path), c.bound)
                for c in plan.containers]
        rows += [(sid, ids[k], ids[k], CONTAINER_GONE, 0, None, None) for k in plan.gone]
        cur.executemany("INSERT OR REPLACE INTO container_lens VALUES (?,?,?,?,?,?,?)", rows)
        cur.executemany(
            "INSERT INTO item_samples VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (sid, ids[i.key], ids[i.item_type], i.sampled, opt(i.site),
                 opt(i.user_site), i.item_bytes, int(i.inferred),
                 _EVIDENCE_CODES.get(i.evidence))
                for i in snap.items
            ],
        )
        return sid, new

    def write_mark(self, mark: Mark) -> None:
        self._write("write a mark", lambda cur: cur.execute(
            "INSERT INTO marks (pid, t, phase, source) VALUES (?,?,?,?)",
            (mark.pid, mark.t, storable(mark.phase), storable(mark.source)),
        ))

    def write_event(self, pid: int, t: float, kind: str, message: str) -> None:
        self._write("write an event", lambda cur: cur.execute(
            "INSERT INTO events (pid, t, kind, message) VALUES (?,?,?,?)",
            (pid, t, storable(kind), storable(message[:2000])),
        ))

    # -- the processes of a run ---------------------------------------------------------------
    def register_process(self, info: ProcessInfo, supersedes: str = "gone") -> int:
        """Record that ``info.pid`` is watched from now on (lifecycle event ``started``);
        return its row id. A row recorded from outside for the same pid (seen before its
        agent checked in) becomes this one; another open row of the pid is ended with
        ``supersedes`` (``exec``: the process replaced its image; ``gone``: the pid was
        reused after an exit nobody saw)."""
        role, program, control, python = (None if v is None else storable(v) for v in
                                           (info.role, info.program, info.control, info.python))

        def body(cur: sqlite3.Cursor) -> int:
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
                        (info.ppid, info.how, role, program, control, python, rid))
                else:
                    cur.execute("UPDATE processes SET t_end=?, end_reason=? WHERE id=?",
                                (info.t_start, supersedes, rid))
                    cur.execute("INSERT INTO events (pid, t, kind, message) VALUES (?,?,?,?)",
                                (info.pid, info.t_start, "exited", supersedes))
            if row_id is None:
                cur.execute(
                    f"INSERT INTO processes ({_PROCESS_COLUMNS}) VALUES"
                    " (NULL,?,?,?,?,?,?,?,?,NULL,NULL,NULL,NULL)",
                    (info.pid, info.ppid, info.t_start, info.how, role, program, control,
                     python))
                row_id = cur.lastrowid
            what = " ".join(x for x in (info.how, role or "", program or "") if x)
            cur.execute("INSERT INTO events (pid, t, kind, message) VALUES (?,?,?,?)",
                        (info.pid, info.t_start, "started",
                         what + (f" (parent {info.ppid})" if info.ppid else "")))
            assert row_id is not None
            return row_id

        row: int = self._write("record a process", body)
        return row

    def end_process(self, pid: int, t: float, reason: str, exit_code: int | None = None,
                    exit_signal: int | None = None) -> None:
        """Record the end of the latest row of ``pid`` (lifecycle event ``exited``). An
        exit code or signal learnt later (the launcher reaps the command after its agent
        said ``exit``) is added to a row already ended."""

        def body(cur: sqlite3.Cursor) -> None:
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

        self._write("record the end of a process", body)

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
        self.release_reserve()
        with self._lock:
            self._parked = False
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass  # a checkpoint that did not fit on a full disk: the -wal keeps it
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
        """Forget the connection without touching it (after fork: it belongs to the parent),
        and the keyframes, which are the parent's streams."""
        self._conn = None
        self._cur = None
        self._parked = False
        self._frames.forget()

    @property
    def closed(self) -> bool:
        return self._conn is None and not self._parked


# item_samples.evidence: ItemSample.evidence by its index (NULL, in a store from before the
# column: the item's own)
_EVIDENCE = ("own", "storage", "recycled")
_EVIDENCE_CODES = {e: i for i, e in enumerate(_EVIDENCE)}


def _evidence(code: int | None) -> str:
    return _EVIDENCE[code] if code is not None and 0 <= code < len(_EVIDENCE) else "own"


# Nullable columns added to the schema after version 2 was first written (a store of a
# heapwatch from before them gets them when a writer opens it): (table, column, type).
_ADDED_COLUMNS = (("snapshots", "cpu_s", "REAL"), ("snapshots", "base_id", "INTEGER"),
                  ("snapshots", "alloc_bytes", "INTEGER"),
                  ("container_lens", "bound", "INTEGER"), ("item_samples", "inferred", "INTEGER"),
                  ("item_samples", "evidence", "INTEGER"))


def _add_columns(conn: sqlite3.Connection) -> None:
    """Give a schema-2 store written before them the nullable columns it lacks."""
    for table, column, kind in _ADDED_COLUMNS:
        if column in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            continue
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another writer added it first
                raise


def _set_aside(path: str, size: int) -> str | None:
    """Make ``path`` a private file holding ``size`` bytes of the disk; None when there is
    not that much room (then there is no reserve)."""
    try:
        private_file(path)
        fd = os.open(path, os.O_WRONLY | O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except (OSError, AttributeError):  # no fallocate here: write it (random, so that a
            view = memoryview(os.urandom(size))  # compressing filesystem keeps it all)
            while view:
                view = view[os.write(fd, view):]
    except OSError:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        return None
    os.close(fd)
    return path


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]



@dataclass
class RunData:
    """A whole run, loaded for analysis. ``skipped`` counts what could not be read (by
    what it was); everything else was read as written."""

    path: str
    meta: dict[str, Any]
    snapshots: list[Snapshot]
    marks: list[Mark] = field(default_factory=list)
    events: list[tuple[int, float, str, str]] = field(default_factory=list)
    processes: list[ProcessInfo] = field(default_factory=list)  # empty in version 1 stores
    schema: int = SCHEMA_VERSION
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def agent_snapshots(self) -> list[Snapshot]:
        return [s for s in self.snapshots if s.source == "agent"]

    def skipped_summary(self) -> str | None:
        """What could not be read, in one line; None when everything could."""
        if not self.skipped:
            return None
        parts = ", ".join(f"{n} {what}" for what, n in sorted(self.skipped.items()))
        return f"skipped what could not be read in {shown(self.path)}: {parts}"


def open_run(path: str) -> RunData:
    """Read a run store (also one still being written, left by a killed target, or in a
    directory that cannot be written).

    ``path`` is the store file or the run directory holding ``run.sqlite``. Rows that
    SQLite accepts but heapwatch cannot use (a damaged value, a dangling name id) are
    skipped and counted in ``RunData.skipped``; when no snapshot is left although some
    were skipped, StoreError says so.
    """
    if os.path.isdir(path):
        path = os.path.join(path, STORE_NAME)
    if not os.path.exists(path):
        raise StoreError(f"no run store at {shown(path)}: give a run directory or its "
                         f"{STORE_NAME}")
    conn, wal_unread = _connect_read(path)
    try:
        version = _check_version(conn, path)
        if version is None:
            if wal_unread:
                raise StoreError(f"cannot read {shown(path)} here: its data is in "
                                 f"{STORE_NAME}-wal, which SQLite reads only with write access "
                                 f"to the directory; copy the run directory somewhere writable")
            raise StoreError(f"{shown(path)} is empty: the run never started writing")
        run = _load(conn, path, version)
        if wal_unread:
            run.skipped["write-ahead log with the newest snapshots (readable only with write "
                        "access to the directory)"] = 1
    except _DAMAGE as exc:
        raise StoreError(f"cannot read run store {shown(path)}: {exc}") from None
    finally:
        conn.close()
    if not run.snapshots and run.skipped:
        raise StoreError(f"nothing usable in {shown(path)}: no snapshot could be read "
                         f"({run.skipped_summary()})")
    return run


# What a column must hold to be used: SQLite keeps whatever it is given (text in an
# INTEGER column), so the reader checks every value it hands on, in SQL (fast: rows of
# the wrong kind are counted, never fetched).
_KINDS = {
    "int": "typeof({c}) = 'integer'",
    "num": "(typeof({c}) IN ('integer', 'real') AND abs({c}) < 9e999)",
    "text": "typeof({c}) = 'text'",
    "int?": "typeof({c}) IN ('integer', 'null')",
    "num?": "(typeof({c}) = 'null' OR (typeof({c}) IN ('integer', 'real') AND abs({c}) < 9e999))",
    "text?": "typeof({c}) IN ('text', 'null')",
}


class _Reader:
    """Reads a store table by table, skipping (and counting) what cannot be used."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.skipped: Counter[str] = Counter()

    def batches(self, table: str, columns: str, what: str, order: str = ""
                ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``table`` whose ``columns`` (``name:kind, ...``) hold their kind of
        value, a batch at a time; a damaged table is read up to the damage."""
        specs = [c.strip().split(":") for c in columns.split(",")]
        try:
            have = self._columns(table)
            # A nullable column an older store lacks reads as NULL.
            cols = [(c if c in have or not k.endswith("?") else f"NULL AS {c}", k)
                    for c, k in specs]
            good = " AND ".join(_KINDS[k].format(c=c) for c, k in cols if " AS " not in c)
            bad = self.conn.execute(f"SELECT count(*) FROM {table} WHERE NOT ({good})"
                                    ).fetchone()[0]
            if bad:
                self.skipped[f"{what} with a value of the wrong type"] += bad
            where = f"WHERE {good}" if bad else ""  # the filter costs: only when needed
            cur = self.conn.execute(
                f"SELECT {', '.join(c for c, _ in cols)} FROM {table} {where} {order}")
            while batch := cur.fetchmany(4096):
                yield batch
        except _DAMAGE:
            self.skipped[f"unreadable pages of {what}"] += 1

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}

    def rows(self, table: str, columns: str, what: str, order: str = ""
             ) -> Iterator[tuple[Any, ...]]:
        return itertools.chain.from_iterable(self.batches(table, columns, what, order))

    def dangling(self, what: str, n: int) -> None:
        """``n`` rows of ``what`` named a string id that is not in ``names``."""
        if n:
            self.skipped[f"{what} naming an unknown string id"] += n

    def json(self, text: str, what: str, check: Callable[[Any], bool]) -> Any:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if value is None or not check(value):
            self.skipped[f"{what} with unreadable JSON"] += 1
            raise ValueError(what)
        return value


_META_OBJECTS = ("run", "agent", "launch", "agent_stopped", "attach", "retention")


def _int_list(v: Any) -> bool:
    return isinstance(v, list) and all(type(x) is int for x in v)


def _text_list(v: Any) -> bool:
    return isinstance(v, list) and all(type(x) is str for x in v)


def _load(conn: sqlite3.Connection, path: str, version: int) -> RunData:
    """Everything in one read transaction: the tables are read one after another, and a
    snapshot a writer commits meanwhile must show in all of them or in none (seen in the
    snapshots table only, it would read as a census of nothing)."""
    conn.execute("BEGIN")
    try:
        return _load_tables(conn, path, version)
    finally:
        try:
            conn.execute("COMMIT")  # ends the read; nothing was written
        except sqlite3.Error:
            pass  # a damaged file may have ended the transaction already


def _load_tables(conn: sqlite3.Connection, path: str, version: int) -> RunData:
    r = _Reader(conn)
    meta: dict[str, Any] = {}
    for key, value in r.rows("meta", "key:text, value:text", "meta entries"):
        try:
            meta[key] = r.json(value, "meta entries",
                               (lambda v: isinstance(v, dict)) if key in _META_OBJECTS
                               else (lambda v: True))
        except ValueError:
            continue
    names = dict(r.rows("names", "id:int, name:text", "names"))
    # The big tables: names looked up inline (no call per row), a dangling id counted.
    types: dict[int, dict[str, int]] = {}
    lost = 0
    for batch in r.batches("type_counts", "snapshot_id:int, name_id:int, count:int",
                           "type counts"):
        for sid, nid, count in batch:
            name = names.get(nid)
            if name is None:
                lost += 1
            else:
                types.setdefault(sid, {})[name] = count
    r.dangling("type counts", lost)
    sites: dict[int, dict[str, tuple[int, int]]] = {}
    lost = 0
    for batch in r.batches("site_stats", "snapshot_id:int, name_id:int, count:int, size:int",
                           "site statistics"):
        for sid, nid, count, size in batch:
            name = names.get(nid)
            if name is None:
                lost += 1
            else:
                sites.setdefault(sid, {})[name] = (count, size)
    r.dangling("site statistics", lost)
    conts: dict[int, list[ContainerStat]] = {}
    lost = 0
    for batch in r.batches(
        "container_lens",
        "snapshot_id:int, key_id:int, type_id:int, length:int, size:int, path_id:int?,"
        " bound:int?",
        "container lengths"
    ):
        for sid, kid, tid, length, size, pid_, bound in batch:
            key, ctype, cpath = names.get(kid), names.get(tid), names.get(pid_)
            if key is None or ctype is None or (cpath is None and pid_ is not None):
                lost += 1
            else:
                conts.setdefault(sid, []).append(ContainerStat(key, ctype, length, size, cpath,
                                                               bound))
    r.dangling("container lengths", lost)
    items: dict[int, list[ItemSample]] = {}
    lost = 0
    for sid, kid, tid, sampled, site, usite, nbytes, inferred, evidence in r.rows(
        "item_samples", "snapshot_id:int, key_id:int, item_type_id:int, sampled:int,"
        " site_id:int?, user_site_id:int?, item_bytes:int, inferred:int?, evidence:int?",
        "item samples"
    ):
        key, itype, isite, iusite = (names.get(kid), names.get(tid), names.get(site),
                                     names.get(usite))
        if (key is None or itype is None or (isite is None and site is not None)
                or (iusite is None and usite is not None)):
            lost += 1
        else:
            items.setdefault(sid, []).append(ItemSample(key, itype, sampled, isite, iusite,
                                                        nbytes, bool(inferred),
                                                        _evidence(evidence)))
    r.dangling("item samples", lost)
    snaps = []
    # A delta is rebuilt from its keyframe, which was written (so numbered) before it:
    # read by id, then put in time order. Only keyframes read whole are built on.
    keyframes: dict[int, tuple[int, str, dict[str, int], list[ContainerStat]]] = {}
    orphans = 0
    for row in r.rows(
        "snapshots",
        "id:int, pid:int, seq:int, t:num, mono:num, reason:text, duration_s:num, phase:text?,"
        " traced:int, source:text, rss:int, fds:int?, threads:int?, children:int?,"
        " allocated_blocks:int?, gc_objects:int?, gc_collections:text?, traced_current:int?,"
        " traced_peak:int?, tracemalloc_overhead:int?, errors:text?, sockets:int?,"
        " tmp_files:int?, gc_garbage:int?, cpu_s:num?, base_id:int?, alloc_bytes:int?",
        "snapshots", "ORDER BY id",
    ):
        sid, base = row[0], row[25]
        try:
            gc_collections = r.json(row[16] or "[]", "snapshots", _int_list)
            errors = r.json(row[20], "snapshots", _text_list) if row[20] else []
        except ValueError:
            continue
        snap_types, snap_conts = types.get(sid, {}), conts.get(sid, [])
        if base is None:
            keyframes[sid] = (row[1], row[9], snap_types, snap_conts)
        else:
            frame = keyframes.get(base)
            if frame is None or frame[:2] != (row[1], row[9]):
                orphans += 1  # its keyframe is damaged, missing or another stream's
                continue
            snap_types, snap_conts = rebuild(frame[2], frame[3], snap_types, snap_conts)
        proc = ProcessStat(
            rss=row[10], fds=row[11], threads=row[12], children=row[13],
            allocated_blocks=row[14], gc_objects=row[15],
            gc_collections=tuple(gc_collections), traced_current=row[17],
            traced_peak=row[18], tracemalloc_overhead=row[19], sockets=row[21],
            tmp_files=row[22], gc_garbage=row[23], cpu_s=row[24], alloc_bytes=row[26],
        )
        snaps.append(
            Snapshot(
                seq=row[2], pid=row[1], t=float(row[3]), mono=float(row[4]), reason=row[5],
                duration_s=float(row[6]), phase=row[7], traced=bool(row[8]), process=proc,
                types=snap_types, sites=sites.get(sid, {}),
                containers=tuple(snap_conts), items=tuple(items.get(sid, ())),
                errors=tuple(errors), source=row[9],
            )
        )
    if orphans:
        r.skipped["snapshots whose keyframe could not be read"] += orphans
    snaps.sort(key=lambda snap: snap.t)  # stable: equal times stay in the order written
    marks = [
        Mark(t=float(t), phase=phase, pid=pid, source=src)
        for pid, t, phase, src in r.rows("marks", "pid:int, t:num, phase:text, source:text",
                                         "marks", "ORDER BY t")
    ]
    events = [(pid, float(t), kind, message) for pid, t, kind, message in r.rows(
        "events", "pid:int, t:num, kind:text, message:text", "events", "ORDER BY t, id")]
    procs: list[ProcessInfo] = []
    if version >= 2:
        procs = [_process(row) for row in r.rows("processes", _PROCESS_KINDS, "processes",
                                                  "ORDER BY t_start, id")]
    return RunData(path=path, meta=meta, snapshots=snaps, marks=marks, events=events,
                   processes=procs, schema=version, skipped=dict(r.skipped))


_PROCESS_KINDS = ("id:int, pid:int, ppid:int?, t_start:num, how:text, role:text?,"
                  " program:text?, control:text?, python:text?, t_end:num?, end_reason:text?,"
                  " exit_code:int?, exit_signal:int?")


class LiveReader:
    """Cheap looks at a run that is being written (for the CLI's progress line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn, _ = _connect_read(path)

    def meta(self, key: str) -> dict[str, Any] | None:
        """A meta entry (all of them are JSON objects); None when absent or unreadable."""
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            value = json.loads(row[0]) if row else None
        except (sqlite3.Error, ValueError, TypeError):
            return None
        return value if isinstance(value, dict) else None

    def latest(self) -> tuple[int, int]:
        """(agent snapshots, id of the newest): cheap enough to poll for a new snapshot."""
        try:
            row = self._conn.execute(
                "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM snapshots WHERE source='agent'"
            ).fetchone()
            return int(row[0]), int(row[1])
        except (sqlite3.Error, ValueError, TypeError):
            return 0, 0

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
        except (sqlite3.Error, ValueError, TypeError):
            return []

    def close(self) -> None:
        self._conn.close()
