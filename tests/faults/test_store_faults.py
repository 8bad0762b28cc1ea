"""Issue 10, store cases: a damaged store (5), a read-only run directory (6), a full disk (7),
one failed write (8)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from typing import Any

import pytest
from faultkit import assert_one_line_error, fill, heapwatch, read_only_view, small_fs, write

from heapwatch.agent import Agent, AgentConfig
from heapwatch.analysis import analyze, analyze_run
from heapwatch.errors import HeapwatchError, StoreError, StoreFullError
from heapwatch.model import ContainerStat, ItemSample, ProcessStat, Snapshot
from heapwatch.report.json_report import to_dict
from heapwatch.store import Writer, open_run


def snap(seq: int, extra: tuple[str, ...] = ()) -> Snapshot:
    types = {"dict": 100 + seq, "app.Thing": 10 * seq}
    types.update({name: seq for name in extra})
    return Snapshot(
        seq=seq, pid=42, t=1000.0 + seq, mono=float(seq), reason="interval", duration_s=0.01,
        phase=None, traced=False,
        process=ProcessStat(rss=10_000_000 + 1000 * seq, fds=7, threads=2,
                            gc_collections=(1, 2, 3)),
        types=types,
        containers=(ContainerStat("app.CACHE", "dict", 20 * seq, 0, "app.CACHE"),),
        items=(ItemSample("app.CACHE", "app.Thing", 4, "app.py:3", None, 24),),
    )


def make_store(directory: str, n: int = 12) -> str:
    os.makedirs(directory, exist_ok=True)
    w = Writer(os.path.join(directory, "run.sqlite"),
               meta={"run": {"command": ["python", "app.py"], "interval_s": 1.0},
                     "agent": {"pid": 42, "python": "3.11.7"}})
    for i in range(1, n + 1):
        w.write_snapshot(snap(i))
    w.close()
    return directory


def sql(directory: str, *statements: str) -> None:
    conn = sqlite3.connect(os.path.join(directory, "run.sqlite"), isolation_level=None)
    try:
        for stmt in statements:
            conn.execute(stmt)
    finally:
        conn.close()


# -- case 5 ---------------------------------------------------------------------------------
def test_case05_damaged_values_report_reads_the_rest_and_says_what_it_skipped(
        tmp_path: Any) -> None:
    run = make_store(str(tmp_path / "r"))
    conn = sqlite3.connect(os.path.join(run, "run.sqlite"), isolation_level=None)
    value = conn.execute("SELECT value FROM meta WHERE key='run'").fetchone()[0]
    flipped = chr(ord(value[0]) ^ 0x01) + value[1:]  # "{" -> "z": no longer JSON
    conn.execute("UPDATE meta SET value=? WHERE key='run'", (flipped,))
    conn.close()
    sql(run,
        "DELETE FROM names WHERE name='app.Thing'",  # dangling ids in type counts and items
        "UPDATE type_counts SET count='many' WHERE snapshot_id=3",  # text in a number
        "UPDATE snapshots SET rss='lots' WHERE seq=5",
        "UPDATE names SET name=CAST(x'6170702effc0' AS TEXT) WHERE name='app.CACHE'")
    proc = heapwatch("report", run, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert len(warnings) == 1, proc.stderr
    for what in ("meta entries with unreadable JSON", "naming an unknown string id",
                 "type counts with a value of the wrong type",
                 "snapshots with a value of the wrong type"):
        assert what in warnings[0], warnings[0]
    with open(os.path.join(run, "report.json"), encoding="utf-8") as f:
        rep = json.load(f)
    assert rep["run"]["snapshots"] == 11  # all but the one with text for its RSS
    assert any("skipped" in e for e in rep["agent"]["errors"])
    data = open_run(run)
    assert "app.Thing" not in data.snapshots[0].types and data.snapshots[0].types["dict"] == 101
    assert data.snapshots[0].containers[0].key == "app.\ufffd\ufffd"  # bad UTF-8, still read


def test_case05_nothing_usable_left_is_one_line(tmp_path: Any) -> None:
    run = make_store(str(tmp_path / "r"), n=3)
    sql(run, "UPDATE snapshots SET t='yesterday'")
    proc = heapwatch("report", run, "--format", "json")
    assert_one_line_error(proc, "nothing usable", "no snapshot could be read")


def test_case05_byte_flips_in_the_file_never_end_in_a_traceback(tmp_path: Any) -> None:
    """Seeded random damage anywhere in the file: the reader either reads around it or
    raises a HeapwatchError (the CLI's one line), never anything else."""
    good = make_store(str(tmp_path / "good"), n=10)
    with open(os.path.join(good, "run.sqlite"), "rb") as f:
        pristine = f.read()
    rng = random.Random(10_005)
    outcomes: dict[str, int] = {}
    for i in range(60):
        data = bytearray(pristine)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
        case = tmp_path / f"c{i}"
        case.mkdir()
        (case / "run.sqlite").write_bytes(bytes(data))
        try:
            to_dict(analyze_run(str(case)))
            outcomes["read"] = outcomes.get("read", 0) + 1
        except HeapwatchError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] = outcomes.get("refused", 0) + 1
    assert outcomes.get("read", 0) > 0, outcomes


