"""Keyframes and deltas (issue 13) in the store's fault cases (issue 10): a damaged or
missing keyframe, a write that fails between keyframes or as one, a fork between a
keyframe and its deltas, a store from before the nullable columns."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from typing import Any

import pytest
from faultkit import heapwatch

from heapwatch.analysis import analyze_run
from heapwatch.errors import StoreError
from heapwatch.keyframes import KEYFRAME_EVERY
from heapwatch.model import ContainerStat, ItemSample, ProcessStat, Snapshot
from heapwatch.store import Writer, open_run

ORPHANS = "snapshots whose keyframe could not be read"


def snap(seq: int, pid: int = 42, extra: tuple[str, ...] = ()) -> Snapshot:
    """Most types and containers stay, some grow, one comes and goes: deltas of a few rows."""
    types = {"dict": 100 + seq, "app.Job": 10 * seq}
    types.update({f"app.Steady{k}": k + 1 for k in range(10)})
    if seq % 4 == 1:
        types["weakref"] = 3
    types.update({name: seq for name in extra})
    conts = [ContainerStat("app.QUEUE", "list", 20 * seq, 8 * seq, "app.QUEUE"),
             ContainerStat("app.RING", "deque", min(seq, 5), 0, "app.RING",
                           bound=5 if seq < 20 else 10)]
    if seq % 3:
        conts.append(ContainerStat(f"dict@0x{seq % 3:x}", "dict", 7, 0, None))
    return Snapshot(
        seq=seq, pid=pid, t=1000.0 + seq + pid / 100, mono=float(seq), reason="interval",
        duration_s=0.01, phase=None, traced=False,
        process=ProcessStat(rss=10_000_000 + 1000 * seq, fds=7, gc_collections=(1, 2, 3),
                            cpu_s=0.5 * seq),
        types=types, containers=tuple(conts),
        items=(ItemSample("app.QUEUE", "app.Job", 4, "app.py:3", None, 24, inferred=True),),
    )


def same(a: Snapshot, b: Snapshot) -> bool:
    return ((a.pid, a.seq, a.types, a.process) == (b.pid, b.seq, b.types, b.process)
            and set(a.containers) == set(b.containers) and a.items == b.items)


def sql(path: str, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for stmt in statements:
            conn.execute(stmt)
    finally:
        conn.close()


def structure(path: str) -> list[tuple[int, int, int | None]]:
    """(pid, seq, the seq of its keyframe or None) of every snapshot, in the order written;
    asserts that every base is a keyframe of the same process."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT s.pid, s.seq, k.seq, k.pid, k.base_id, s.base_id FROM "
                            "snapshots s LEFT JOIN snapshots k ON k.id = s.base_id "
                            "ORDER BY s.id").fetchall()
    finally:
        conn.close()
    for pid, _, kseq, kpid, kbase, base in rows:
        assert base is None or (kseq is not None and kpid == pid and kbase is None), rows
    return [(pid, seq, kseq) for pid, seq, kseq, *_ in rows]


# -- a damaged or missing keyframe ------------------------------------------------------------
N = 2 * KEYFRAME_EVERY + 3  # keyframes at seq 1, KEYFRAME_EVERY + 1, 2 * KEYFRAME_EVERY + 1
K2 = KEYFRAME_EVERY + 1
DELTAS = KEYFRAME_EVERY - 1


def two_streams(path: str) -> dict[tuple[int, int], Snapshot]:
    w = Writer(path, meta={"run": {"command": ["python", "app.py"], "interval_s": 1.0},
                           "agent": {"pid": 42}})
    written = {}
    for seq in range(1, N + 1):
        for pid in (42, 43):
            s = snap(seq, pid)
            w.write_snapshot(s)
            written[(pid, seq)] = s
    w.close()
    return written


def other_stream_keyframe(seq: int) -> str:
    return f"(SELECT id FROM snapshots WHERE pid=43 AND seq={seq})"


