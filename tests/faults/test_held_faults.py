"""Issue 10, cases that held and must keep holding (store, run directory, permissions):
kill -9 of the target, HTML/JS in names, values never written, another user's eyes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from faultkit import as_other_user, heapwatch, need_root, write

from heapwatch.analysis import analyze_run
from heapwatch.model import ContainerStat, ItemSample, ProcessStat, Snapshot
from heapwatch.report import write_reports
from heapwatch.store import Writer, open_run
from procs import reap

SNAPSHOTS_THEN_WAIT = """
    import os, time, heapwatch
    DATA = []
    for i in range(5):
        DATA.extend(range(1000))
        heapwatch.snapshot()
    print(os.getpid(), flush=True)
    while True:
        time.sleep(0.05)
"""


def test_held_kill9_of_the_target_keeps_every_finished_snapshot(tmp_path: Any) -> None:
    script = write(tmp_path / "victim.py", SNAPSHOTS_THEN_WAIT)
    out = str(tmp_path / "r")
    proc = subprocess.Popen([sys.executable, "-m", "heapwatch", "run", "--interval", "60s",
                             "--trace", "off", "--out", out, "--", sys.executable, script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())  # after its five snapshots were taken
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 128 + 9, err
    seqs = [s.seq for s in open_run(out).agent_snapshots]
    assert seqs == [1, 2, 3, 4, 5, 6]  # start, then the five the target asked for
    assert os.path.exists(os.path.join(out, "report.json"))


NASTY = ['<script>alert("x")</script>', '"><img src=x onerror=alert(1)>', "</style><b>&amp;"]


def test_held_html_and_js_in_names_escaped_in_report_html(tmp_path: Any) -> None:
    run = str(tmp_path / "r")
    os.makedirs(run)
    w = Writer(os.path.join(run, "run.sqlite"),
               meta={"run": {"command": ["python", NASTY[0]], "interval_s": 1.0},
                     "agent": {"pid": 7, "python": "3.11.7"}})
    path = f"app.CACHE[{NASTY[1]!r}]"
    for i in range(30):
        w.write_snapshot(Snapshot(
            seq=i + 1, pid=7, t=1000.0 + i, mono=float(i), reason="interval", duration_s=0.01,
            phase=None, traced=False, process=ProcessStat(rss=50_000_000),
            types={NASTY[2]: 100 + 40 * i},
            containers=(ContainerStat(path, "dict", 200 + 40 * i, 0, path),),
            items=(ItemSample(path, NASTY[0], 8, f"/srv/{NASTY[2]}.py:38", None, 120),)))
    w.close()
    analysis = analyze_run(run)
    assert analysis.findings
    html_path = write_reports(analysis, run, ("html",))["html"]
    with open(html_path, encoding="utf-8") as f:
        html = f.read()
    for nasty in NASTY:
        assert nasty not in html
    assert "&lt;script&gt;" in html and "onerror" in html  # shown, escaped


SECRET_VALUES = """
    import time
    SESSIONS = {}
    for i in range(400):
        SESSIONS[f"user{i}"] = "VALUE-hunter2-" + str(i).zfill(6)
        BLOB = b"BYTES-swordfish-" + str(i).encode()
        SESSIONS[f"blob{i}"] = BLOB
        time.sleep(0.004)
"""


def test_held_values_never_written_to_the_store_or_reports(tmp_path: Any) -> None:
    script = write(tmp_path / "secrets.py", SECRET_VALUES)
    out = str(tmp_path / "r")
    proc = heapwatch("run", "--interval", "0.1", "--trace", "on", "--out", out, "--",
                     sys.executable, script)
    assert proc.returncode == 0, proc.stderr
    assert "hunter2" not in proc.stderr and "swordfish" not in proc.stderr
    files = 0
    for base, _, names in os.walk(out):
        for name in names:
            with open(os.path.join(base, name), "rb") as f:
                data = f.read()
            files += 1
            assert b"hunter2" not in data and b"swordfish" not in data, name
    assert files >= 4
    assert any("SESSIONS" in (c.path or "") for s in open_run(out).snapshots
               for c in s.containers)  # the dict was seen: only its name was kept


@pytest.fixture
def reachable_tmp() -> Iterator[str]:
    """A directory whose parents the other user can pass through (pytest's tmp_path sits
    under a 0700 directory, which would make the test pass for the wrong reason)."""
    need_root()
    base = tempfile.mkdtemp(prefix="heapwatch-test-eyes-")
    try:
        os.chmod(base, 0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_held_another_user_cannot_read_a_run_directory(reachable_tmp: str) -> None:
    out = os.path.join(reachable_tmp, "r")
    proc = heapwatch("run", "--interval", "0.2", "--out", out, "--", sys.executable, "-c",
                     "import time; time.sleep(0.5)")
    assert proc.returncode == 0, proc.stderr
    probe = subprocess.run(["cat", os.path.join(reachable_tmp, "nothing-here")],
                           preexec_fn=as_other_user(), capture_output=True, text=True)
    assert "No such file" in probe.stderr  # the other user does reach the parent
    for cmd in (["ls", out], ["cat", os.path.join(out, "report.json")],
                ["cat", os.path.join(out, "run.sqlite")],
                ["cat", os.path.join(out, "charts", "memory.png")]):
        denied = subprocess.run(cmd, preexec_fn=as_other_user(), capture_output=True,
                                text=True)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, (cmd, denied)