# -- case 6 ---------------------------------------------------------------------------------
KILLED_WRITER = """
import os, sqlite3, sys
sys.path.insert(0, sys.argv[2])
from test_store_faults import snap
from heapwatch.store import Writer
w = Writer(sys.argv[1], meta={"run": {}})
for i in range(1, 13):
    w.write_snapshot(snap(i))
if sys.argv[3] == "checkpoint":  # the first 12 into run.sqlite, 3 more only in the -wal
    sqlite3.connect(sys.argv[1]).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    for i in range(13, 16):
        w.write_snapshot(snap(i))
os._exit(0)
"""


@pytest.mark.parametrize("state", ["closed", "killed", "wal-without-shm"])
def test_case06_read_only_run_directory_is_read(tmp_path: Any, state: str) -> None:
    src = str(tmp_path / "src")
    store = os.path.join(src, "run.sqlite")
    if state == "closed":
        make_store(src, n=12)
    else:  # a target killed mid-run: its last snapshots are only in run.sqlite-wal
        os.makedirs(src)
        subprocess.run([sys.executable, "-c", KILLED_WRITER, store, os.path.dirname(__file__),
                        "checkpoint" if state == "wal-without-shm" else "-"], check=True)
        assert os.path.getsize(store + "-wal") > 0
        if state == "wal-without-shm":  # e.g. copied without it
            os.unlink(store + "-shm")
    with read_only_view(src, str(tmp_path / "ro")) as ro:
        out = str(tmp_path / "out")
        proc = heapwatch("report", ro, "--format", "json", "--out", out)
        assert proc.returncode == 0, proc.stderr
        assert "not a heapwatch run store" not in proc.stderr
        with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
            assert json.load(f)["run"]["snapshots"] == 12
        if state == "wal-without-shm":  # the 3 in the -wal cannot be read here: said so
            assert "write-ahead log with the newest snapshots" in proc.stderr
        here = heapwatch("report", ro, "--format", "json")
        assert_one_line_error(here, "could not write report.json", "--out")


# -- case 7 ---------------------------------------------------------------------------------
def test_case07_writer_on_a_full_disk_keeps_what_it_stored_and_goes_on(tmp_path: Any) -> None:
    with small_fs(str(tmp_path / "fs"), "1m") as fs:
        w = Writer(os.path.join(fs, "run.sqlite"), meta={"run": {}})
        for i in range(1, 4):
            w.write_snapshot(snap(i))
        fill(os.path.join(fs, "filler"))
        big = tuple(f"app.Type{k}" for k in range(3000))
        with pytest.raises(StoreFullError, match="disk is full"):
            w.write_snapshot(snap(4, big))
        assert w.full and w.failures == 1
        assert [s.seq for s in open_run(fs).snapshots] == [1, 2, 3]
        os.unlink(os.path.join(fs, "filler"))
        w.write_snapshot(snap(5, big[:10]))
        w.close()
        run = open_run(fs)
        assert [s.seq for s in run.snapshots] == [1, 2, 3, 5]
        assert run.snapshots[-1].types["app.Type9"] == 5 and not run.skipped


def test_case07_room_is_reserved_for_the_end_and_never_left_behind(tmp_path: Any) -> None:
    path = str(tmp_path / "run.sqlite")
    w = Writer(path, meta={"run": {}}, reserve=1 << 16)
    assert os.path.getsize(path + "-reserve") == 1 << 16
    assert os.stat(path + "-reserve").st_mode & 0o777 == 0o600
    w.close()
    assert not os.path.exists(path + "-reserve")


TARGET_FILLS_DISK = """
    import os, sys, heapwatch
    KEEP = []
    for i in range(3):
        KEEP.append([object() for _ in range(1000)])
        heapwatch.snapshot()
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
    for size in (1 << 16, 1 << 12, 1):
        try:
            while True:
                os.write(fd, b"x" * size)
        except OSError:
            pass
    for i in range(3):
        KEEP.append([object() for _ in range(1000)])
        heapwatch.snapshot()
    print("target done", flush=True)
"""


