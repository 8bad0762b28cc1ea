"""How long one heapwatch snapshot pauses the target, next to the usual alternatives.

For heaps of about 100k, 1M and 3M gc-tracked objects, built in this process, this
measures on the same heap:

* one full heapwatch agent snapshot (``Agent.snapshot()``), tracing off and tracing on
  (tracemalloc started at depth 1 *before* the heap is built, so the heap is traced);
  and the owner-path walk ``paths.discover(100, 10.0, 10**9)`` alone;
* ``objgraph.typestats()``;
* ``pympler.summary.summarize(pympler.muppy.get_objects())``;
* ``gc.get_objects()`` (the floor) and ``Counter(map(type, gc.get_objects()))``;
* the census alone (``heapwatch.agent.core.census``) on the native core (C, one pass
  under the GIL) and on the pure-Python core, each with the longest time it held the GIL
  (the longest gap seen by a thread that wakes every 0.5 ms), and the agent snapshot on the
  pure-Python core. Goals (issue 11): native census <= 0.3x ``objgraph.typestats()`` at 1M
  and 3M objects, longest GIL hold <= 50 ms at 1M.

Each heap is built once with tracemalloc on (when the traced variant is measured for
that size): the traced snapshots are taken first, then tracemalloc is stopped and
everything else is measured on the very same objects.

Run::

    python bench/snapshot_pause.py                 # 100k, 1M, 3M; 5 repeats; traced up to 1M
    python bench/snapshot_pause.py --traced-max 3M # also the traced snapshot at 3M (~3 min more)
    python bench/snapshot_pause.py --quick         # 100k only, 3 repeats (smoke run)
    python bench/snapshot_pause.py --sizes 100k,1M --repeat 7 --traced-max 1M
    python bench/snapshot_pause.py --profile       # also cProfile one snapshot per size
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import json
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

from heapwatch.agent import core, paths
from heapwatch.agent.sampler import Agent, AgentConfig

# The heap lives in a module global, as a service's caches and registries do, so the
# owner-path walk finds it from ``__main__``.
HEAP: dict[str, Any] = {}


# -- the heap -----------------------------------------------------------------------------
class Customer:
    def __init__(self, cid: int) -> None:
        self.id = cid
        self.name = f"customer-{cid}"
        self.email = f"c{cid}@example.com"
        self.tags = ["new", "eu"] if cid % 3 else ["vip"]
        self.orders: list[Order] = []  # back-references: cycles, as in real object graphs


class Line:
    __slots__ = ("price", "qty", "sku")

    def __init__(self, sku: str, qty: int, price: float) -> None:
        self.sku = sku
        self.qty = qty
        self.price = price


class Order:
    def __init__(self, oid: int, customer: Customer) -> None:
        self.id = oid
        self.customer = customer
        self.status = "open" if oid % 4 else "paid"
        self.lines = [Line(f"sku-{(oid * 7 + k) % 5000}", k + 1, 9.5 + k) for k in range(1 + oid % 4)]
        self.meta = {"source": "web", "attempt": 1, "ref": oid * 7}  # ints/strings only: untracked
        self.history = [(oid * 0.5, "created")]


def _add_units(heap: dict[str, Any], start: int, count: int) -> None:
    customers: dict[int, Customer] = heap["customers"]
    orders: dict[int, Order] = heap["orders"]
    log: list[tuple[float, int, Order]] = heap["log"]
    sessions: dict[str, dict[str, Any]] = heap["sessions"]
    stats: list[dict[str, Any]] = heap["stats"]
    for i in range(start, start + count):
        cid = i // 8
        c = customers.get(cid)
        if c is None:
            c = customers[cid] = Customer(cid)
            sessions[f"s{cid:08x}"] = {"user": c, "hits": [i], "ua": "Mozilla/5.0"}
        o = Order(i, c)
        c.orders.append(o)
        orders[i] = o
        log.append((i * 0.001, i, o))
        if i % 16 == 0:
            stats.append({"n": i, "bytes": i * 3, "route": "/api/orders"})  # untracked dict


def build_heap(target: int) -> tuple[int, float]:
    """Grow ``HEAP`` until ``len(gc.get_objects())`` is close to ``target``."""
    t0 = time.perf_counter()
    HEAP.update(customers={}, orders={}, log=[], sessions={}, stats=[])
    gc.collect()
    base = len(gc.get_objects())
    probe = 2000
    gc.disable()
    try:
        _add_units(HEAP, 0, probe)
        gc.collect()
        per_unit = (len(gc.get_objects()) - base) / probe
        rest = max(0, int((target - base) / per_unit) - probe)
        _add_units(HEAP, probe, rest)
    finally:
        gc.enable()
    gc.collect()
    return len(gc.get_objects()), time.perf_counter() - t0


def free_heap() -> None:
    HEAP.clear()
    gc.collect()


# -- measuring ----------------------------------------------------------------------------
class Row:
    def __init__(self, label: str, times: list[float], note: str = "") -> None:
        self.label = label
        self.times = times
        self.note = note

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3

    @property
    def max_ms(self) -> float:
        return max(self.times) * 1e3


def timed(fn: Callable[[], Any], n: int, collect: bool = True) -> list[float]:
    """``n`` timed calls of ``fn`` (its result dropped inside the timing); gc.collect() once
    before the batch (unless ``collect`` is false)."""
    if collect:
        gc.collect()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def timed_gil(fn: Callable[[], Any], n: int) -> tuple[list[float], float]:
    """Like :func:`timed`, and the longest gap a thread sleeping 0.5 ms at a time saw while
    the calls ran: the longest stretch for which ``fn`` held the GIL."""
    stop = threading.Event()
    gaps: list[float] = []

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.0005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    gc.collect()  # before the ticker starts: a full collection is not the census's hold
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    time.sleep(0.01)
    try:
        times = timed(fn, n, collect=False)
    finally:
        stop.set()
        ticker.join()
    return times, max(gaps, default=0.0)


def census_with(core_name: str) -> Callable[[], Any]:
    def run() -> None:
        core.use(core_name)
        try:
            core.census(100, set())
        finally:
            core.use(None)
    return run


_STORE_SEQ = itertools.count()  # one store file per agent


def store_errors(path: str) -> str:
    """The errors the agent recorded in its snapshots (e.g. an owner-path walk cut by its
    time box), summarised."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT errors FROM snapshots").fetchall()
    finally:
        conn.close()
    kinds: Counter[str] = Counter()
    for (text,) in rows:
        for err in json.loads(text) if text else []:
            kinds[err.split(" after ")[0]] += 1
    if not kinds:
        return ""
    return ", ".join(f"'{k}' in {v} of {len(rows)} snapshots" for k, v in kinds.items())


