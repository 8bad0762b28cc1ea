"""Tracing windows and the pause budget (issue 10, case 3): the estimated pause of a
traced snapshot next to the actual one, on heaps of 1M, 2M and 3M gc-tracked objects.

For each size a fresh interpreter builds the heap (lists held in a module global), starts
the agent in-process (``--trace auto``, interval 0.5 s) and grows a container so that a
tracing window is wanted. Its main thread runs a timer loop and reports its longest gap
(the stall the target saw). Two runs per size:

* ``budget``: the default 250 ms budget: the agent estimates a traced snapshot and opens
  no window when it would be longer (what it printed is parsed from its events);
* ``unbounded``: the budget off (``trace_pause_budget_s=inf``), a one-snapshot window:
  the traced snapshot that the budget prevents, measured, with the estimate the agent had
  made for it just before.

Run::

    python bench/trace_window.py                 # 1M, 2M, 3M  (~6 min)
    python bench/trace_window.py --sizes 1M      # one size
    python bench/trace_window.py --budget-only   # skip the slow unbounded runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TARGET = textwrap.dedent("""
    import json, math, sys, time
    import heapwatch
    from heapwatch.agent import current
    from heapwatch.store import open_run

    n, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    HEAP = [[i] for i in range(n)]
    LEAK = []
    budget = math.inf if mode == "unbounded" else 0.25
    heapwatch.start(out=out, interval=0.5, trace="auto", trace_window=1,
                    trace_pause_budget_s=budget)
    agent = current()
    worst, last = 0.0, time.perf_counter()
    deadline = time.monotonic() + 600
    decided_at = None
    while time.monotonic() < deadline:
        LEAK.extend([i] for i in range(200))
        time.sleep(0.01)
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
        if mode == "unbounded" and agent.traced_snapshots >= 1:
            break
        if mode == "budget" and decided_at is None and agent._refused:
            decided_at = time.monotonic()
        if decided_at is not None and time.monotonic() - decided_at > 3:
            break
    heapwatch.stop()
    run = open_run(out)
    snaps = [s for s in run.snapshots if s.reason == "interval"]
    print(json.dumps({
        "objects": snaps[-1].process.gc_objects if snaps else None,
        "events": [m for _, _, k, m in run.events if k == "trace"],
        "traced_s": [round(s.duration_s, 3) for s in snaps if s.traced],
        "untraced_s": sorted(round(s.duration_s, 3) for s in snaps if not s.traced),
        "longest_gap_s": round(worst, 3),
    }))
""")


def size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * mult)


def run(n: int, mode: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "target.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(TARGET)
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
        proc = subprocess.run([sys.executable, script, str(n), os.path.join(tmp, "run"), mode],
                              capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        data: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
        return data


def estimate(events: list[str]) -> str:
    for e in events:
        m = re.search(r"~(\d+) ms", e)
        if m:
            return m.group(1)
    return "-"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1M,2M,3M")
    ap.add_argument("--budget-only", action="store_true")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}; pause budget 250 ms; interval 0.5 s")
    print(f"{'objects':>9} {'mode':>10} {'window':>7} {'estimate ms':>12} {'traced ms':>10} "
          f"{'untraced median ms':>19} {'longest gap ms':>15}")
    for text in args.sizes.split(","):
        for mode in ("budget", *(() if args.budget_only else ("unbounded",))):
            d = run(size(text), mode)
            events = [str(e) for e in d["events"]]  # type: ignore[attr-defined]
            traced = d["traced_s"]
            untraced = d["untraced_s"]
            assert isinstance(traced, list) and isinstance(untraced, list)
            med = untraced[len(untraced) // 2] * 1000 if untraced else float("nan")
            opened = "opened" if any(e.startswith("tracing on") for e in events) else "no"
            print(f"{d['objects']:>9} {mode:>10} {opened:>7} {estimate(events):>12} "
                  f"{(max(traced) * 1000 if traced else 0):>10.0f} {med:>19.0f} "
                  f"{float(str(d['longest_gap_s'])) * 1000:>15.0f}")


if __name__ == "__main__":
    main()
