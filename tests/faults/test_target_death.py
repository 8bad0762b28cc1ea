"""The report says when the target died and how: exit code, signal, and the exception
it printed (type and place only, never the message). Before, a dying target left an
"inconclusive" report that never mentioned it.
"""

from __future__ import annotations

import os
import sys

import pytest
from faultkit import heapwatch, report, write

DIES = """
    import os, signal, sys, time
    DATA = []

    def build(n):
        return tuple(x for x in range(n))

    def fail(how):
        if how == "exception":
            raise SystemError("Objects/tupleobject.c:927: bad argument to internal function "
                              "secret-in-message-Zq9")   # as the tuple race raised it
        if how == "code":
            sys.exit(3)
        if how == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "os_exit":
            os._exit(0)

    for i in range(12):
        DATA.append(build(200))
        time.sleep(0.05)
    fail(sys.argv[1])
"""


@pytest.mark.parametrize(("how", "code", "ended", "text"), [
    ("exception", 1, "died", "uncaught SystemError at t.py:10, exit code 1"),
    ("code", 3, "died", "exit code 3"),
    ("signal", 128 + 9, "died", "killed by SIGKILL"),
    ("os_exit", 0, "exited", "exit code 0"),
    ("none", 0, "exited", "exit code 0"),
])
def test_target_death_is_reported(how: str, code: int, ended: str, text: str,
                                  workdir: str) -> None:
    script = write(os.path.join(workdir, "t.py"), DIES)
    out = os.path.join(workdir, "run")
    proc = heapwatch("run", "--interval", "0.1", "--out", out, "--", sys.executable, script, how)
    assert proc.returncode == code, proc.stderr
    rep = report(out)
    te = rep["target_exit"]
    assert (te["ended"], te["how"]) == (ended, text)
    assert te["at_s"] is not None and te["at_s"] >= 0.4
    with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
        md = f.read()
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
        html = f.read()
    if ended == "died":
        note = f"the target died {te['at_s']:g}s into the run ({text})"
        assert rep["verdict_reason"].startswith(note + "; ")
        assert note in proc.stderr  # the summary
        assert f"- end: the target died at {te['at_s']:g}s: {text}" in md
        assert f"the target died at {te['at_s']:g}s: {text}" in html
    else:
        assert "died" not in rep["verdict_reason"]
        assert f"- end: the target exited by itself at {te['at_s']:g}s" in md
    assert "secret-in-message" not in md + html + str(rep)
    if how == "exception":
        assert te["exception"] == {"type": "SystemError", "at": "t.py:10"}
    if how == "signal":
        assert te["signal"] == "SIGKILL" and te["exit_code"] == -9


def test_target_stopped_by_heapwatch_is_not_a_death(workdir: str) -> None:
    script = write(os.path.join(workdir, "t.py"), """
        import time
        while True:
            time.sleep(0.05)
    """)
    out = os.path.join(workdir, "run")
    proc = heapwatch("run", "--interval", "0.1", "--duration", "1", "--out", out, "--",
                     sys.executable, script)
    assert proc.returncode == 0, proc.stderr
    te = report(out)["target_exit"]
    assert (te["ended"], te["died"]) == ("stopped", False)
