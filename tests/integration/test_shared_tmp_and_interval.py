"""Issue 12 end to end: a shared /tmp does not make a leak, and a run with --duration and
no --interval gives a verdict."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from helpers import SCENARIOS, heapwatch, report

# Another process on the machine: creates ~10 files/s in the system temp dir and deletes
# each one 30 s later, so the directory holds more and more of its files during a run.
CHURN = r"""
import collections, os, signal, sys, tempfile, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
made = collections.deque()
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
try:
    while time.monotonic() < end:
        fd, name = tempfile.mkstemp(prefix="hw-churn-", dir="/tmp")
        os.close(fd)
        made.append((time.monotonic(), name))
        while made and made[0][0] < time.monotonic() - 30:
            os.unlink(made.popleft()[1])
        time.sleep(0.1)
finally:
    for _, name in made:
        os.unlink(name)
"""


@pytest.mark.slow
def test_other_processes_temp_files_are_not_the_targets(tmp_path: Any) -> None:
    churn = subprocess.Popen([sys.executable, "-c", CHURN, "40"], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert churn.stdout is not None and churn.stdout.readline().strip() == "ready"
        steady = os.path.join(SCENARIOS, "lru_cache", "lru_cache.py")
        out = str(tmp_path / "soak")
        proc = heapwatch("soak", "--interval", "0.5", "--duration", "15s", "--min-window", "4s",
                         "--out", out, "--", sys.executable, steady, timeout=180)
        assert proc.returncode == 0, proc.stderr
        rep = report(out)
        assert rep["verdict"] == "no-leak"
        assert not any(f["kind"] == "files" for f in rep["findings"])
    finally:
        churn.terminate()
        churn.wait(30)
        if churn.stdout is not None:
            churn.stdout.close()


@pytest.mark.slow
def test_duration_without_interval_gives_a_verdict(tmp_path: Any) -> None:
    here = os.path.join(SCENARIOS, "pending_tracker")
    out = str(tmp_path / "run")
    proc = heapwatch("run", "--duration", "20s", "--out", out, "--", sys.executable,
                     "pending_tracker.py", cwd=here)
    assert proc.returncode == 0, proc.stderr
    rep = report(out)
    assert rep["run"]["snapshots"] >= 30, rep["verdict_reason"]
    assert rep["verdict"] == "leak", rep["verdict_reason"]
    assert rep["findings"][0]["path"].endswith("TRACKER._pending")
