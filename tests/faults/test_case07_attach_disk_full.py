"""Case 7 for attach: the disk fills while an attach records. As with run, every snapshot
stored before stays, room set aside at the start takes the last metadata and the reports,
and the report says the disk was full."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from faultkit import fill, need_root, small_fs, wait_for, write
from test_case21_22_attach import TARGET, attach, env_for, finish, python311

from heapwatch.store import LiveReader, open_run
from procs import reap


def stored(store: str) -> int:
    if not os.path.exists(store):
        return 0
    reader = LiveReader(store)
    try:
        return reader.latest()[0]
    finally:
        reader.close()


def test_case07_disk_full_attach_keeps_what_it_stored_and_writes_reports(
        workdir: str) -> None:
    need_root()
    py = python311()
    script = write(os.path.join(workdir, "target.py"), TARGET)
    with small_fs(os.path.join(workdir, "fs"), "4m") as fs:
        out = os.path.join(fs, "run")
        target = subprocess.Popen([py, script], env=env_for(workdir), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        rec = None
        try:
            assert target.stdout is not None and target.stdout.readline() == "ready\n"
            rec = attach(target.pid, out, workdir)
            store = os.path.join(out, "run.sqlite")
            wait_for(lambda: stored(store) >= 3, 120, "three snapshots in the store")
            assert os.path.getsize(store + "-reserve") > 0  # set aside at the start
            before = stored(store)
            fill(os.path.join(fs, "filler"))
            stop = subprocess.run([sys.executable, "-m", "heapwatch", "stop", str(target.pid)],
                                  env=env_for(workdir), capture_output=True, text=True,
                                  timeout=60)
            assert stop.returncode == 0, stop.stderr
            _, err = rec.communicate(timeout=120)
            assert "Traceback" not in err, err
            assert rec.returncode == 0, err  # every report written
            for name in ("report.json", "report.md", "report.html"):
                assert os.path.getsize(os.path.join(out, name)) > 0, name
            with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
                rep: dict[str, Any] = json.load(f)
            assert any("disk was full" in e for e in rep["agent"]["errors"]), rep["agent"]
            assert len(open_run(out).agent_snapshots) >= before
            assert not os.path.exists(store + "-reserve")
        except BaseException:
            reap(target)  # finish() below is not reached: nothing else would end it
            raise
        finally:
            if rec is not None and rec.poll() is None:
                rec.kill()
                rec.communicate()
            if target.poll() is None:
                os.kill(target.pid, signal.SIGCONT)
        assert finish(target) == (0, "woke ['MainThread']\n", "")
