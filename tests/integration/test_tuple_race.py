"""Issue 10's worst case, a short version of bench/tuple_race.py: a target building tuples
from generators in a tight loop (switch interval 0.2 ms) under ``heapwatch run --interval
0.1s`` must raise no SystemError, whichever census core runs in it. (The census before
this fix made the same run raise dozens; bench/tuple_race.py covers every trace mode.)"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from helpers import ROOT, heapwatch

TARGET = os.path.join(ROOT, "bench", "tuple_race.py")
LINE = re.compile(r"^tuple-race: (\d+) SystemError, (\d+) other errors, (\d+) tuples$", re.M)


def test_the_census_never_makes_the_target_raise(census_core: str, tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HEAPWATCH_NO_NATIVE"}
    if census_core == "python":
        env["HEAPWATCH_NO_NATIVE"] = "1"
    out = os.path.join(str(tmp_path), "run")
    proc = heapwatch("run", "--interval", "0.1s", "--trace", "off", "--out", out, "--",
                     sys.executable, TARGET, "--target", "5", "--heap", "50000", env=env)
    m = LINE.search(proc.stdout)
    assert m is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        rep = json.load(f)
    assert rep["agent"]["core"] == census_core
    assert rep["run"]["snapshots"] >= 5, "too few snapshots for the probe to mean anything"
    assert int(m.group(3)) > 10_000
    assert (int(m.group(1)), int(m.group(2))) == (0, 0), "the target raised"
