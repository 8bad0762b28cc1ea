"""Soak history in SQLite and in a real PostgreSQL server: same semantics, many writers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from helpers import SCENARIOS, heapwatch, report
from servers import Postgres, postgres  # noqa: F401  (fixture)

from heapwatch import history


def finding(fp: str, per_hour: float = 100.0) -> dict[str, Any]:
    return {"fingerprint": fp, "kind": "container", "severity": "high", "title": f"{fp} grows",
            "path": f"svc.{fp}", "growth": {"per_hour": per_hour, "unit": "items"}}


def new_database(pg: Postgres, name: str) -> str:
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return pg.url.replace("@/postgres?", f"@/{name}?")


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: Any, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "h.sqlite")
    pg = request.getfixturevalue("postgres")
    return new_database(pg, "semantics")


def test_new_still_present_gone_per_service(location: str) -> None:
    run = {"command": ["python", "a.py"], "duration_s": 10.0}
    first = history.compare(location, [finding("leak")], "a")
    assert first.previous_run is None and first.status == {"leak": "new"}
    history.record(location, run, "leak", False, [finding("leak")], "/r/1", "a")
    history.record(location, run, "no-leak", True, [], "/r/2", "b")
    # Service b's run in between does not hide a's last run, nor leak into it.
    second = history.compare(location, [finding("leak", 120.0), finding("other")], "a")
    assert second.status == {"leak": "still present", "other": "new"}
    assert second.previous_rate == {"leak": 100.0} and second.gone == []
    assert history.compare(location, [], "b").status == {}
    history.record(location, run, "leak", False, [finding("leak", 120.0), finding("other")],
                   "/r/3", "a")
    third = history.compare(location, [finding("other")], "a")
    assert [g["fingerprint"] for g in third.gone] == ["leak"]
    runs = history.recent(location, 10)
    assert [(r["service"], r["id"]) for r in runs] == [("a", runs[0]["id"]), ("b", runs[1]["id"]),
                                                       ("a", runs[2]["id"])]
    statuses = {f["fingerprint"]: f["status"] for f in runs[2]["findings"]}
    assert statuses == {"leak": "still present", "other": "new"}
    assert history.recent(location, 1, "a")[0]["id"] == runs[2]["id"]


WRITER = """
import sys
from heapwatch import history
loc, svc = sys.argv[1], sys.argv[2]
for night in range(5):
    cmp = history.compare(loc, [{"fingerprint": "fp-" + svc}], svc)
    f = {"fingerprint": "fp-" + svc, "kind": "container", "severity": "high", "title": svc,
         "path": svc, "growth": {"per_hour": 1.0, "unit": "items"}}
    history.record(loc, {"command": [], "duration_s": 1.0}, "leak", False, [f], "", svc)
    print(cmp.status["fp-" + svc])
"""


def test_many_writers_at_once(location: str) -> None:
    """Eight services start at the same moment on a fresh history (schema created once,
    under a lock) and each records five runs; every run is kept, statuses are per service."""
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, location, f"svc{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.splitlines() == ["new"] + ["still present"] * 4, out
    runs = history.recent(location, 100)
    assert len(runs) == 40 and len({r["id"] for r in runs}) == 40


def test_cli_errors_are_one_line(tmp_path: Any) -> None:
    missing = heapwatch("history", str(tmp_path / "none.sqlite"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    bad = heapwatch("history", "postgresql://nobody:s3cret@/x?host=/nonexistent-dir&port=1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "s3cret" not in bad.stderr and "cannot connect" in bad.stderr


@pytest.mark.slow
def test_two_nights_two_services_concurrently(postgres: Postgres, tmp_path: Any) -> None:  # noqa: F811
    url = new_database(postgres, "nights")
    leak = os.path.join(SCENARIOS, "pending_tracker", "pending_tracker.py")
    steady = os.path.join(SCENARIOS, "lru_cache", "lru_cache.py")

    def night(n: int) -> dict[str, subprocess.CompletedProcess[str]]:
        start: Callable[[str, str], subprocess.Popen[str]] = lambda name, script: (  # noqa: E731
            subprocess.Popen(
                [sys.executable, "-m", "heapwatch", "soak", "--interval", "0.5", "--duration",
                 "10s", "--min-window", "4s", "--history", url, "--out",
                 str(tmp_path / f"{name}{n}"), "--", sys.executable, script],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        procs = {"leak": start("leak", leak), "steady": start("steady", steady)}
        done = {}
        for name, p in procs.items():
            out, err = p.communicate(timeout=180)
            done[name] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        return done

    first = night(1)
    assert first["leak"].returncode == 1, first["leak"].stderr
    assert "new: pending_tracker.TRACKER._pending" in first["leak"].stderr
    assert first["steady"].returncode == 0, first["steady"].stderr
    second = night(2)
    assert second["leak"].returncode == 1, second["leak"].stderr
    assert "still present: pending_tracker.TRACKER._pending" in second["leak"].stderr
    assert "new:" not in second["leak"].stderr
    assert report(str(tmp_path / "leak2"))["findings"][0]["status"] == "still present"
    steady_err = second["steady"].stderr
    assert second["steady"].returncode == 0, steady_err
    assert not any(w in steady_err for w in ("still present:", "new:", "gone:")), steady_err

    shown = heapwatch("history", url)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "service pending_tracker" in text and "service lru_cache" in text
    leak_block = text.split("service pending_tracker")[1]
    assert "still present" in leak_block and "TRACKER._pending" in leak_block
    steady_block = text.split("service lru_cache")[1].split("service pending_tracker")[0]
    assert steady_block.count("pass") == 2 and "still present" not in steady_block


def test_a_new_sqlite_history_is_private_and_an_existing_one_keeps_its_mode(tmp_path: Any
                                                                          ) -> None:
    import stat

    new = str(tmp_path / "new.sqlite")
    history.record(new, {"command": ["python", "a.py"], "duration_s": 1.0}, "leak", False,
                   [finding("leak")], "/r/1", "a")
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600  # titles and owner paths are in it
    shared = tmp_path / "shared.sqlite"
    shared.touch()
    os.chmod(shared, 0o640)  # a team's choice is left alone
    history.record(str(shared), {"command": ["python", "a.py"], "duration_s": 1.0}, "leak",
                   False, [finding("leak")], "/r/1", "a")
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o640
