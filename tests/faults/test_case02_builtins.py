"""Case 2: a target that deletes builtins.

The agent's modules bind the builtins as they were at import (heapwatch._builtins), so
its own code and its error guards keep working; nothing of it raises into the target
(no NameError on the target's stderr or in threading.excepthook). What still fails (the
stdlib code the agent calls, e.g. json without ``isinstance``) is recorded: the report's
``agent.errors`` is not empty then, and the agent goes on once the builtins are back.
"""

from __future__ import annotations

import os
import sys

import pytest
from faultkit import agent_errors, heapwatch, report, write

from heapwatch.store import open_run

TARGET = """
    import builtins, os, sqlite3, sys, time
    SAVED = dict(vars(builtins))
    for k, v in SAVED.items():
        globals().setdefault(k, v)  # the target keeps what it needs for itself
    STORE = os.path.join(sys.argv[1], "run.sqlite")
    WHAT = sys.argv[2]
    DROP = [n for n in SAVED if not n.startswith("__") or n == "__import__"]
    if WHAT == "sandbox":
        DROP = ["open", "exec", "eval", "compile", "__import__", "input", "breakpoint", "exit",
                "quit", "help", "getattr", "setattr", "delattr", "globals", "vars", "locals",
                "BaseException", "Exception", "len", "type", "id", "print", "repr", "hasattr"]
    SQL = {"snapshots": "SELECT count(*) FROM snapshots WHERE source = 'agent'",
           "errors": "SELECT count(*) FROM events WHERE kind = 'error'"}

    DB = sqlite3.connect(STORE, isolation_level=None)  # opened while the stdlib still works

    def count(what):
        return DB.execute(SQL[what]).fetchone()[0]

    def wait_more(what, k):  # a handshake with the agent through its store
        goal, deadline = count(what) + k, time.monotonic() + 60
        while count(what) < goal and time.monotonic() < deadline:
            time.sleep(0.02)

    DATA = []
    wait_more("snapshots", 2)
    for n in DROP:
        del builtins.__dict__[n]
    t0 = time.time()
    DATA.extend([i] * 10 for i in range(3000))
    wait_more("snapshots" if WHAT == "sandbox" else "errors", 4)
    t1 = time.time()
    builtins.__dict__.update(SAVED)
    wait_more("snapshots", 2)
    print("done", t0, t1, flush=True)
"""


@pytest.mark.parametrize("what", ["sandbox", "everything"])
def test_case02_deleted_builtins_never_raise_into_the_target(what: str, workdir: str) -> None:
    script = write(os.path.join(workdir, "t.py"), TARGET)
    out = os.path.join(workdir, "run")
    proc = heapwatch("run", "--interval", "0.05", "--trace", "off", "--out", out, "--",
                     sys.executable, script, out, what, timeout=180)
    assert proc.returncode == 0, proc.stderr
    word, t0, t1 = proc.stdout.split()
    assert word == "done"
    # heapwatch's own lines may name the errors it recorded; the target's stderr must not
    target_err = "\n".join(line for line in proc.stderr.splitlines()
                           if not line.startswith(("heapwatch:", "  ")))
    assert "NameError" not in target_err and "heapwatch-agent" not in target_err, proc.stderr
    rep = report(out)
    run = open_run(out)
    during = [s for s in run.agent_snapshots if float(t0) <= s.t <= float(t1)]
    after = [s for s in run.agent_snapshots if s.t > float(t1)]
    assert len(after) >= 2, rep["agent"]  # it kept working
    assert rep["agent"]["stopped"] == "exit"
    if what == "sandbox":  # the agent needs none of these: it just goes on
        assert len(during) >= 4 and agent_errors(rep) == []
    else:  # json, os.path... of the stdlib fail inside the agent: recorded, not raised
        assert rep["agent"]["errors"] and all("NameError" in e for e in rep["agent"]["errors"])
