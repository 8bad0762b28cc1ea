"""Keyframes and deltas in the store: what is read back is what was written."""

from __future__ import annotations

import gc
import sqlite3
from typing import Any

from heapwatch.keyframes import KEYFRAME_EVERY
from heapwatch.model import ContainerStat, ProcessStat, Snapshot
from heapwatch.store import Writer, open_run


def snap(i: int, pid: int = 3) -> Snapshot:
    types = {"dict": 500 + i, "list": 300, "app.Job": 10 * i}
    if i % 5 == 2:
        types["weakref"] = 7  # comes and goes
    types.update({f"app.Steady{k}": k + 1 for k in range(20)})  # most types do not move
    if i == 0:
        types = {"dict": 500}
    conts = [ContainerStat("app.QUEUE", "list", 100 + i, 8 * i, "app.QUEUE"),
             ContainerStat("app.CONFIG", "dict", 150, 0, "app.CONFIG")]
    if i % 7 < 3:
        conts.append(ContainerStat(f"dict@0x{i % 7:x}", "dict", 120, 0, None))
    return Snapshot(seq=i + 1, pid=pid, t=100.0 + i, mono=float(i), reason="interval",
                    duration_s=0.01, phase=None, traced=False, process=ProcessStat(rss=1 << 20),
                    types=types, containers=tuple(conts))


def test_roundtrip_through_keyframes_and_deltas(tmp_path: Any) -> None:
    path = str(tmp_path / "run.sqlite")
    w = Writer(path)
    written = []
    for i in range(3 * KEYFRAME_EVERY + 5):
        for pid in (3, 4):  # two streams, interleaved
            s = snap(i, pid)
            w.write_snapshot(s)
            written.append(s)
    w.close()
    read = open_run(path).snapshots
    assert len(read) == len(written)
    for a, b in zip(written, read, strict=True):
        assert (a.pid, a.seq) == (b.pid, b.seq)
        assert dict(a.types) == dict(b.types)
        assert set(a.containers) == set(b.containers)
    con = sqlite3.connect(path)
    bases = [r[0] for r in con.execute("SELECT base_id FROM snapshots WHERE pid=3 ORDER BY id")]
    rows = con.execute("SELECT COUNT(*) FROM type_counts").fetchone()[0]
    con.close()
    assert bases.count(None) == 4  # one keyframe per KEYFRAME_EVERY snapshots per stream
    assert rows < sum(len(s.types) for s in written) / 2


def test_the_writers_memory_is_invisible_to_the_census(tmp_path: Any) -> None:
    w = Writer(str(tmp_path / "run.sqlite"))
    try:
        w.write_snapshot(snap(1))
        frame = next(iter(w._frames._frames.values()))
        assert not gc.is_tracked(frame.types) and not gc.is_tracked(frame.containers)
    finally:
        w.close()


def test_a_store_without_base_ids_reads_as_full_snapshots(tmp_path: Any) -> None:
    path = str(tmp_path / "run.sqlite")
    w = Writer(path)
    w.write_snapshot(snap(1))
    w.close()
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE snapshots DROP COLUMN base_id")
    con.commit()
    con.close()
    assert dict(open_run(path).snapshots[0].types) == dict(snap(1).types)
