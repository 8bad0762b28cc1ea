"""--retain: old snapshots thinned, recent ones and counters kept, the report says so."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

import heapwatch
from heapwatch import retention
from heapwatch.analysis import analyze_run
from heapwatch.errors import UsageError
from heapwatch.metrics import Follower
from heapwatch.model import ContainerStat, ItemSample, ProcessStat, Snapshot
from heapwatch.store import Writer, open_run

HOUR = 3600.0
GROWING: list[int] = []


def write_run(path: str, n: int, t0: float, step: float) -> None:
    w = Writer(path, meta={"run": {"command": ["python", "svc.py"], "interval_s": step},
                           "agent": {"pid": 5}})
    try:
        for i in range(n):
            w.write_snapshot(Snapshot(
                seq=i + 1, pid=5, t=t0 + i * step, mono=i * step, reason="interval",
                duration_s=0.01, phase=None, traced=False, process=ProcessStat(rss=1 << 26),
                types={"dict": 100 + i},
                containers=(ContainerStat("svc.SEEN", "list", 200 + 10 * i, 0, "svc.SEEN"),),
                items=(ItemSample("svc.SEEN", "float", 1),),
                errors=("census: boom",) if i == 3 else ()))
    finally:
        w.close()


def test_old_snapshots_thinned_recent_kept_counters_and_items_survive(tmp_path: Any) -> None:
    store = str(tmp_path / "run.sqlite")
    now = 1_000_000.0
    write_run(store, 3 * 720, now - 3 * HOUR, 5.0)  # three hours at the default interval
    policy = retention.Retention(window_s=HOUR, old_points=50)
    dropped = retention.apply(store, policy, now=now)
    data = open_run(store)
    ts = [s.t for s in data.snapshots]
    recent = [t for t in ts if t >= now - HOUR]
    assert len(recent) == 720  # the window keeps every snapshot
    assert len(ts) - len(recent) <= 50 and dropped == 3 * 720 - len(ts)
    assert min(ts) == now - 3 * HOUR  # the first snapshot (the baseline) stays
    assert retention.dropped(data.meta) == {5: (dropped, pytest.approx(0.01 * dropped), 1)}
    assert sum(it.sampled for s in data.snapshots for it in s.items) == 3 * 720
    assert retention.apply(store, policy, now=now) == 0  # nothing more to thin
    a = analyze_run(store)
    assert any("--retain 1h00m" in n and f"{dropped:,} were dropped" in n for n in a.notes)
    assert a.run["retention"]["window_s"] == HOUR
    assert a.findings and a.findings[0].path == "svc.SEEN"
    assert not any("lost" in e for e in a.agent["errors"])  # thinned on purpose, not lost


def test_a_snapshot_lost_beside_thinned_ones_is_still_said(tmp_path: Any) -> None:
    import sqlite3

    store = str(tmp_path / "run.sqlite")
    now = 1_000_000.0
    write_run(store, 2 * 720, now - 2 * HOUR, 5.0)
    retention.apply(store, retention.Retention(window_s=HOUR, old_points=20), now=now)
    conn = sqlite3.connect(store, isolation_level=None)  # as a write that failed
    conn.execute("DELETE FROM snapshots WHERE seq = 1400")
    conn.close()
    assert analyze_run(store).agent["errors"][0].startswith("1 snapshot(s) were lost")


def test_without_retain_nothing_is_dropped(tmp_path: Any) -> None:
    store = str(tmp_path / "run.sqlite")
    write_run(store, 30, 1000.0, 5.0)
    follower = Follower(store, 5.0, metrics=False)
    follower.step()
    assert len(open_run(store).snapshots) == 30
    assert analyze_run(store).run["retention"] is None


@pytest.mark.parametrize("text", ["10s", "soon", "-1h"])
def test_bad_retain(text: str) -> None:
    with pytest.raises(UsageError):
        retention.parse_retain(text)


def test_in_process_metrics_endpoint(tmp_path: Any) -> None:
    heapwatch.start(out=str(tmp_path / "r"), interval=3600, trace="off",
                    metrics="127.0.0.1:0", retain="1h")
    try:
        host, port = heapwatch.api.metrics_address() or ("", 0)
        for _ in range(4):
            GROWING.extend(range(300))
            heapwatch.snapshot()
        follower = heapwatch.api._follower.follower
        assert follower.refresh().roles[0].snapshots >= 5
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert 'heapwatch_snapshots_total{role="main"}' in text
    finally:
        heapwatch.stop()
        GROWING.clear()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5)
    assert open_run(str(tmp_path / "r")).meta["retention"]["window_s"] == HOUR


@pytest.mark.parametrize(("damage", "kept", "noted"), [
    ("[1, 2]", {}, False),  # not an object: skipped as unreadable, as if never thinned
    ('{"window_s": "x", "dropped": {"5": "bad"}}', {}, True),
    ('{"dropped": {"5": [1, 0.5, 0], "x": [1], "6": null}}', {5: (1, 0.5, 0)}, True),
])
def test_damaged_retention_meta_is_read_around_and_thinning_goes_on(
        tmp_path: Any, damage: str, kept: dict[int, tuple[int, float, int]], noted: bool
        ) -> None:
    import sqlite3

    store = str(tmp_path / "run.sqlite")
    now = 1_000_000.0
    write_run(store, 200, now - 2 * HOUR, 30.0)
    conn = sqlite3.connect(store, isolation_level=None)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('retention', ?)", (damage,))
    conn.close()
    a = analyze_run(store)
    assert retention.dropped(a.data.meta) == kept
    assert any("--retain" in n for n in a.notes) == noted
    assert a.data.skipped == ({} if noted else {"meta entries with unreadable JSON": 1})
    dropped = retention.apply(store, retention.Retention(window_s=HOUR, old_points=10),
                              now=now)
    assert dropped > 0
    assert retention.dropped(open_run(store).meta)[5][0] == dropped + sum(
        v[0] for v in kept.values())
