"""Phases (scheduled, marked live, derived) and the diff / ls / mark / stop commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from helpers import SCENARIOS, heapwatch, report

from heapwatch.store import open_run
from procs import reap


def test_a_phase_schedule_marks_phases_and_runs_the_load(tmp_path: Any) -> None:
    out = str(tmp_path / "r")
    flag = tmp_path / "load-ran"
    load = f"{sys.executable} -c \"open({str(flag)!r}, 'w').write('1'); import time; time.sleep(60)\""
    proc = heapwatch("run", "--interval", "0.2", "--out", out,
                     "--phase", "baseline=1.5s", "--phase", f"load=2s:{load}", "--phase", "after=1.5s",
                     "--", sys.executable, os.path.join(SCENARIOS, "lru_cache", "lru_cache.py"))
    assert proc.returncode == 0, proc.stderr
    assert flag.read_text() == "1"
    rep = report(out)
    assert rep["phases_derived"] is False
    assert list(rep["phases"]) == ["baseline", "load", "after"]
    run = open_run(out)
    marks = {m.phase: m.t - run.agent_snapshots[0].t for m in run.marks}
    for name, fig in rep["phases"].items():
        # every snapshot of a phase lies between its mark and the next one
        assert fig["start_s"] >= marks[name] - 1e-6
        nxt = [t for t in marks.values() if t > marks[name]]
        if nxt:
            assert fig["end_s"] < min(nxt)
    # a phase never starts early (a busy machine can only make it late)
    assert marks["load"] - marks["baseline"] >= 1.4


def test_bad_phase_is_one_line_exit_2() -> None:
    for spec in ("load", "load=fast", "=2s", "load=2s:"):
        proc = heapwatch("run", "--phase", spec, "--", sys.executable, "-c", "pass")
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_without_marks_phases_are_derived_and_diff_puts_the_leak_first(tmp_path: Any) -> None:
    out = str(tmp_path / "r")
    proc = heapwatch("run", "--interval", "0.5", "--snapshots", "20", "--out", out, "--",
                     sys.executable, "pending_tracker.py",
                     cwd=os.path.join(SCENARIOS, "pending_tracker"))
    assert proc.returncode == 0, proc.stderr
    rep = report(out)
    assert rep["phases_derived"] is True and {"baseline", "peak"} <= set(rep["phases"])
    diff = heapwatch("diff", out, "--from", "baseline", "--to", "peak", "--top", "5")
    assert diff.returncode == 0, diff.stderr
    rows = diff.stdout.splitlines()
    assert rows[2].split()[0] == "pending_tracker.TRACKER._pending", diff.stdout
    ls = heapwatch("ls", str(tmp_path))
    assert ls.returncode == 0 and "leak" in ls.stdout and "r " in ls.stdout


def test_mark_and_stop_a_live_run_by_dir_and_by_pid(tmp_path: Any) -> None:
    script = tmp_path / "svc.py"
    script.write_text("import os, sys, time\nprint(os.getpid(), flush=True)\n"
                      "while True:\n    time.sleep(0.05)\n")
    out = str(tmp_path / "r")
    proc = subprocess.Popen([sys.executable, "-m", "heapwatch", "run", "--interval", "0.2",
                             "--out", out, "--", sys.executable, str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        deadline = time.monotonic() + 30
        while open_run(out).meta.get("agent") is None:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        assert heapwatch("mark", out, "load").returncode == 0
        m = heapwatch("mark", str(pid), "peak")
        assert m.returncode == 0, m.stderr
        s = heapwatch("stop", str(pid))
        assert s.returncode == 0, s.stderr
        again = heapwatch("mark", out, "after")
        assert again.returncode == 2 and "has ended" in again.stderr
        proc.send_signal(subprocess.signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        reap(proc)
    run = open_run(out)
    assert [m.phase for m in run.marks] == ["load", "peak"]
    assert run.meta["agent_stopped"]["reason"] == "cli"
    missing = heapwatch("mark", "999999999", "load")
    assert missing.returncode == 2 and "no process" in missing.stderr
