"""heapwatch soak as CI runs it: exit codes, JUnit, history across nights."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from typing import Any

from helpers import SCENARIOS, heapwatch, report

TRACKER = os.path.join(SCENARIOS, "pending_tracker", "pending_tracker.py")


def soak(tmp_path: Any, name: str, *args: str, script: str = TRACKER) -> Any:
    return heapwatch("soak", "--interval", "0.5", "--snapshots", "20", "--min-window", "4s",
                     "--out", str(tmp_path / name), *args, "--", sys.executable, script,
                     timeout=180)


def test_leak_fails_with_junit_naming_the_container_then_history(tmp_path: Any) -> None:
    junit, hist = str(tmp_path / "j.xml"), str(tmp_path / "h.sqlite")
    first = soak(tmp_path, "n1", "--junit", junit, "--history", hist,
                 "--budget", "threads-max=64")
    assert first.returncode == 1, first.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failure = suite.find("testcase[@name='leak verdict']/failure")
    assert failure is not None and "TRACKER._pending" in failure.get("message", "")
    assert "pending_tracker.py:" in (failure.text or "")
    assert suite.find("testcase[@name='threads-max (run)']/failure") is None
    rep = report(str(tmp_path / "n1"))
    assert rep["findings"][0]["status"] == "new" and rep["budgets"]

    second = soak(tmp_path, "n2", "--history", hist)
    assert second.returncode == 1
    assert report(str(tmp_path / "n2"))["findings"][0]["status"] == "still present"

    fixed = heapwatch("soak", "--interval", "0.5", "--snapshots", "20", "--history", hist,
                      "--out", str(tmp_path / "n3"), "--", sys.executable, TRACKER, "--fixed",
                      timeout=180)
    assert fixed.returncode == 0, fixed.stderr
    gone = report(str(tmp_path / "n3"))["history"]["gone"]
    assert [g["path"] for g in gone] == ["pending_tracker.TRACKER._pending"]
    hist_out = heapwatch("history", hist)
    assert hist_out.returncode == 0 and hist_out.stdout.count("FAIL") == 2


def test_steady_passes_and_ignore_suppresses(tmp_path: Any) -> None:
    steady = os.path.join(SCENARIOS, "lru_cache", "lru_cache.py")
    ok = soak(tmp_path, "s", script=steady)
    assert ok.returncode == 0, ok.stderr
    ignored = soak(tmp_path, "i", "--ignore", "*.TRACKER._pending")
    assert ignored.returncode == 0, ignored.stderr


def test_usage_errors_exit_2_in_one_line(tmp_path: Any) -> None:
    for args in (["--budget", "rss-growth=5MB"], ["--fail-on", "sometimes"],
                 ["--fail-on", "new"]):
        proc = heapwatch("soak", *args, "--", sys.executable, "-c", "pass")
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_target_failure_is_exit_3(tmp_path: Any) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text("import sys, time\ntime.sleep(0.5)\nsys.exit(4)\n")
    proc = heapwatch("soak", "--interval", "0.2", "--duration", "20s", "--out",
                     str(tmp_path / "c"), "--", sys.executable, str(crash))
    assert proc.returncode == 3, proc.stderr
    assert "target failed (exit 4)" in proc.stderr