SECOND = set(range(K2, K2 + KEYFRAME_EVERY))  # the second keyframe and its deltas
DAMAGE = {  # statements, the seqs of process 42 not read, what is counted as skipped
    "keyframe-value": ([f"UPDATE snapshots SET rss='lots' WHERE pid=42 AND seq={K2}"],
                       SECOND, {"snapshots with a value of the wrong type": 1, ORPHANS: DELTAS}),
    "keyframe-json": ([f"UPDATE snapshots SET gc_collections='[1,' WHERE pid=42 AND seq={K2}"],
                      SECOND, {"snapshots with unreadable JSON": 1, ORPHANS: DELTAS}),
    "keyframe-missing": ([f"DELETE FROM snapshots WHERE pid=42 AND seq={K2}"],
                         SECOND, {ORPHANS: DELTAS}),
    "base-of-another-stream": ([f"UPDATE snapshots SET base_id={other_stream_keyframe(K2)}"
                                f" WHERE pid=42 AND seq={K2 + 2}"], {K2 + 2}, {ORPHANS: 1}),
    "base-is-a-delta": (["UPDATE snapshots SET base_id=(SELECT id FROM snapshots WHERE "
                         "pid=42 AND seq=2) WHERE pid=42 AND seq=3"], {3}, {ORPHANS: 1}),
    "base-id-text": (["UPDATE snapshots SET base_id='one' WHERE pid=42 AND seq=3"], {3},
                     {"snapshots with a value of the wrong type": 1}),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_delta_whose_keyframe_cannot_be_read_is_skipped_and_counted(
        tmp_path: Any, case: str) -> None:
    path = str(tmp_path / "run.sqlite")
    written = two_streams(path)
    statements, unread, skipped = DAMAGE[case]
    sql(path, *statements)
    run = open_run(path)
    assert run.skipped == skipped
    assert {s.seq for s in run.snapshots if s.pid == 42} == set(range(1, N + 1)) - unread
    assert len([s for s in run.snapshots if s.pid == 43]) == N  # the other stream is whole
    for s in run.snapshots:  # what is read is what was written, rebuilt from its keyframe
        assert same(s, written[(s.pid, s.seq)]), (s.pid, s.seq)
    assert any(ORPHANS in e or "wrong type" in e for e in analyze_run(path).agent["errors"])


def test_report_of_a_store_with_a_damaged_keyframe_is_one_warning(tmp_path: Any) -> None:
    run = str(tmp_path / "r")
    os.mkdir(run)
    two_streams(os.path.join(run, "run.sqlite"))
    sql(os.path.join(run, "run.sqlite"), f"DELETE FROM snapshots WHERE pid=42 AND seq={K2}")
    proc = heapwatch("report", run, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and f"{DELTAS} {ORPHANS}" in warnings[0], proc.stderr
    with open(os.path.join(run, "report.json"), encoding="utf-8") as f:
        assert json.load(f)["run"]["snapshots"] == N  # the main process: 43, whole


# -- a write that fails between keyframes, or as one ------------------------------------------
FAIL_ITEMS = ("CREATE TRIGGER heapwatch_test_fail BEFORE INSERT ON item_samples "
              "WHEN (SELECT {what} FROM snapshots WHERE id = NEW.snapshot_id) "
              "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
FAILS = {  # the condition on the snapshot being written, checked by its last insert
    "delta": "base_id IS NOT NULL AND seq IN (3, 7)",
    "keyframe": f"base_id IS NULL AND seq > 1 AND seq < {2 * KEYFRAME_EVERY}",
    "first": "seq = 1",
}


class Interrupt(Exception):
    """Like heapwatch run's SIGTERM exception: raised wherever the signal lands."""


class FailingCommit:
    """The writer's cursor, whose next COMMIT fails once armed (as on a disk that fills
    at that moment): the whole snapshot was written, then rolled back."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self.cur = cur
        self.armed = False

    def execute(self, stmt: str, *args: Any) -> Any:
        if stmt == "COMMIT" and self.armed:
            self.armed = False
            raise sqlite3.OperationalError("disk I/O error")
        return self.cur.execute(stmt, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cur, name)


@pytest.mark.parametrize("fails", [*sorted(FAILS), "interrupt-keyframe", "commit-keyframe"])
def test_a_failed_write_leaves_the_keyframe_memory_as_it_was(
        tmp_path: Any, fails: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write carries new names too (their ids are rolled back with it) and fails at its
    last insert: had the writer remembered a keyframe that was rolled back, the next
    deltas would name a snapshot that is not there."""
    path = str(tmp_path / "run.sqlite")
    w = Writer(path, meta={"run": {}})
    real = Writer._snapshot_rows
    if fails == "interrupt-keyframe":
        def interrupted(self: Writer, cur: Any, s: Snapshot, plan: Any) -> Any:
            out = real(self, cur, s, plan)
            if plan.base_id is None and s.seq > 1:
                monkeypatch.setattr(Writer, "_snapshot_rows", real)
                raise Interrupt()
            return out
        monkeypatch.setattr(Writer, "_snapshot_rows", interrupted)
    elif fails == "commit-keyframe":
        w.write_snapshot(snap(0))  # makes the writer's cursor
        commit = FailingCommit(w._cur)
        w._cur = commit
    else:
        sql(path, FAIL_ITEMS.format(what=FAILS[fails]))
    written: dict[int, Snapshot] = {0: snap(0)} if fails == "commit-keyframe" else {}
    failed: list[int] = []
    for seq in range(1, 3 * KEYFRAME_EVERY):
        s = snap(seq, extra=(f"app.New{seq}",))
        if fails == "commit-keyframe":
            commit.armed = seq == KEYFRAME_EVERY  # the second keyframe's turn
        try:
            w.write_snapshot(s)
            written[seq] = s
        except (StoreError, Interrupt):
            failed.append(seq)
            if fails == "keyframe":  # one failed keyframe is enough
                sql(path, "DROP TRIGGER heapwatch_test_fail",
                    f"INSERT INTO names(name) VALUES ('app.Intruder{seq}')")  # a freed id
    w.close()
    assert failed and w.failures == (0 if fails.startswith("interrupt") else len(failed))
    order = structure(path)
    after = next(kseq for _, seq, kseq in order if seq > failed[0])
    if fails == "delta":
        assert failed == [3, 7] and after == 1  # the next delta: on the same keyframe
    elif fails == "commit-keyframe":
        assert failed == [KEYFRAME_EVERY] and after is None
    else:
        assert after is None  # the write after a failed keyframe is a keyframe again
    run = open_run(path)
    assert not run.skipped
    assert [s.seq for s in run.snapshots] == sorted(written)
    for s in run.snapshots:
        assert same(s, written[s.seq]), s.seq


# -- a fork between a keyframe and its deltas -------------------------------------------------
FORK = """
import json, os, sys
sys.path.insert(0, sys.argv[2])
from test_keyframe_faults import snap
from heapwatch.store import Writer
w = Writer(sys.argv[1], meta={"run": {}})
for seq in (1, 2, 3):  # a keyframe and two deltas
    w.write_snapshot(snap(seq, 42))
assert w.suspend(5.0)
child = os.fork()
if child == 0:  # as the agent's fork hook: abandon the parent's writer, start one's own
    code = 1
    try:
        w.abandon()
        remembered = len(w._frames._frames)
        mine = Writer(sys.argv[1])
        for seq in (1, 2, 3):
            mine.write_snapshot(snap(seq, 43))
        mine.write_snapshot(snap(4, 42))  # the parent's stream: not a delta on its keyframe
        mine.close()
        code = 0 if remembered == 0 else 3
    finally:
        os._exit(code)
w.resume()
for seq in (4, 5, 6):
    w.write_snapshot(snap(seq, 42))
_, status = os.waitpid(child, 0)
w.close()
print(json.dumps({"child": os.waitstatus_to_exitcode(status)}))
"""


def test_a_fork_between_a_keyframe_and_its_deltas(tmp_path: Any) -> None:
    path = str(tmp_path / "run.sqlite")
    proc = subprocess.run([sys.executable, "-c", FORK, path, os.path.dirname(__file__)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"child": 0}
    order = structure(path)
    # The parent's deltas after the fork are still on its keyframe (suspend/resume keep
    # it); the child's writer starts with keyframes of its own, also for stream 42.
    assert sorted(((seq, kseq or 0) for pid, seq, kseq in order if pid == 42)) == [
        (1, 0), (2, 1), (3, 1), (4, 0), (4, 1), (5, 1), (6, 1)]
    assert [kseq for pid, _, kseq in order if pid == 43] == [None, 1, 1]
    run = open_run(path)
    assert not run.skipped and len(run.snapshots) == 10
    for s in run.snapshots:
        assert same(s, snap(s.seq, s.pid))


# -- a store from before the nullable columns -------------------------------------------------
def test_a_store_without_the_later_columns_is_read_and_written(tmp_path: Any) -> None:
    path = str(tmp_path / "run.sqlite")
    w = Writer(path, meta={"run": {}})
    w.write_snapshot(snap(1))
    w.close()
    sql(path, "ALTER TABLE snapshots DROP COLUMN base_id",
        "ALTER TABLE snapshots DROP COLUMN cpu_s", "ALTER TABLE container_lens DROP COLUMN bound",
        "ALTER TABLE item_samples DROP COLUMN inferred",
        "ALTER TABLE item_samples DROP COLUMN evidence")
    old = open_run(path).snapshots
    assert len(old) == 1 and old[0].process.cpu_s is None
    assert {c.bound for c in old[0].containers} == {None}
    w = Writer(path)  # appends: the columns come back, nullable
    for seq in range(2, KEYFRAME_EVERY + 4):
        w.write_snapshot(snap(seq))
    w.close()
    run = open_run(path)
    assert not run.skipped and [s.seq for s in run.snapshots] == list(range(1, KEYFRAME_EVERY + 4))
    for s in run.snapshots[1:]:
        assert same(s, snap(s.seq))
    assert [k for _, _, k in structure(path)][:3] == [None, None, 2]