def wait_first(agent: Agent) -> None:
    """Until the thread's first snapshot and the warm-up are both done (they share a lock,
    in either order): neither may fall into a timed call."""
    while len(agent.pauses) < 2:
        time.sleep(0.005)


def agent_snapshots(
    store_dir: str, trace: str, n: int, core_name: str | None = None
) -> tuple[Row, Row | None, Row | None]:
    """Start an agent (its thread takes a first snapshot), warm up once, time ``n`` snapshots.

    Returns all snapshots, and those with and without the owner-path walk (run on the
    first three snapshots and then every ``discover_every``-th).
    """
    cfg = AgentConfig(
        store=os.path.join(store_dir, f"run-{next(_STORE_SEQ)}-{trace}.sqlite"),
        interval=3600, trace=trace,
    )
    core.use(core_name)
    agent = Agent(cfg)
    agent.start()
    try:
        agent.snapshot()  # warm-up
        wait_first(agent)
        gc.collect()
        times: list[float] = []
        walk: list[bool] = []
        for _ in range(n):
            seq = agent._seq  # what the snapshot decides the walk on
            walk.append(seq < 3 or seq % max(1, cfg.discover_every) == 0)
            t0 = time.perf_counter()
            agent.snapshot()
            times.append(time.perf_counter() - t0)
    finally:
        agent.stop()
        core.use(None)
    label = f"heapwatch snapshot (trace {trace}" + (f", {core_name} core)" if core_name else ")")
    errs = store_errors(cfg.store)
    with_w = [t for t, w in zip(times, walk, strict=True) if w]
    without = [t for t, w in zip(times, walk, strict=True) if not w]
    return (
        Row(label, times, f"agent recorded: {errs}" if errs else ""),
        Row("  of which with owner-path walk", with_w) if with_w else None,
        Row("  of which without the walk", without) if without else None,
    )


def discover_alone() -> None:
    found = paths.discover(100, 10.0, 10**9)
    found.clear()


_LAZY: dict[str, Any] = {}


def lazy_imports() -> None:
    """objgraph and pympler are imported only when the script runs (before the first heap
    is built, so they do not change the object counts between sizes)."""
    try:
        import objgraph  # type: ignore[import-untyped]

        _LAZY["objgraph"] = objgraph
    except ImportError:
        pass
    try:
        from pympler import muppy, summary

        _LAZY["muppy"], _LAZY["summary"] = muppy, summary
    except ImportError:
        pass


def objgraph_typestats() -> None:
    _LAZY["objgraph"].typestats()


def pympler_summary() -> None:
    _LAZY["summary"].summarize(_LAZY["muppy"].get_objects())


def gc_floor() -> None:
    gc.get_objects()


def gc_counter() -> None:
    Counter(map(type, gc.get_objects()))


