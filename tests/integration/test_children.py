"""Children of a watched process: forked ones get a fresh agent without a warning or a lock
held, exec'd Python ones get the bootstrap, and nothing of heapwatch shows in them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from typing import Any

import pytest
from helpers import ROOT, heapwatch

SRC = os.path.join(ROOT, "src")
PYENV = "/root/.pyenv/versions"

FORKER = r"""
import os, sys, time, heapwatch
heapwatch.start(out=sys.argv[1], interval=0.05, trace=sys.argv[2])
CACHE = {}
kids = []
for k in range(3):
    time.sleep(0.12)  # the agent's thread is mid-snapshot or waiting, either way
    pid = os.fork()
    if pid == 0:
        for i in range(2000):
            CACHE[i] = str(i)
            if i % 400 == 0:
                time.sleep(0.06)
        os._exit(0) if k == 2 else sys.exit(0)
    kids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids]
heapwatch.stop()
print(codes)
print(kids)
"""


def _pythons() -> list[str]:
    out = [sys.executable]
    for v in ("3.12.1", "3.13.0"):
        exe = os.path.join(PYENV, v, "bin", "python")
        if os.path.exists(exe):
            out.append(exe)
    return out


@pytest.mark.parametrize("python", _pythons(), ids=lambda p: p.split("/")[-3]
                         if "pyenv" in p else "venv")
@pytest.mark.parametrize("trace", ["off", "on"])
def test_forked_children_get_an_agent_and_no_fork_warning(python: str, trace: str,
                                                          tmp_path: Any) -> None:
    out = str(tmp_path / "run")
    script = tmp_path / "forker.py"
    script.write_text(FORKER)
    env = dict(os.environ, PYTHONPATH=SRC)
    for flags in (["-W", "error"], ["-W", "always::DeprecationWarning"]):
        proc = subprocess.run([python, *flags, str(script), out + flags[1][:3], trace],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        codes, kids = proc.stdout.splitlines()
        assert codes == "[0, 0, 0]", proc.stdout
        assert proc.stderr == "", proc.stderr  # no "multi-threaded, use of fork()" warning
        conn = sqlite3.connect(os.path.join(out + flags[1][:3], "run.sqlite"))
        rows = conn.execute("SELECT pid, how, role, end_reason FROM processes ORDER BY id").fetchall()
        counts = dict(conn.execute("SELECT pid, count(*) FROM snapshots GROUP BY pid").fetchall())
        conn.close()
        assert [r[1] for r in rows] == ["root", "fork", "fork", "fork"], rows
        assert all(r[2] == "worker" for r in rows[1:]), rows
        # sys.exit ends with the agent's final snapshot; os._exit skips it (nothing runs).
        # By pid: a busy machine may register the children in another order than forked.
        ends = {r[0]: r[3] for r in rows}
        assert [ends.get(pid) for pid in json.loads(kids)[:2]] == ["exit", "exit"], rows
        assert all(counts.get(pid, 0) >= 2 for pid in [rows[0][0], *json.loads(kids)[:2]]), (
            rows, counts)


PARENT = r"""
import json, os, subprocess, sys
child = subprocess.run([sys.executable, "-c", '''
import json, os, sys
print(json.dumps({"env": sorted(k for k in os.environ if k.startswith("HEAPWATCH")),
                  "pythonpath": os.environ.get("PYTHONPATH"),
                  "shadow": [p for p in sys.path if "_bootstrap" in p],
                  "theirs": getattr(sys.modules.get("sitecustomize"), "MARK", None),
                  "agent": "heapwatch.agent.sampler" in sys.modules}))
'''], capture_output=True, text=True, check=True)
print(child.stdout.strip())
"""


@pytest.mark.parametrize("children", ["all", "fork"])
def test_an_execd_child_sees_its_own_environment(children: str, tmp_path: Any) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("MARK = 'their sitecustomize ran'\n")
    (tmp_path / "parent.py").write_text(PARENT)
    out = str(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=str(theirs))
    proc = heapwatch("run", "--interval", "0.2s", "--children", children, "--out", out, "--",
                     sys.executable, "parent.py", cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["env"] == [] and seen["pythonpath"] == str(theirs)
    assert seen["shadow"] == [] and seen["theirs"] == "their sitecustomize ran"
    assert seen["agent"] is (children == "all")
    conn = sqlite3.connect(os.path.join(out, "run.sqlite"))
    hows = [r[0] for r in conn.execute("SELECT how FROM processes WHERE how != 'external'")]
    conn.close()
    assert hows == (["root", "exec"] if children == "all" else ["root"])
