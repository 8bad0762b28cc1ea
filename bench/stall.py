"""The longest stall the agent imposes on a target thread, seen by the target's own clock.

For heaps of about 100k, 1M and 3M gc-tracked objects (the heap of snapshot_pause.py,
built in a fresh child process per row), the child's main thread runs a timer loop — tick,
sleep 1 ms, tick — while a watcher runs in another thread of the same process:

* ``none``: nothing (the anchor: what the machine and the loop cost by themselves);
* ``heapwatch native`` / ``heapwatch python``: the heapwatch agent (``Agent.start()``,
  a snapshot every ``--interval``, ``--trace`` mode), on the native core or on the
  pure-Python core (``HEAPWATCH_NO_NATIVE=1`` in the child);
* ``objgraph.typestats()`` and bare ``gc.get_objects()``, called every ``--interval`` from
  a thread: the anchors.

A gap between two ticks longer than the sleep is time the main thread could not run: the
longest one (minus the 1 ms sleep) is the longest stall. Goals (issue 10): the native core
<= 50 ms at 1M objects; no multi-second stall for either core.

Run::

    python bench/stall.py                # 100k, 1M, 3M; 8 s of ticks per row (~6 min)
    python bench/stall.py --quick        # 100k, 1M; 4 s per row
    python bench/stall.py --sizes 1M --seconds 15 --interval 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WATCHERS = ("none", "heapwatch native", "heapwatch python", "objgraph.typestats()",
            "gc.get_objects()")
SLEEP_S = 0.001


def child(watcher: str, size: int, seconds: float, interval: float, trace: str) -> int:
    """Runs in the child: build the heap, start the watcher, tick, report as JSON."""
    import gc

    sys.path.insert(0, HERE)
    from snapshot_pause import build_heap  # one heap for both benchmarks

    count, _ = build_heap(size)
    stop = threading.Event()
    durations: list[float] = []
    agent = None
    tmp = tempfile.mkdtemp(prefix="heapwatch-stall-")

    def loop(fn: Any) -> None:
        while not stop.wait(interval):
            t0 = time.perf_counter()
            fn()
            durations.append(time.perf_counter() - t0)

    thread = None
    if watcher.startswith("heapwatch"):
        from heapwatch.agent import core
        from heapwatch.agent.sampler import Agent, AgentConfig

        agent = Agent(AgentConfig(store=os.path.join(tmp, "run.sqlite"), interval=interval,
                                  trace=trace))
        core_name = core.info().name
    else:
        core_name = "-"
        if watcher == "objgraph.typestats()":
            import objgraph  # type: ignore[import-untyped]

            fn = objgraph.typestats
        elif watcher == "gc.get_objects()":
            def fn() -> None:
                gc.get_objects()
        if watcher != "none":
            thread = threading.Thread(target=loop, args=(fn,), daemon=True)
    gc.collect()
    gaps: list[float] = []
    if agent is not None:
        agent.start()
    if thread is not None:
        thread.start()
    end = time.perf_counter() + seconds
    last = time.perf_counter()
    while last < end:
        time.sleep(SLEEP_S)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    stop.set()
    if agent is not None:
        durations = list(agent.pauses)
        agent.stop()
    gaps.sort()
    print(json.dumps({
        "objects": count, "core": core_name, "calls": len(durations),
        "stall_max_ms": (gaps[-1] - SLEEP_S) * 1e3,
        "gap_p99_ms": gaps[int(len(gaps) * 0.99)] * 1e3,
        "over_50ms": sum(g - SLEEP_S > 0.05 for g in gaps),
        "call_median_ms": statistics.median(durations) * 1e3 if durations else None,
        "call_max_ms": max(durations) * 1e3 if durations else None,
    }))
    return 0


def run_row(watcher: str, size: int, seconds: float, interval: float, trace: str
            ) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("HEAPWATCH_NO_NATIVE", None)
    if watcher == "heapwatch python":
        env["HEAPWATCH_NO_NATIVE"] = "1"
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", watcher, "--size", str(size),
         "--seconds", str(seconds), "--interval", str(interval), "--trace", trace],
        capture_output=True, text=True, env=env, timeout=seconds * 20 + 600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{watcher} at {size}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def fmt_size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def parse_size(text: str) -> int:
    t = text.strip().lower()
    mult = 1_000_000 if t.endswith("m") else 1000 if t.endswith("k") else 1
    return int(float(t.rstrip("mk")) * mult)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="100k,1M,3M")
    ap.add_argument("--seconds", type=float, default=8.0, help="ticking time per row")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between snapshots/calls")
    ap.add_argument("--trace", default="auto", help="the agent's trace mode")
    ap.add_argument("--quick", action="store_true", help="100k and 1M, 4 s per row")
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.size, args.seconds, args.interval, args.trace)
    if args.quick:
        args.sizes, args.seconds = "100k,1M", 4.0
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    print("heapwatch stall benchmark: the longest gap in the target's own 1 ms timer loop")
    print(f"python {platform.python_version()}, {platform.machine()}, os.cpu_count()="
          f"{os.cpu_count()}; {args.seconds:g} s of ticks per row; a snapshot or call every "
          f"{args.interval:g} s; agent --trace {args.trace}")
    t0 = time.monotonic()
    for size in sizes:
        print(f"\n== heap ~{fmt_size(size)} ==")
        print(f"  {'watcher':<22} {'core':<7} {'objects':>10} {'calls':>6} "
              f"{'longest stall':>14} {'p99 gap':>9} {'>50ms':>6} {'call median':>12} "
              f"{'call max':>10}")
        for watcher in WATCHERS:
            r = run_row(watcher, size, args.seconds, args.interval, args.trace)
            med = "-" if r["call_median_ms"] is None else f"{r['call_median_ms']:.1f} ms"
            mx = "-" if r["call_max_ms"] is None else f"{r['call_max_ms']:.1f} ms"
            print(f"  {watcher:<22} {r['core']:<7} {r['objects']:>10,} {r['calls']:>6} "
                  f"{r['stall_max_ms']:>11.1f} ms {r['gap_p99_ms']:>6.1f} ms "
                  f"{r['over_50ms']:>6} {med:>12} {mx:>10}", flush=True)
    print(f"\ntotal time {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
