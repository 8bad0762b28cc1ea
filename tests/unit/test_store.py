from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing

import pytest

from heapwatch.errors import SchemaError, StoreError
from heapwatch.model import ContainerStat, ItemSample, Mark, ProcessStat, Snapshot
from heapwatch.store import Writer, open_run


def snap(seq: int, n: int) -> Snapshot:
    return Snapshot(
        seq=seq, pid=42, t=1000.0 + seq, mono=float(seq), reason="interval", duration_s=0.01,
        phase="load" if seq > 1 else None, traced=True,
        process=ProcessStat(rss=10_000_000 + seq, fds=7, threads=2, gc_collections=(1, 2, 3)),
        types={"dict": 100 + n, "app.Thing": n}, sites={"app.py:3": (n, n * 10)},
        containers=(ContainerStat("app.CACHE", "dict", n, 0, "app.CACHE"),),
        items=(ItemSample("app.CACHE", "float", 4, "app.py:3", None, 24),
               ItemSample("app.CACHE", "int", 1, "app.py:9", None, 28, evidence="storage"),
               ItemSample("app.CACHE", "tuple", 1, "app.py:7", None, 56, evidence="recycled")),
        errors=("census: ValueError at x.py:1",) if seq == 2 else (),
    )


def test_roundtrip(tmp_path: str) -> None:
    path = os.path.join(tmp_path, "run.sqlite")
    w = Writer(path, meta={"run": {"command": ["python", "app.py"]}})
    for i in range(1, 4):
        w.write_snapshot(snap(i, i * 10))
    w.write_mark(Mark(t=1001.5, phase="load", pid=42))
    w.write_event(42, 1002.0, "stretched", "slow")
    w.close()
    run = open_run(str(tmp_path))
    assert run.meta["run"]["command"] == ["python", "app.py"]
    assert [s.seq for s in run.snapshots] == [1, 2, 3]
    s3 = run.snapshots[2]
    assert s3.types == {"dict": 130, "app.Thing": 30}
    assert s3.sites == {"app.py:3": (30, 300)}
    assert s3.containers == (ContainerStat("app.CACHE", "dict", 30, 0, "app.CACHE"),)
    assert s3.items == snap(3, 30).items  # each with where its site came from
    assert s3.process.gc_collections == (1, 2, 3)
    assert run.snapshots[1].errors == ("census: ValueError at x.py:1",)
    assert [m.phase for m in run.marks] == ["load"]
    assert run.events[0][2] == "stretched"


def test_newer_schema_is_refused(tmp_path: str) -> None:
    path = os.path.join(tmp_path, "run.sqlite")
    Writer(path).close()
    with closing(sqlite3.connect(path)) as conn, conn:  # closed, not only committed
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(SchemaError, match="newer heapwatch"):
        open_run(path)
    with pytest.raises(SchemaError):
        Writer(path)


def test_not_a_store(tmp_path: str) -> None:
    path = os.path.join(tmp_path, "run.sqlite")
    with open(path, "wb") as f:
        f.write(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a heapwatch run store"):
        open_run(path)
    with pytest.raises(StoreError, match="no run store"):
        open_run(os.path.join(tmp_path, "missing"))


def test_a_snapshot_committed_while_the_store_is_read_is_seen_whole_or_not_at_all(
        tmp_path: str) -> None:
    # The exporter re-reads a store the agent keeps writing. Here the writer commits a
    # snapshot right after the reader has read the type counts and before it reads the
    # snapshots table: read outside one transaction, that snapshot came back with no
    # types at all (a census of nothing, which the analysis reads as a collapse).
    from heapwatch import store

    path = os.path.join(tmp_path, "run.sqlite")
    w = Writer(path, meta={})
    for i in range(1, 4):
        w.write_snapshot(snap(i, i * 10))
    committed = []

    class Interleaved(sqlite3.Connection):
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
            cur = super().execute(sql, *args)
            if "type_counts" in sql and not committed:
                w.write_snapshot(snap(4, 40))  # between this table and the next ones
                committed.append(4)
            return cur

    conn = sqlite3.connect(path, factory=Interleaved, isolation_level=None)
    run = store._load(conn, path, store.SCHEMA_VERSION)
    conn.close()
    w.close()
    assert committed == [4]
    assert [s.seq for s in run.snapshots] == [1, 2, 3]  # the reader's view of the file
    assert all(s.types for s in run.snapshots)
    assert [s.seq for s in open_run(path).snapshots] == [1, 2, 3, 4]


def test_writer_killed_mid_run_keeps_finished_snapshots(tmp_path: str) -> None:
    """A target that dies (os._exit, no close) leaves every committed snapshot readable."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_store import snap
        from heapwatch.store import Writer
        w = Writer({os.path.join(str(tmp_path), "run.sqlite")!r})
        for i in range(1, 6):
            w.write_snapshot(snap(i, i))
        os._exit(9)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    run = open_run(str(tmp_path))
    assert [s.seq for s in run.snapshots] == [1, 2, 3, 4, 5]
