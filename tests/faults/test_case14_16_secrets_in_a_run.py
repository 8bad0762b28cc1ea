"""Cases 14-16 end to end, and the held case "values and environment never written".

A target holds secret-shaped dict keys, attribute names, a thread name and a type name,
secret values, gets passwords on its command line and secrets in its environment. After
``heapwatch run`` no planted string appears anywhere under the run directory (the SQLite
files byte for byte, reports, charts) nor on heapwatch's or the target's stderr. With
``--show-names`` the names do appear: the grep can fail.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from contextlib import closing

from faultkit import files_containing, heapwatch, report, write

KEYS = {
    "pay": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "pub": "pk_live_51HqLyjWDarjtT1zdp7dcXyZ",
    "cloud": "AKIAIOSFODNN7EXAMPLZ",
    "code": "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s",
    "chat": "xoxb-123456789012-AbCdEfGhIjKlMnOpQrStUvWx",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.Zm9vYmFyYmF6",
    "rand": "q7Xk2PzR9mWv4LtB8nYc3JhD",
}
ATTR = "gAAAAABk9Zq3T8xLmP2wRv7NcYb"            # an attribute named with a token
THREAD = "worker-glpat-Xy9Kq2Lm8Np4Rt6Vw3Zb"      # a thread named with a token
TYPE = "Session_9f86d081884c7d659a2feaa0c55ad015"   # a class named with a hex digest
VALUE = "value-hunter2-correct-horse-battery"       # a value: never written at all
ARGV = ["--password=Tr0ub4dor&3", "-p", "pw-0ne-Two-3", "--api-key", "ak-f00-b4r-b4z",
        "postgres://admin:S3cr3tPassw0rd@db.internal/app"]
ARGV_SECRETS = ["Tr0ub4dor&3", "pw-0ne-Two-3", "ak-f00-b4r-b4z", "S3cr3tPassw0rd"]
ENV = {"MY_SERVICE_TOKEN": "envtoken-Zz9Yy8Xx7", "PLAIN_SETTING": "plain-env-value-q1w2e3"}

TARGET = f"""
    import sys, threading, time
    KEYS = {list(KEYS.values())!r}
    STORE = {{k: [] for k in KEYS}}
    VALUES = {{"plain": {VALUE!r}}}

    class Holder:
        pass

    HOLDER = Holder()
    setattr(HOLDER, {ATTR!r}, [])
    Session = type({TYPE!r}, (), {{}})
    SESSIONS = []
    go = threading.Event()

    def hold():
        mine = []
        for i in range(400):
            mine.append(i)
        go.wait()

    t = threading.Thread(target=hold, name={THREAD!r})
    t.start()
    print("ready", sys.argv[1:] == {ARGV!r}, flush=True)
    for step in range(40):
        for k in KEYS:
            STORE[k].extend(range(30))
        getattr(HOLDER, {ATTR!r}).extend(range(30))
        SESSIONS.extend(Session() for _ in range(30))
        time.sleep(0.05)
    go.set()
    t.join()
"""


def planted() -> list[str]:
    return [*KEYS.values(), ATTR, THREAD.split("-", 1)[1], "9f86d081884c7d659a2feaa0c55ad015",
            VALUE, *ARGV_SECRETS, *ENV.values()]


def run_target(workdir: str, *extra: str) -> tuple[str, str, str]:
    script = write(os.path.join(workdir, "svc.py"), TARGET)
    out = os.path.join(workdir, "run")
    env = dict(os.environ, **ENV)
    proc = heapwatch("run", "--interval", "0.2", "--trace", "on", *extra, "--out", out, "--",
                     sys.executable, script, *ARGV, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ready True\n"
    return out, proc.stderr, proc.stdout


def test_case14_15_16_no_planted_secret_leaves_the_process(workdir: str) -> None:
    out, stderr, _ = run_target(workdir)
    assert files_containing(out, planted()) == {}
    assert [s for s in planted() if s in stderr] == []
    rep = report(out)
    assert rep["run"]["command"][-6:] == ["--password=[…]", "-p", "[…]", "--api-key", "[…]",
                                          "postgres://[…]@db.internal/app"]
    with closing(sqlite3.connect(os.path.join(out, "run.sqlite"))) as db:
        names = {r[0] for r in db.execute("SELECT name FROM names")}
    # what the agent saw, named with the secret parts hidden
    assert {"svc.STORE[…]", "svc.HOLDER.[…]", "<thread worker-[…]>.hold.mine",
            "svc.Session_[…]"} <= names


def test_case14_show_names_opt_in_writes_the_names_and_still_no_values(workdir: str) -> None:
    out, _, _ = run_target(workdir, "--show-names")
    hits = files_containing(out, planted())
    assert KEYS["pay"] in hits and ATTR in hits  # the grep above can fail
    for never in (VALUE, *ENV.values()):
        assert never not in hits
