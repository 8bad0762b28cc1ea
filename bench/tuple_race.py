"""Does the agent ever make the target raise? The tuple race of issue 10, counted.

A thread building a tuple from a generator (``tuple(x for x in ...)``) holds the only
reference to it and resizes it as it grows; ``_PyTuple_Resize`` raises ``SystemError: bad
argument to internal function`` when someone else holds a reference too — a census that
keeps the list from ``gc.get_objects()`` while the GIL passes to that thread. The target
here does nothing else, in a tight loop, with ``sys.setswitchinterval(0.0002)`` so that
the GIL changes hands about 25x more often than by default, under
``heapwatch run --interval 0.1s``; it prints how many SystemErrors it caught.

Run::

    python bench/tuple_race.py                 # the issue's bar: 10 runs x 60 s per trace mode
    python bench/tuple_race.py --quick         # 1 run x 10 s per trace mode and core
    python bench/tuple_race.py --runs 3 --seconds 20 --modes off,auto --cores native,python

The core is chosen in the target with ``HEAPWATCH_NO_NATIVE=1`` (python) or not (native,
the default where the extension is built). The goal: 0 SystemErrors everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.abspath(__file__)
LINE = re.compile(r"^tuple-race: (\d+) SystemError, (\d+) other errors, (\d+) tuples$", re.M)


def target(seconds: float, heap: int) -> int:
    """The target: build tuples from generators for ``seconds``; count what they raise."""
    sys.setswitchinterval(0.0002)
    held = [[i] for i in range(heap)]  # a heap worth a census: it takes a while
    data = list(range(40))
    errors = other = n = 0
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(100):
            try:
                t = tuple(x for x in data)
                if len(t) != 40:
                    other += 1
            except SystemError:
                errors += 1
            except Exception:
                other += 1
            n += 1
    del held
    print(f"tuple-race: {errors} SystemError, {other} other errors, {n} tuples", flush=True)
    return 0


@dataclass
class Result:
    system_errors: int
    other_errors: int
    tuples: int
    snapshots: int
    core: str
    exit_code: int


def run_once(trace: str, core: str, seconds: float, interval: str = "0.1s",
             heap: int = 100_000, timeout: float | None = None) -> Result:
    """One ``heapwatch run`` of the target; what it caught and what the agent recorded."""
    env = dict(os.environ)
    env.pop("HEAPWATCH_NO_NATIVE", None)
    if core == "python":
        env["HEAPWATCH_NO_NATIVE"] = "1"
    with tempfile.TemporaryDirectory(prefix="heapwatch-tuple-race-") as tmp:
        out = os.path.join(tmp, "run")
        proc = subprocess.run(
            [sys.executable, "-m", "heapwatch", "run", "--interval", interval, "--trace", trace,
             "--out", out, "--", sys.executable, HERE, "--target", str(seconds),
             "--heap", str(heap)],
            capture_output=True, text=True, env=env, timeout=timeout or seconds * 4 + 120,
        )
        m = LINE.search(proc.stdout)
        if m is None:
            raise RuntimeError(f"the target printed no count (exit {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
            rep = json.load(f)
        agent = rep.get("agent", {})
        return Result(int(m.group(1)), int(m.group(2)), int(m.group(3)),
                      int(rep.get("run", {}).get("snapshots", 0)),
                      str(agent.get("core") or "?"), proc.returncode)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    ap.add_argument("--heap", type=int, default=100_000, help="lists the target holds")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--modes", default="off,auto,on", help="trace modes")
    ap.add_argument("--cores", default="native", help="native, python or both")
    ap.add_argument("--interval", default="0.1s")
    ap.add_argument("--quick", action="store_true", help="1 run x 10 s per mode, both cores")
    args = ap.parse_args(argv)
    if args.target is not None:
        return target(args.target, args.heap)
    if args.quick:
        args.runs, args.seconds, args.cores = 1, 10.0, "native,python"
    modes = [m for m in args.modes.split(",") if m]
    cores = [c for c in args.cores.split(",") if c]
    print(f"tuple race: python {sys.version.split()[0]}, {args.runs} run(s) x {args.seconds:g} s "
          f"per mode and core, heapwatch run --interval {args.interval}, target switch "
          f"interval 0.2 ms, heap {args.heap:,} lists")
    print(f"  {'core':<7} {'trace':<6} {'runs':>4} {'SystemError':>12} {'other':>6} "
          f"{'tuples (median)':>16} {'snapshots (median)':>19}  core that ran")
    total = 0
    t0 = time.monotonic()
    for core in cores:
        for mode in modes:
            results = [run_once(mode, core, args.seconds, args.interval, args.heap)
                       for _ in range(args.runs)]
            errs = sum(r.system_errors for r in results)
            total += errs
            ran = sorted({r.core for r in results})
            print(f"  {core:<7} {mode:<6} {len(results):>4} {errs:>12} "
                  f"{sum(r.other_errors for r in results):>6} "
                  f"{statistics.median(r.tuples for r in results):>16,.0f} "
                  f"{statistics.median(r.snapshots for r in results):>19,.0f}  {','.join(ran)}",
                  flush=True)
    print(f"total SystemErrors: {total}  ({time.monotonic() - t0:.0f} s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