def test_case07_disk_full_run_keeps_every_stored_snapshot_and_writes_reports(
        tmp_path: Any) -> None:
    script = write(tmp_path / "fills.py", TARGET_FILLS_DISK)
    with small_fs(str(tmp_path / "fs"), "4m") as fs:
        out = os.path.join(fs, "run")
        proc = heapwatch("run", "--interval", "30s", "--trace", "off", "--out", out, "--",
                         sys.executable, script, os.path.join(fs, "filler"))
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.stdout == "target done\n"
        assert proc.returncode == 0, proc.stderr  # the target's own: all reports written
        assert "warning: the disk was full" in proc.stderr
        for name in ("report.json", "report.md", "report.html"):
            assert os.path.getsize(os.path.join(out, name)) > 0
        with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
            rep = json.load(f)
        assert any("disk was full" in e for e in rep["agent"]["errors"]), rep["agent"]
        seqs = [s.seq for s in open_run(out).agent_snapshots]
        assert seqs[:4] == [1, 2, 3, 4]  # start + the three taken before the disk filled
        assert not os.path.exists(os.path.join(out, "run.sqlite-reserve"))


def test_case07_reports_that_do_not_fit_are_named_in_one_line(tmp_path: Any) -> None:
    run = make_store(str(tmp_path / "r"))
    with small_fs(str(tmp_path / "fs"), "1m") as fs:
        out = os.path.join(fs, "reports")
        os.mkdir(out)
        fill(os.path.join(fs, "filler"))
        proc = heapwatch("report", run, "--out", out)
        assert_one_line_error(proc, "could not write report.json", "report.md", "report.html",
                              "No space left on device")


# -- case 8 ---------------------------------------------------------------------------------
FAIL_ON_SEQ = ("CREATE TRIGGER heapwatch_test_fail BEFORE INSERT ON type_counts "
               "WHEN (SELECT seq FROM snapshots WHERE id = NEW.snapshot_id) = {seq} "
               "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")


def test_case08_a_failed_write_costs_only_itself(tmp_path: Any) -> None:
    """Snapshot 3 brings new names and fails after they were inserted: the ids it looked up
    are rolled back with it, and later snapshots land under the right names."""
    path = str(tmp_path / "run.sqlite")
    w = Writer(path, meta={"run": {}})
    w.write_snapshot(snap(1))
    w.write_snapshot(snap(2))
    sql(str(tmp_path), FAIL_ON_SEQ.format(seq=3))
    with pytest.raises(StoreError, match="injected failure"):
        w.write_snapshot(snap(3, ("app.New", "app.Other")))
    sql(str(tmp_path), "INSERT INTO names(name) VALUES ('app.Intruder')")  # takes a freed id
    for i in range(4, 8):
        w.write_snapshot(snap(i, ("app.Other", "app.New")))
    w.close()
    assert w.failures == 1
    run = open_run(str(tmp_path))
    assert not run.skipped
    assert [s.seq for s in run.snapshots] == [1, 2, 4, 5, 6, 7]
    for s in run.snapshots[2:]:
        assert s.types == {"dict": 100 + s.seq, "app.Thing": 10 * s.seq, "app.New": s.seq,
                           "app.Other": s.seq}
    assert analyze(run).agent["errors"][0].startswith("1 snapshot(s) were lost")


def test_case08_agent_reports_the_lost_snapshot_and_goes_on(tmp_path: Any) -> None:
    store = str(tmp_path / "run.sqlite")
    agent = Agent(AgentConfig(store=store, interval=3600.0, trace="off"))
    agent.start()
    try:
        sql(str(tmp_path), FAIL_ON_SEQ.format(seq=3))
        for _ in range(5):
            agent.snapshot()
    finally:
        agent.stop("test")
    run = open_run(str(tmp_path))
    assert not run.skipped
    seqs = [s.seq for s in run.agent_snapshots]
    assert 3 not in seqs and seqs[:3] == [1, 2, 4] and len(seqs) >= 6
    errors = analyze(run).agent["errors"]
    assert errors[0].startswith("1 snapshot(s) were lost") and "StoreError" in errors[0]




class Interrupt(Exception):
    """Like heapwatch run's SIGTERM exception: raised wherever the signal lands."""


def test_case08_an_interrupt_during_a_write_rolls_back_and_goes_on_up(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    w = Writer(str(tmp_path / "run.sqlite"), meta={"run": {}})
    w.write_snapshot(snap(1))
    real = Writer._name_ids

    def interrupted(self: Writer, cur: Any, names: Any) -> dict[str, int]:
        real(self, cur, names)
        raise Interrupt()

    monkeypatch.setattr(Writer, "_name_ids", interrupted)
    with pytest.raises(Interrupt):  # not turned into a StoreError that a caller would swallow
        w.write_snapshot(snap(2, ("app.New",)))
    monkeypatch.undo()
    w.write_snapshot(snap(3, ("app.New",)))
    w.close()
    assert w.failures == 0
    run = open_run(str(tmp_path))
    assert [s.seq for s in run.snapshots] == [1, 3] and run.snapshots[1].types["app.New"] == 3