def pympler_runs(size: int, repeat: int) -> int:
    """pympler takes ~6 s per 1M objects: fewer runs on big heaps."""
    if size <= 300_000:
        return min(repeat, 3)
    if size <= 1_500_000:
        return min(repeat, 2)
    return 1


def profile_snapshot(store_dir: str, trace: str, top: int = 12) -> str:
    cfg = AgentConfig(
        store=os.path.join(store_dir, f"profile-{next(_STORE_SEQ)}-{trace}.sqlite"),
        interval=3600, trace=trace,
    )
    agent = Agent(cfg)
    agent.start()
    try:
        agent.snapshot()
        wait_first(agent)
        gc.collect()
        prof = cProfile.Profile()
        prof.enable()
        agent.snapshot()  # seq 2: includes the owner-path walk
        prof.disable()
    finally:
        agent.stop()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    return "\n".join("    " + ln for ln in lines)


# -- output -------------------------------------------------------------------------------
def fmt_size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def parse_size(text: str) -> int:
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith("k"):
        mult, t = 1000, t[:-1]
    elif t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    return int(float(t) * mult)


def print_table(rows: list[Row], ref_ms: float) -> None:
    width = max(len(r.label) for r in rows) + 2
    print(f"  {'':{width}}{'n':>3}  {'median':>10}  {'max':>10}")
    for r in rows:
        ratio = r.median_ms / ref_ms if ref_ms > 0 else float("nan")
        vs = f"×{ratio:.2f} of heapwatch" if not r.label.startswith("  ") else ""
        if r.label.startswith("heapwatch snapshot (trace off)"):
            vs = "(reference)"
        note = f"  {r.note}" if r.note else ""
        line = (
            f"  {r.label:{width}}{len(r.times):>3}  {r.median_ms:>7.1f} ms  {r.max_ms:>7.1f} ms"
            f"  {vs}{note}"
        )
        print(line.rstrip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100k,1M,3M", help="heap sizes (gc-tracked objects)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per tool (heapwatch: at least 5)")
    ap.add_argument(
        "--traced-max", default="1M",
        help="largest heap on which the traced snapshot is measured (0: never); 3M adds ~3 min",
    )
    ap.add_argument("--quick", action="store_true", help="100k only, 3 repeats (smoke run)")
    ap.add_argument("--profile", action="store_true", help="cProfile one snapshot per size")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat = "100k", 3
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    traced_max = parse_size(args.traced_max)
    repeat = max(1, args.repeat)
    hw_repeat = max(5, repeat) if not args.quick else repeat

    t_start = time.perf_counter()
    lazy_imports()
    print("heapwatch snapshot pause benchmark")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {platform.system()} {platform.release()}, "
        f"os.cpu_count()={os.cpu_count()}; heapwatch core: {core.info().name}"
        + (f" ({core.info().fallback})" if core.info().fallback else "")
    )
    print(
        f"sizes {', '.join(fmt_size(s) for s in sizes)}; repeat {repeat} "
        f"(heapwatch snapshots {hw_repeat}, pympler fewer: see n); "
        f"traced snapshots on heaps up to {fmt_size(traced_max) if traced_max else 'none'}"
    )
    skipped_traced = [s for s in sizes if s > traced_max]
    if skipped_traced:
        print(
            "note: traced variant NOT measured for "
            + ", ".join(fmt_size(s) for s in skipped_traced)
            + ": at 3M one traced snapshot takes ~20 s and a measurement needs 8 of them"
            " (the agent's first, a warm-up, 5 timed, the final one), ~3 min more on 2 cores;"
            " pass --traced-max 3M to include it"
        )
    for name, mod in (("objgraph", "objgraph"), ("pympler", "muppy")):
        if mod not in _LAZY:
            print(f"note: {name} is not installed: its row is left out")
    print()

    summary: list[tuple[str, int, dict[str, Row]]] = []
    gil_holds: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="heapwatch-bench-") as tmp:
        for size in sizes:
            traced = 0 < size <= traced_max
            if traced:
                tracemalloc.start(1)
            count, build_s = build_heap(size)
            rows: list[Row] = []
            byname: dict[str, Row] = {}
            extra: list[str] = []
            try:
                print(
                    f"== heap ~{fmt_size(size)}: len(gc.get_objects()) = {count:,} "
                    f"(built in {build_s:.1f} s, tracemalloc {'on' if traced else 'off'} while building) =="
                )
                measured_traced = traced
                if traced:
                    cur, _ = tracemalloc.get_traced_memory()
                    extra.append(
                        f"tracemalloc: {cur / 2**20:,.0f} MiB traced, its own overhead "
                        f"{tracemalloc.get_tracemalloc_memory() / 2**20:,.0f} MiB"
                    )
                    t_on, t_on_w, t_on_nw = agent_snapshots(tmp, "on", hw_repeat)
                    d_on = Row("paths.discover(100, 10.0, 10**9) alone, traced",
                               timed(discover_alone, repeat))
                    if args.profile:
                        extra.append("cProfile of one traced snapshot (with walk), by tottime:")
                        extra.append(profile_snapshot(tmp, "on"))
                    tracemalloc.stop()
                    traced = False
                t_off, t_off_w, t_off_nw = agent_snapshots(tmp, "off", hw_repeat)
                rows.append(t_off)
                rows.extend(r for r in (t_off_w, t_off_nw) if r is not None)
                byname["hw_off"] = t_off
                if core.info().name == "native":
                    t_py, _, _ = agent_snapshots(tmp, "off", hw_repeat, "python")
                    rows.append(t_py)
                    byname["hw_py"] = t_py
                _, floor_gap = timed_gil(lambda: time.sleep(0.05), repeat)
                gil_holds[(fmt_size(size), "floor")] = floor_gap
                for name in ("native", "python"):
                    if name == "native" and core.load_native()[0] is None:
                        continue
                    times, hold = timed_gil(census_with(name), repeat)
                    r = Row(f"census alone, {name} core", times,
                            f"(longest GIL hold {hold * 1e3:.1f} ms)")
                    rows.append(r)
                    byname[f"census_{name}"] = r
                    gil_holds[(fmt_size(size), name)] = hold
                if measured_traced:
                    rows.append(t_on)
                    rows.extend(r for r in (t_on_w, t_on_nw) if r is not None)
                    byname["hw_on"] = t_on
                r = Row("paths.discover(100, 10.0, 10**9) alone", timed(discover_alone, repeat))
                found = paths.discover(100, 10.0, 10**9)
                r.note = f"(walks {found.nodes:,} objects, complete={found.complete})"
                found.clear()
                del found
                rows.append(r)
                byname["discover"] = r
                if measured_traced:
                    rows.append(d_on)
                if args.profile:
                    extra.append("cProfile of one untraced snapshot (with walk), by tottime:")
                    extra.append(profile_snapshot(tmp, "off"))
                if "objgraph" in _LAZY:
                    r = Row("objgraph.typestats()", timed(objgraph_typestats, repeat))
                    rows.append(r)
                    byname["objgraph"] = r
                if "muppy" in _LAZY:
                    r = Row(
                        "pympler summarize(muppy.get_objects())",
                        timed(pympler_summary, pympler_runs(size, repeat)),
                    )
                    rows.append(r)
                    byname["pympler"] = r
                r = Row("gc.get_objects() (floor)", timed(gc_floor, repeat))
                rows.append(r)
                byname["gc"] = r
                r = Row("Counter(map(type, gc.get_objects()))", timed(gc_counter, repeat))
                rows.append(r)
                byname["counter"] = r
                print_table(rows, t_off.median_ms)
                for line in extra:
                    print("  " + line if not line.startswith("    ") else line)
                print()
                summary.append((fmt_size(size), count, byname))
            finally:
                if traced and tracemalloc.is_tracing():
                    tracemalloc.stop()
                free_heap()

    cols = [
        ("hw_off", "heapwatch off"), ("hw_py", "hw off, py core"), ("hw_on", "heapwatch on"),
        ("discover", "discover"), ("census_native", "census C"), ("census_python", "census py"),
        ("objgraph", "objgraph"), ("pympler", "pympler"), ("gc", "gc.get_objects"),
        ("counter", "Counter"),
    ]
    print("== summary: median ms (max) ==")
    head = f"  {'heap':>5} {'objects':>10}" + "".join(f"  {title:>17}" for _, title in cols)
    print(head)
    for label, count, byname in summary:
        cells = []
        for key, _ in cols:
            cell = byname.get(key)
            text = "-" if cell is None else f"{cell.median_ms:.1f} ({cell.max_ms:.0f})"
            cells.append(f"  {text:>17}")
        print(f"  {label:>5} {count:>10,}" + "".join(cells))
    print("\n== census: ratio to objgraph.typestats() (goal for C: <= 0.3x at 1M and 3M), "
          "longest GIL hold (goal for C: <= 50 ms at 1M) ==")
    for label, _, byname in summary:
        og = byname.get("objgraph")
        print(f"  {label:>5}  (the same ticker while nothing runs: longest gap "
              f"{gil_holds[(label, 'floor')] * 1e3:.1f} ms, the machine's own noise)")
        for name in ("native", "python"):
            r = byname.get(f"census_{name}")
            if r is None:
                continue
            ratio = f"{r.median_ms / og.median_ms:.2f}x" if og is not None else "-"
            print(f"  {label:>5}  {name:<7} {r.median_ms:8.1f} ms  {ratio:>6} of objgraph  "
                  f"GIL held up to {gil_holds[(label, name)] * 1e3:.1f} ms")
    print(f"\ntotal time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
