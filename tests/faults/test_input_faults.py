"""Issue 10, bad input cases: pids (10), durations (11), a phase command that cannot start
(12)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
from faultkit import assert_one_line_error, heapwatch, write

import heapwatch as hw
from heapwatch.agent import AgentConfig
from heapwatch.errors import AgentError, HeapwatchError, UsageError
from heapwatch.store import open_run

BAD_PIDS = ["99999999999999999999", str(2**31), str(2**31 + 5), str(2**63), "١٢٣", "٤٢",
            "0", "00", "4242x"]


# -- case 10 --------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["stop", "mark", "attach"])
def test_case10_pids_out_of_range_or_not_digits(verb: str) -> None:
    for pid in BAD_PIDS:
        args = [verb, pid] + (["load"] if verb == "mark" else [])
        proc = heapwatch(*args)
        line = assert_one_line_error(proc)
        assert "pid" in line or "no process" in line or "neither a pid" in line, line


# -- case 11 --------------------------------------------------------------------------------
HUGE = ["9" * 400, "99999999999h", "1" + "0" * 30 + "ms", "8785h", "0", "0.0s", "nan", "inf",
        "1e999", "٣s"]


def test_case11_huge_or_odd_durations_are_refused_everywhere(tmp_path: Any) -> None:
    for text in HUGE:
        proc = heapwatch("run", "--interval", text, "--out", str(tmp_path / "r"), "--",
                         sys.executable, "-c", "pass")
        assert_one_line_error(proc, "duration")
        assert not os.path.exists(tmp_path / "r")
    assert_one_line_error(heapwatch("run", "--phase", f"load={HUGE[0]}", "--", sys.executable,
                                    "-c", "pass"), "duration")
    for value in (1e30, float("inf"), float("nan"), 10**400, -1, "9" * 400, True):
        with pytest.raises(UsageError, match="invalid duration"):
            hw.start(out=str(tmp_path / "api"), interval=value)  # type: ignore[arg-type]
        with pytest.raises(AgentError, match="invalid duration"):
            AgentConfig(store=str(tmp_path / "x"), interval=value)  # type: ignore[arg-type]
    assert not os.path.exists(tmp_path / "api")


def test_case11_the_longest_interval_allowed_keeps_mark_and_stop_working(tmp_path: Any) -> None:
    """At the maximum (a year) the agent's timers still work: mark and stop answer."""
    out = str(tmp_path / "api")
    hw.start(out=out, interval="8784h", trace="off")
    try:
        hw.mark("load")
    finally:
        result = hw.stop()
    assert [m.phase for m in open_run(out).marks] == ["load"]
    assert result.analysis.agent["stopped"] == "api"


# -- case 12 --------------------------------------------------------------------------------
FOREVER = """
    import time
    print("target up", flush=True)
    try:
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:  # how heapwatch ends it, after the agent's final snapshot
        pass
"""


def test_case12_missing_phase_command_is_refused_before_the_target_starts(tmp_path: Any
                                                                         ) -> None:
    script = write(tmp_path / "forever.py", FOREVER)
    proc = heapwatch("run", "--phase", "baseline=1s", "--phase", "load=1s:no-such-load-tool",
                     "--out", str(tmp_path / "r"), "--", sys.executable, script, timeout=60)
    assert_one_line_error(proc, "--phase load", "no-such-load-tool")
    assert "target up" not in proc.stdout


def test_case12_phase_command_that_cannot_start_stops_the_target_and_reports(
        tmp_path: Any) -> None:
    script = write(tmp_path / "forever.py", FOREVER)
    load = write(tmp_path / "load.sh", "#!/bin/sh\necho load\n")
    os.chmod(load, 0o644)  # exists, but cannot be executed: found only when it starts
    out = str(tmp_path / "r")
    proc = heapwatch("run", "--interval", "0.2", "--phase", "baseline=1s",
                     "--phase", f"load=1s:{load}", "--out", out, "--", sys.executable, script,
                     timeout=90)
    assert proc.stdout == "target up\n"
    assert_one_line_error(proc, "load", "Permission denied", "target was stopped")
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        rep = json.load(f)
    assert rep["agent"]["stopped"] is not None  # the agent was asked to stop: final snapshot
    run = open_run(out)
    assert run.agent_snapshots[-1].reason == "stop"
    assert [m.phase for m in run.marks] == ["baseline"]
    assert run.meta["launch"]["ended_by"] == "error"
    with pytest.raises(HeapwatchError):
        hw.stop()  # nothing of that run is left in this process either


def test_history_paths_that_are_not_utf8_are_named_readably(tmp_path: Any) -> None:
    import subprocess

    base = os.fsencode(str(tmp_path))
    with open(base + b"/junk-\xff.sqlite", "wb") as f:
        f.write(b"not a database at all")
    for path, needle in ((b"/none-\xff.sqlite", "no history at"),
                         (b"/junk-\xff.sqlite", "file is not a database")):
        proc = subprocess.run([sys.executable.encode(), b"-m", b"heapwatch", b"history",
                               base + path], capture_output=True, timeout=60)
        err = proc.stderr.decode("utf-8")  # strict: what is printed is UTF-8
        assert proc.returncode == 2 and "Traceback" not in err, err
        assert needle in err and path[1:5].decode() + "-\ufffd.sqlite" in err, err
        assert "\\udc" not in err, err
