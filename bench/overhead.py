"""How much slower an allocation-heavy service runs under heapwatch (and under tracemalloc).

The workload is a request handler doing parsing work: each request formats a raw
HTTP-like request, splits it into a request line, headers and a query string (dicts,
lists, strings), parses a 20-line CSV-ish body into small objects (one ``__dict__``
each), builds a JSON-like response dict of lists and serialises it. Everything is dropped
after the request except a ``deque(maxlen=256)`` of recent ``(path, size)`` tuples, so the
heap is steady. The *leak* variant also appends one small string per 64 requests to a
module-level list (~200 strings/s here): a small leak that turns suspect under ``--trace auto``
and opens tracing windows.

The amount of work is fixed per variant: plain calibration runs find how many requests
take about ``--seconds`` seconds, and every untraced run handles exactly that many. Under
tracemalloc allocation is ~10x slower here, so the always-traced variants (``--trace
on`` and plain ``tracemalloc``) handle a fixed fraction of that work, sized from a
calibration run under ``tracemalloc.start(1)`` so that they last about half of
``--seconds`` (their cost is tracemalloc's, not the snapshots') - this keeps the whole
benchmark near 6 minutes. Times are therefore compared per request: the table shows
the median time per 1,000 requests and its ratio to plain python. The child prints
``ready``, waits 0.5 s (so that the agent's start-up snapshot, which also walks the
owner paths, is not part of the timing; later walks are), times its fixed work itself
(``time.perf_counter()``; also process CPU time, which includes the agent's thread) and
prints the result; the agent's final snapshot at exit is not part of it either. Variants:

* plain ``python`` (the reference);
* ``heapwatch run --trace off``;
* ``heapwatch run --trace auto`` on the steady workload (no tracing window should ever
  open: ``trace.share`` in report.json is printed to check);
* ``heapwatch run --trace auto`` on the leak variant (windows open: the share of
  snapshots traced is printed);
* ``heapwatch run --trace on`` (depth 1, its default);
* ``tracemalloc.start(1)`` inside the process, without heapwatch;
* ``heapwatch run --trace auto --metrics 127.0.0.1:0`` on the steady workload, its endpoint
  scraped every 5 s by the driver (as Prometheus would, a bit faster): the cost of
  ``--metrics``, to read next to ``auto-steady`` (the exporter runs in heapwatch's CLI
  process and re-analyses the store after a scrape when a snapshot came; the target only
  shares the machine's cores with it). The notes give the number of scrapes and their median time.

For the ``auto`` variants the table also shows the time per request over only the parts
of the work that did not overlap a tracing window (the child records a timestamp every 1%
of its work; the windows are read from the run's ``run.sqlite``). Because other load on a
small machine moves wall times by 10-20%, each heapwatch run also reports the CPU time of
the agent's thread during the work (process CPU minus the main thread's CPU) as a share
of the main thread's CPU: the agent's own cost, mostly independent of that noise (it
leaves out what tracing adds to the main thread's allocations).

Each heapwatch variant runs at heapwatch's default interval (5 s) and at 0.5 s; every
variant runs ``--repeat`` times (3), interleaved (one of each, then the next round), and
the median is reported with its ratio to plain python.

Run from the repository root::

    python bench/overhead.py                 # ~10 s of work per run, 3 repeats (~6 min)
    python bench/overhead.py --seconds 3 --repeat 1   # smoke run
    python bench/overhead.py --only auto-steady --intervals 0.5 --repeat 1 \
        --profile auto-steady@0.5       # also where the agent's time goes (needs py-spy)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.abspath(__file__)

# -- the workload (child side: stdlib only, never imports heapwatch) -----------------------
REQUEST = (
    "POST /api/v1/carts/{cart}/checkout?page={page}&sort=price&currency=EUR&session={sess} HTTP/1.1\r\n"
    "Host: shop.example.com\r\n"
    "User-Agent: bench-client/1.0\r\n"
    "Accept: application/json\r\n"
    "X-Request-Id: req-{i}\r\n"
    "X-User: user{user}\r\n"
    "Content-Type: text/csv\r\n"
    "\r\n"
    "{body}"
)
LINES_PER_BODY = 20

RECENT: collections.deque[tuple[str, int]] = collections.deque(maxlen=256)
LEAKED: list[str] = []
LEAK_EVERY = 64
TRACED_SHARE = 0.5  # the always-traced variants run for about half of --seconds
CHUNKS = 100


class LineItem:
    def __init__(self, sku: int, qty: int, price: float, note: str) -> None:
        self.sku = sku
        self.qty = qty
        self.price = price
        self.note = note

    def amount(self) -> float:
        return self.qty * self.price


def handle(i: int, leak: bool) -> int:
    body = ";".join(f"{(i * 7 + k) % 5000},{1 + (i + k) % 9},{(k % 50) + 0.99:.2f},n{k}"
                    for k in range(LINES_PER_BODY))
    raw = REQUEST.format(cart=i % 1000, page=i % 7, sess=i * 31 % 100_000, i=i, user=i % 321,
                         body=body)
    head, _, body_text = raw.partition("\r\n\r\n")
    lines = head.split("\r\n")
    method, target, _version = lines[0].split(" ")
    path, _, query = target.partition("?")
    params = dict(kv.split("=", 1) for kv in query.split("&"))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(": ")
        headers[key.lower()] = value
    items = []
    for row in body_text.split(";"):
        sku, qty, price, note = row.split(",")
        items.append(LineItem(int(sku), int(qty), float(price), note))
    total = sum(it.amount() for it in items)
    response = {
        "method": method,
        "path": path,
        "params": params,
        "user": headers.get("x-user"),
        "request_id": headers.get("x-request-id"),
        "lines": [{"sku": it.sku, "qty": it.qty, "amount": round(it.amount(), 2),
                   "tags": [it.note, str(it.sku)]} for it in items],
        "total": round(total, 2),
    }
    out = json.dumps(response)
    RECENT.append((path, len(out)))
    if leak and i % LEAK_EVERY == 0:
        LEAKED.append(f"audit {i} {path} {headers.get('x-user')}")
    return len(out)


def child(args: argparse.Namespace) -> int:
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(args.tracemalloc)
    leak = args.child == "leak"
    print("ready", flush=True)
    time.sleep(args.settle)
    if args.calibrate:
        end = time.perf_counter() + args.calibrate
        n = 0
        while time.perf_counter() < end:
            for _ in range(100):
                handle(n, leak)
                n += 1
        print(json.dumps({"requests_per_s": n / args.calibrate}), flush=True)
        return 0
    # Chunk ends on the wall clock (``time.time()``, as the agent's store), to leave out the
    # chunks that overlap a tracing window.
    step = max(1, args.requests // CHUNKS)
    chunks: list[tuple[float, int]] = []
    t0, c0, w0 = time.perf_counter(), time.process_time(), time.time()
    m0 = time.thread_time()
    for i in range(args.requests):
        handle(i, leak)
        if (i + 1) % step == 0 or i + 1 == args.requests:
            chunks.append((time.time(), i + 1))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    cpu_main = time.thread_time() - m0
    print(json.dumps({"elapsed": wall, "cpu": cpu, "cpu_main": cpu_main, "requests": args.requests,
                      "leaked": len(LEAKED), "start": w0, "chunks": chunks}), flush=True)
    return 0


# -- the driver (parent side) ---------------------------------------------------------------
# (key, label, trace mode or None for no heapwatch, child kind, tracemalloc in the child,
#  always traced: runs the smaller, traced amount of work)
Variant = tuple[str, str, str | None, str, bool, bool]
VARIANTS: list[Variant] = [
    ("plain", "plain python", None, "steady", False, False),
    ("off", "heapwatch --trace off", "off", "steady", False, False),
    ("sample-steady", "heapwatch --trace sample, steady", "sample", "steady", False, False),
    ("sample-leak", "heapwatch --trace sample, small leak", "sample", "leak", False, False),
    ("auto-steady", "heapwatch --trace auto, steady", "auto", "steady", False, False),
    ("auto-leak", "heapwatch --trace auto, small leak", "auto", "leak", False, False),
    ("on", "heapwatch --trace on (depth 1)", "on", "steady", False, True),
    ("tracemalloc", "tracemalloc.start(1), no heapwatch", None, "steady", True, True),
    ("auto-metrics", "heapwatch --trace auto --metrics, steady", "auto", "steady", False, False),
]
SCRAPE_EVERY_S = 5.0  # a fast Prometheus scrape (its usual is 15-60 s)


def run_scraped(cmd: list[str], scrape_every: float = SCRAPE_EVERY_S
                ) -> tuple[subprocess.CompletedProcess[str], list[float]]:
    """Run ``heapwatch run --metrics 127.0.0.1:0 ...`` and scrape its endpoint every
    ``scrape_every`` seconds until it exits; return the process and each scrape's time."""
    import re
    import threading
    import urllib.request

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    head: list[str] = []
    url = None
    for line in proc.stderr:
        head.append(line)
        m = re.search(r"metrics on (http://\S+/metrics)", line)
        if m:
            url = m.group(1)
            break
    times: list[float] = []
    stop = threading.Event()

    def scrape() -> None:
        while url and not stop.wait(scrape_every):
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    resp.read()
            except OSError:
                continue  # the run is ending
            times.append(time.perf_counter() - t)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    out, err = proc.communicate(timeout=900)
    stop.set()
    thread.join(timeout=15)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "".join(head) + err), times


def child_cmd(kind: str, requests: int, tm: bool, settle: float = 0.5) -> list[str]:
    cmd = [sys.executable, HERE, "--child", kind, "--requests", str(requests),
           "--settle", str(settle)]
    if tm:
        cmd += ["--tracemalloc", "1"]
    return cmd


def last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            return data
    raise RuntimeError(f"no result line in child output: {stdout[-300:]!r}")


def run_once(variant: Variant, interval: float | None, requests: int, tmp: str,
             prefix: list[str] | None = None, scrape_every: float = SCRAPE_EVERY_S
             ) -> dict[str, Any]:
    key, _label, trace, kind, tm, _traced = variant
    cmd = child_cmd(kind, requests, tm)
    out_dir = None
    if trace is not None:
        out_dir = tempfile.mkdtemp(prefix=f"{key}-", dir=tmp)
        metrics = ["--metrics", "127.0.0.1:0"] if key.endswith("-metrics") else []
        cmd = [sys.executable, "-m", "heapwatch", "run", "--trace", trace,
               "--interval", f"{interval:g}", "--out", out_dir, *metrics, "--", *cmd]
    t0 = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    scrapes: list[float] | None = None
    if key.endswith("-metrics"):
        proc, scrapes = run_scraped([*(prefix or []), *cmd], scrape_every)
    else:
        proc = subprocess.run([*(prefix or []), *cmd], capture_output=True, text=True,
                              timeout=900)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = last_json(proc.stdout)
    # CPU of everything this run started (heapwatch's CLI, its exporter, the target): what
    # --metrics adds shows here, and CPU time is far less sensitive to other load than
    # wall time.
    res["cpu_total"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    if scrapes is not None:
        res["scrapes"] = len(scrapes)
        res["scrape_ms"] = 1000 * statistics.median(scrapes) if scrapes else None
    res["wall_total"] = time.monotonic() - t0
    res["per_1k"] = 1e6 * res["elapsed"] / res["requests"]  # ms per 1,000 requests
    # CPU of the other threads (the agent's) while the work ran, per main-thread CPU second:
    # robust to other load on the machine, which slows both threads alike.
    res["agent_cpu"] = max(0.0, res["cpu"] - res["cpu_main"]) / res["cpu_main"]
    if proc.returncode != 0:
        raise RuntimeError(f"{key}: exit {proc.returncode}: {proc.stderr[-500:]}")
    if out_dir is not None:
        with open(os.path.join(out_dir, "report.json"), encoding="utf-8") as f:
            rep = json.load(f)
        res["share"] = (rep.get("trace") or {}).get("share")
        res["snapshots"] = (rep.get("agent") or {}).get("snapshots")
        res["pause_ms"] = 1000 * ((rep.get("agent") or {}).get("pause_median_s") or 0)
        res["pause_max_ms"] = 1000 * ((rep.get("agent") or {}).get("pause_max_s") or 0)
        res["verdict"] = rep.get("verdict")
        findings = rep.get("findings") or []
        res["first"] = findings[0]["title"] if findings else None
        try:
            outside_windows(res, traced_windows(os.path.join(out_dir, "run.sqlite")))
        except Exception as exc:  # the store's schema is heapwatch's own business
            res["outside_error"] = f"{type(exc).__name__}: {exc}"
        shutil.rmtree(out_dir, ignore_errors=True)
    return res


def spy_summary(raw: str) -> str:
    """Samples per thread of the child, and the agent thread's by what its snapshot was doing."""
    threads: collections.Counter[str] = collections.Counter()
    agent: collections.Counter[str] = collections.Counter()
    with open(raw, encoding="utf-8") as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            if len(frames) < 3 or "--child" not in frames[1]:
                continue
            thread = frames[2].rpartition(": ")[2] or frames[2]
            rest = frames[3:]
            if "agent" in thread and rest and rest[-1].startswith("Agent._run "):
                continue  # idle in select() between snapshots
            threads[thread] += int(n)
            if "agent" not in thread:
                continue
            names = [fr.split(" (")[0] for fr in rest]
            if "Agent._collect" in names:
                i = names.index("Agent._collect")
                agent[" > ".join(names[i + 1 : i + 3]) or "Agent._collect"] += int(n)
            else:
                agent["(outside _collect) " + " > ".join(names[-2:])] += int(n)
    total = sum(threads.values()) or 1
    lines = [f"  {thread:<20} {n:6} samples  {100 * n / total:5.1f}%" for thread, n in
             threads.most_common()]
    a_total = sum(agent.values()) or 1
    lines.append("  agent thread, by the step of the snapshot:")
    lines += [f"    {100 * n / a_total:5.1f}%  {what}" for what, n in agent.most_common(12)]
    return "\n".join(lines)


def traced_windows(db: str) -> list[tuple[float, float]]:
    """Wall-clock spans during which tracemalloc was on, from the run's store: from the end
    of the snapshot that opened a window to the end of the one that closed it."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        snaps = con.execute("SELECT t, duration_s, traced FROM snapshots ORDER BY t").fetchall()
    finally:
        con.close()
    out: list[tuple[float, float]] = []
    prev_end = snaps[0][0] if snaps else 0.0
    start: float | None = None
    for t, dur, traced in snaps:
        if traced and start is None:
            start = prev_end
        if traced:
            out.append((start, t + dur))
        elif start is not None:
            start = None
        prev_end = t + (dur or 0.0)
    merged: list[tuple[float, float]] = []
    for a, b in out:
        if merged and a <= merged[-1][1] and merged[-1][0] == a:
            merged[-1] = (a, max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def outside_windows(res: dict[str, Any], windows: list[tuple[float, float]]) -> None:
    """ms per 1,000 requests over the chunks that do not overlap a tracing window."""
    margin = 0.05
    prev_t, prev_n = res["start"], 0
    t_out, n_out = 0.0, 0
    for t, n in res["chunks"]:
        if not any(a - margin < t and prev_t < b + margin for a, b in windows):
            t_out += t - prev_t
            n_out += n - prev_n
        prev_t, prev_n = t, n
    res["outside_share"] = n_out / res["requests"]
    res["per_1k_outside"] = 1e6 * t_out / n_out if n_out else None
    res["traced_s"] = sum(max(0.0, min(b, res["chunks"][-1][0]) - max(a, res["start"]))
                          for a, b in windows)


def calibrate(depth: int) -> float:
    """Requests per second, plain (depth 0) or under ``tracemalloc.start(depth)``."""
    cmd = [sys.executable, HERE, "--child", "steady", "--calibrate", "1.5",
           "--tracemalloc", str(depth)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return float(last_json(proc.stdout)["requests_per_s"])


def fmt_cell(runs: list[dict[str, Any]], plain: float, field: str = "per_1k") -> str:
    vals = [r[field] for r in runs if r.get(field) is not None]
    if not vals:
        return "-"
    t = statistics.median(vals)
    lo, hi = min(vals), max(vals)
    return f"{t:7.1f} ({lo:.1f}-{hi:.1f}) x{t / plain:6.3f} {100 * (t / plain - 1):+7.1f}%"


def fmt_notes(runs: list[dict[str, Any]]) -> str:
    def each(fmt: str, key: str) -> str:
        return "/".join("?" if r.get(key) is None else format(r[key], fmt) for r in runs)

    out = (f"share {each('.2f', 'share')}, snapshots {each('d', 'snapshots')}, agent thread CPU "
           f"{each('.1%', 'agent_cpu')} of the main thread's, "
           f"pause median {each('.0f', 'pause_ms')} ms, max {each('.0f', 'pause_max_ms')} ms")
    if any(r.get("traced_s") for r in runs):
        out += (f"; traced {each('.1f', 'traced_s')} s of the timed work, requests outside "
                f"windows {each('.0%', 'outside_share')}")
    out += f"; CPU of the whole run (heapwatch + target) {each('.2f', 'cpu_total')} s"
    if any("scrapes" in r for r in runs):
        out += (f"; scrapes {each('d', 'scrapes')}, median scrape {each('.1f', 'scrape_ms')} "
                f"ms")
    errors = {r["outside_error"] for r in runs if r.get("outside_error")}
    if errors:
        out += f"; windows unknown: {', '.join(errors)}"
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0,
                   help="plain-python time of the fixed work, calibrated [10]")
    p.add_argument("--repeat", type=int, default=3, help="runs per variant and interval [3]")
    p.add_argument("--intervals", default="5,0.5", help="heapwatch intervals, seconds [5,0.5]")
    p.add_argument("--scrape-every", type=float, default=SCRAPE_EVERY_S,
                   help=f"seconds between scrapes of the --metrics variant [{SCRAPE_EVERY_S:g}]")
    p.add_argument("--only", default="", help="comma-separated variant keys: "
                   + ",".join(v[0] for v in VARIANTS))
    p.add_argument("--profile", default="",
                   help="after the table, sample one more run of VARIANT@INTERVAL (e.g. "
                   "auto-steady@0.5) with py-spy and show where the agent thread's time goes")
    p.add_argument("--py-spy", dest="py_spy", default=shutil.which("py-spy"),
                   help="py-spy executable for --profile [py-spy on PATH]")
    p.add_argument("--service", action="store_true",
                   help="instead: a uvicorn + starlette service under HTTP load (wrk, or a "
                   "Python load generator) with each tool; --seconds of load per run [20]")
    p.add_argument("--service-only", default="",
                   help="comma-separated service variants: " + ",".join(SERVICE_VARIANTS))
    p.add_argument("--sweep", action="store_true",
                   help="instead: the native sampler alone, in this process, at several mean "
                   "intervals: CPU per request of handle() and the error of a 100 MB site's "
                   "estimate (the numbers behind the default interval)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--idle-thread", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--load", default="", help=argparse.SUPPRESS)
    # child side
    p.add_argument("--child", choices=("steady", "leak"), help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--tracemalloc", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--calibrate", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--settle", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.serve:
        return serve(args)
    if args.load:
        return python_load(args.load, args.seconds)
    if args.service:
        return service_bench(args)
    if args.sweep:
        return sweep(args)
    if args.profile and not args.py_spy:
        sys.exit("--profile needs py-spy (pip install py-spy, or --py-spy PATH)")

    intervals = [float(x) for x in args.intervals.split(",") if x]
    only = {x for x in args.only.split(",") if x}
    variants = [v for v in VARIANTS if not only or v[0] in only or v[0] == "plain"]
    t_start = time.monotonic()
    load0 = os.getloadavg()[0]
    rate = calibrate(0)
    rate_tm = calibrate(1)
    rate_tm10 = calibrate(10)
    requests = max(100, int(rate * args.seconds))
    requests_tm = max(100, int(rate_tm * args.seconds * TRACED_SHARE))
    calib = (f"calibration, requests/s: plain {rate:,.0f}; under tracemalloc.start(1) "
             f"{rate_tm:,.0f} (x{rate / rate_tm:.1f} slower); under tracemalloc.start(10), the "
             f"depth of --trace auto's windows, {rate_tm10:,.0f} (x{rate / rate_tm10:.1f} slower)")
    print(f"{calib}\nworkload: {requests:,} requests untraced, {requests_tm:,} always traced; "
          f"{args.repeat} repeats, interleaved; intervals "
          f"{', '.join(f'{i:g} s' for i in intervals)}", file=sys.stderr, flush=True)
    tmp = tempfile.mkdtemp(prefix="hw-overhead-")
    results: dict[tuple[str, float | None], list[dict[str, Any]]] = collections.defaultdict(list)
    plan = []
    for v in variants:
        if v[2] is None:
            plan.append((v, None))
        else:
            plan.extend((v, i) for i in intervals)
    for rnd in range(args.repeat):
        for v, interval in plan:
            res = run_once(v, interval, requests_tm if v[5] else requests, tmp,
                           scrape_every=args.scrape_every)
            results[(v[0], interval)].append(res)
            print(f"  [{time.monotonic() - t_start:5.0f} s] round {rnd + 1}: {v[0]:<12} "
                  f"{'' if interval is None else f'@{interval:g}s':<6} {res['elapsed']:.2f} s, "
                  f"{res['per_1k']:.1f} ms/1k, cpu {res['cpu']:.2f} s"
                  + (f"  share {res['share']}, {res['snapshots']} snaps" if 'share' in res else ""),
                  file=sys.stderr, flush=True)
    plain = statistics.median(r["per_1k"] for r in results[("plain", None)])

    print(f"{calib}.\nFixed work per run: {requests:,} requests untraced (~{args.seconds:g} s), "
          f"{requests_tm:,} for the always-traced variants (on, tracemalloc; "
          f"~{args.seconds * TRACED_SHARE:g} s); timed inside the child.\n"
          f"Cells: median ms per 1,000 requests over {args.repeat} runs (min-max), ratio and "
          f"slowdown vs plain python.\n")
    col = 42
    head = f"{'variant':<40}" + "".join(f"  {f'interval {i:g} s':<{col}}" for i in intervals)
    print(head)
    print("-" * len(head))
    notes = []
    for v in variants:
        key, label = v[0], v[1]
        rows = [(label, "per_1k")]
        if v[2] == "auto":
            rows.append(("  outside its tracing windows", "per_1k_outside"))
        for text, fld in rows:
            line = f"{text:<40}"
            for i in intervals:
                runs = results[(key, None if v[2] is None else i)]
                line += f"  {fmt_cell(runs, plain, fld):<{col}}"
            print(line)
        if v[2] is not None:
            for i in intervals:
                notes.append(f"  {label} @ {i:g} s: {fmt_notes(results[(key, i)])}")
    best = min(r["per_1k"] for r in results[("plain", None)])
    print(f"\nBest of {args.repeat} (the fastest run, less sensitive to other load on the "
          f"machine), ratio to the fastest plain run:")
    print(f"{'variant':<40}" + "".join(f"  {f'interval {i:g} s':<16}" for i in intervals))
    for v in variants:
        rows = [(v[1], "per_1k")]
        if v[2] == "auto":
            rows.append(("  outside its tracing windows", "per_1k_outside"))
        for text, fld in rows:
            line = f"{text:<40}"
            for i in intervals:
                vals = [r[fld] for r in results[(v[0], None if v[2] is None else i)]
                        if r.get(fld) is not None]
                ratio = min(vals) / best if vals else None
                cell = f"x{ratio:6.3f} {100 * (ratio - 1):+7.1f}%" if ratio else "-"
                line += f"  {cell:<16}"
            print(line)
    print("\nheapwatch runs, per repeat (trace.share = share of snapshots traced; pause = the "
          "agent's snapshot wall time):")
    print("\n".join(notes))
    for i in intervals:
        steady = results.get(("auto-steady", i), [])
        if any((r.get("share") or 0) > 0 for r in steady):
            print(f"  WARNING: --trace auto opened tracing windows on the steady workload at {i:g} s")
        verdicts = [r.get("verdict") for r in steady]
        print(f"  steady workload @ {i:g} s: verdicts {verdicts}"
              + (f" - WARNING: {[r.get('first') for r in steady]}" if "leak" in verdicts else ""))
        leak = results.get(("auto-leak", i), [])
        if leak:
            print(f"  leak variant @ {i:g} s: verdicts {[r.get('verdict') for r in leak]}; first "
                  f"finding: {leak[0].get('first')}")
    for i in intervals:
        a, m = results.get(("auto-steady", i)), results.get(("auto-metrics", i))
        if a and m:
            ca = statistics.median(r["cpu_total"] for r in a)
            cm = statistics.median(r["cpu_total"] for r in m)
            print(f"  --metrics @ {i:g} s: CPU of the whole run, median {ca:.2f} s without, "
                  f"{cm:.2f} s with ({cm - ca:+.2f} s, {100 * (cm / ca - 1):+.1f}%)")
    print(f"\ntotal time {time.monotonic() - t_start:.0f} s; {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} cores; load average (1 min) "
          f"{load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")

    if args.profile:
        key, _, iv = args.profile.partition("@")
        v = next(x for x in VARIANTS if x[0] == key)
        for flag, what in (("--gil", "samples of a thread holding the GIL: CPU the target loses"),
                           ("--idle", "all samples but the agent's idle wait: its wall time, "
                                      "waiting for the GIL included")):
            raw = os.path.join(tmp, "py-spy.txt")
            prefix = [args.py_spy, "record", "--subprocesses", "--threads", "--rate", "250",
                      "--format", "raw", "--output", raw, flag, "--"]
            res = run_once(v, float(iv or intervals[-1]) if v[2] else None,
                           requests_tm if v[5] else requests, tmp, prefix=prefix)
            print(f"\n== py-spy {flag}, {key} @ {iv or '-'} s ({res['elapsed']:.2f} s of work, "
                  f"{res['per_1k']:.1f} ms/1k): {what} ==")
            print(spy_summary(raw))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


# -- the sampler's own cost and accuracy, by mean interval ------------------------------------
SWEEP_INTERVALS = (0, 1 << 48, 1024, 16 << 10, 64 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20)


def _big_site(n: int) -> list[bytearray]:
    return [bytearray(1100) for _ in range(n)]  # the 100 MB site of the sweep


def sweep(args: argparse.Namespace) -> int:
    """In this process: handle() with no hook (0), the hook that never samples (2^48), and
    the sampler at each mean interval (16 frames), interleaved rounds of process CPU time;
    then, per interval, 5 estimates of a ~115 MB site against tracemalloc's exact figure."""
    import tracemalloc

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "src"))
    from heapwatch.agent import sites

    mod, why = sites._native()
    if mod is None:
        sys.exit(f"no native sampler here: {why}")
    n = 20_000
    t0 = time.process_time()
    for i in range(n):
        handle(i, False)
    n = max(2000, int(n * 1.0 / max(1e-3, time.process_time() - t0)))  # ~1 s of CPU
    rounds = max(3, 2 * args.repeat + 1)
    cpu: dict[int, list[float]] = {t: [] for t in SWEEP_INTERVALS}
    samples: dict[int, list[float]] = {t: [] for t in SWEEP_INTERVALS}
    for r in range(rounds):
        order = SWEEP_INTERVALS[r % len(SWEEP_INTERVALS):] + SWEEP_INTERVALS[:r % len(SWEEP_INTERVALS)]
        for t in order:
            if t:
                mod.sampler_start(interval=float(t), depth=16)
            c0 = time.process_time()
            for i in range(n):
                handle(i, False)
            c1 = time.process_time()
            if t:
                samples[t].append(mod.sampler_stats()["samples"] / (c1 - c0))
                mod.sampler_stop()
            cpu[t].append(1e6 * (c1 - c0) / n)
    base = statistics.median(cpu[0])
    line = HERE, _big_site.__code__.co_firstlineno + 1
    tracemalloc.start(1)
    keep = _big_site(100_000)
    exact = sum(st.size for st in tracemalloc.take_snapshot().statistics("lineno")
                if (st.traceback[0].filename, st.traceback[0].lineno) == line)
    tracemalloc.stop()
    del keep
    print(f"handle() x {n:,} per run, {rounds} interleaved rounds, CPU time; a {exact / 2**20:.0f} "
          f"MiB site (100k blocks of ~1.1 KiB) estimated 5 times per interval. "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print("\n| mean interval | CPU us/request | x no hook | samples/s of CPU | 100 MB site: "
          "median estimate / exact (min-max of 5) |")
    print("|---|---|---|---|---|")
    for t in SWEEP_INTERVALS:
        med = statistics.median(cpu[t])
        label = "no hook" if t == 0 else "hook, never samples" if t == 1 << 48 else \
            f"{t // 1024} KiB" if t < 1 << 20 else f"{t >> 20} MiB"
        acc = "-"
        if 0 < t < 1 << 48:
            ratios = []
            for _ in range(5):
                mod.sampler_start(interval=float(t), depth=16)
                keep = _big_site(100_000)
                rows, _ = mod.sampler_drain()
                est = sum(r[2] for r in rows if r[0] and r[0][0] == line)
                mod.sampler_stop()
                del keep
                ratios.append(est / exact)
            acc = f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
        rate = f"{statistics.median(samples[t]):,.0f}" if samples[t] else "-"
        print(f"| {label} | {med:.2f} | {med / base:.3f} | {rate} | {acc} |")
    return 0


# -- a real service under HTTP load -----------------------------------------------------------
# uvicorn (one worker) serving a starlette app whose handler is handle() above; the load
# comes from another process over 127.0.0.1 (wrk -t1 -c8 when installed, else a Python
# generator with 8 connections). CPU per request = the server process's CPU time (all its
# threads: the agent's, memray's) over the requests served during the measured window;
# p99, p99.9, slowest = the load generator's latencies (p99.9 and the slowest request show
# a stall of the target: a snapshot that keeps the GIL for tens of ms). "thread": the plain
# service with one more thread that only sleeps in poll() - the floor of any in-process
# agent with a thread of its own: a second thread turns off glibc's single-thread fast
# paths (malloc's arena lock) and makes the kernel count references to the shared file
# table on every system call (11% slower os.write+os.read pairs on a pipe, here).
SERVICE_VARIANTS = {
    "plain": "plain python",
    "thread": "plain + 1 idle thread",
    "off": "heapwatch run --trace off",
    "sample": "heapwatch run --trace sample",
    "auto": "heapwatch run --trace auto",
    "on": "heapwatch run --trace on",
    "memray": "memray run",
    "tracemalloc": "tracemalloc.start(1)",
}


def serve(args: argparse.Namespace) -> int:
    """The service (child side): print ``ready PORT PID``, serve until SIGINT."""
    import itertools
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(args.tracemalloc)
    if args.idle_thread:
        import select
        import threading

        def idle() -> None:
            r, _w = os.pipe()
            poller = select.poll()
            poller.register(r, select.POLLIN)
            while True:
                poller.poll(60_000)

        threading.Thread(target=idle, name="idle", daemon=True).start()
    counter = itertools.count()

    async def checkout(request: Any) -> Any:
        return JSONResponse({"size": handle(next(counter), False)})

    app = Starlette(routes=[Route("/checkout", checkout)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY; without it each response (headers, then body)
    # waits ~40 ms for the client's delayed ACK and the server idles at ~180 req/s.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    print("ready", sock.getsockname()[1], os.getpid(), flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def python_load(url: str, seconds: float) -> int:
    """A load generator for machines without wrk: 8 keep-alive connections in threads;
    prints one JSON line (requests, latencies' p50/p99 in ms)."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    lat: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        mine = []
        while time.monotonic() < end:
            t0 = time.perf_counter()
            conn.request("GET", parts.path)
            conn.getresponse().read()
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    print(json.dumps({"requests": len(lat), "p50_ms": 1000 * lat[len(lat) // 2],
                      "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
                      "p999_ms": 1000 * lat[int(len(lat) * 0.999)], "max_ms": 1000 * lat[-1]}),
          flush=True)
    return 0


def _wrk_ms(text: str) -> float:
    num = float(text.rstrip("umsµ"))
    return num / 1000 if text.endswith("us") else num * 1000 if text.endswith("s") and not \
        text.endswith("ms") else num


# wrk prints p50-p99 only; this script adds p99.9 and the slowest request (microseconds)
_WRK_TAIL = """done = function(summary, latency, requests)
  io.write(string.format("TAIL %.0f %.0f\\n", latency:percentile(99.9), latency.max))
end
"""


def run_load(url: str, seconds: float) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        proc = subprocess.run([sys.executable, HERE, "--load", url, "--seconds", str(seconds)],
                              capture_output=True, text=True, timeout=seconds + 60, check=True)
        return last_json(proc.stdout)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_TAIL)
    try:
        proc = subprocess.run([wrk, "-t1", "-c8", f"-d{seconds:g}s", "--latency", "-s",
                               script.name, url],
                              capture_output=True, text=True, timeout=seconds + 60, check=True)
    finally:
        os.unlink(script.name)
    out: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] in ("50%", "99%"):
            out["p50_ms" if f[0] == "50%" else "p99_ms"] = _wrk_ms(f[1])
        elif len(f) == 3 and f[0] == "TAIL":
            out["p999_ms"], out["max_ms"] = float(f[1]) / 1000, float(f[2]) / 1000
        elif "requests in" in line:
            out["requests"] = float(f[0])
        elif f and f[0] == "Non-2xx":
            out["errors"] = float(f[-1])
    return out


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_once(key: str, seconds: float, warmup: float, tmp: str) -> dict[str, Any]:
    import signal

    serve_cmd = [sys.executable, HERE, "--serve"]
    out_dir = os.path.join(tmp, f"{key}-{time.monotonic_ns()}")
    if key in ("off", "sample", "auto", "on"):
        cmd = [sys.executable, "-m", "heapwatch", "run", "--trace", key, "--out", out_dir,
               "--", *serve_cmd]
    elif key == "memray":
        cmd = [sys.executable, "-m", "memray", "run", "--quiet", "--force", "-o",
               out_dir + ".bin", HERE, "--serve"]
    elif key == "tracemalloc":
        cmd = [*serve_cmd, "--tracemalloc", "1"]
    elif key == "thread":
        cmd = [*serve_cmd, "--idle-thread"]
    else:
        cmd = serve_cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"{key}: no ready line: {line!r} {proc.stderr.read()[-500:]!r}"
                               if proc.stderr else key)
        _, port, pid = line.split()
        url = f"http://127.0.0.1:{port}/checkout"
        run_load(url, warmup)
        cpu0 = _cpu_s(int(pid))
        res: dict[str, Any] = dict(run_load(url, seconds))
        res["cpu_s"] = _cpu_s(int(pid)) - cpu0
        res["cpu_per_req_us"] = 1e6 * res["cpu_s"] / max(1.0, res["requests"])
        os.kill(int(pid), signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if key in ("off", "sample", "auto", "on"):
        with open(os.path.join(out_dir, "report.json"), encoding="utf-8") as f:
            rep = json.load(f)
        res["trace"] = (rep.get("trace") or {}).get("mode")
        res["pause_max_ms"] = 1000 * ((rep.get("agent") or {}).get("pause_max_s") or 0)
        res["share"] = (rep.get("trace") or {}).get("share")
    shutil.rmtree(out_dir, ignore_errors=True)
    if os.path.exists(out_dir + ".bin"):
        os.unlink(out_dir + ".bin")
    return res


def service_bench(args: argparse.Namespace) -> int:
    seconds = 20.0 if args.seconds == 10.0 else args.seconds  # --seconds' own default is 10
    only = [k for k in args.service_only.split(",") if k] or list(SERVICE_VARIANTS)
    keys = ["plain", *[k for k in only if k != "plain"]]
    tmp = tempfile.mkdtemp(prefix="heapwatch-service-bench-")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    load0 = os.getloadavg()[0]
    gen = "wrk -t1 -c8" if shutil.which("wrk") else "python, 8 connections"
    print(f"uvicorn + starlette on 127.0.0.1, load: {gen}, "
          f"{seconds:g} s per run after 3 s of warm-up, {args.repeat} interleaved rounds "
          f"(each starting one variant later); "
          f"Python {platform.python_version()}, load average {load0:.1f}", flush=True)
    for r in range(args.repeat):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:  # each round starts elsewhere
            res = service_once(k, seconds, 3.0, tmp)
            runs[k].append(res)
            print(f"  round {r + 1} {k:12s} {res['requests']:8.0f} req  "
                  f"{res['cpu_per_req_us']:7.1f} us CPU/req  p99 {res['p99_ms']:5.1f} ms  "
                  f"p99.9 {res.get('p999_ms', 0):5.1f} ms  max {res.get('max_ms', 0):5.1f} ms"
                  + (f"  (ran: {res['trace']}, max pause {res['pause_max_ms']:.0f} ms)"
                     if "trace" in res else ""), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    plain_cpu = statistics.median(x["cpu_per_req_us"] for x in runs["plain"])
    plain_p99 = statistics.median(x["p99_ms"] for x in runs["plain"])
    print("\n| variant | req/s | CPU per request | x plain | p99 latency | x plain | p99.9 | "
          "slowest |")
    print("|---|---|---|---|---|---|---|---|")
    for k in keys:
        cpu = statistics.median(x["cpu_per_req_us"] for x in runs[k])
        p99 = statistics.median(x["p99_ms"] for x in runs[k])
        p999 = statistics.median(x.get("p999_ms", 0.0) for x in runs[k])
        slowest = statistics.median(x.get("max_ms", 0.0) for x in runs[k])
        rps = statistics.median(x["requests"] for x in runs[k]) / seconds
        print(f"| {SERVICE_VARIANTS[k]} | {rps:.0f} | {cpu:.0f} us | {cpu / plain_cpu:.2f} | "
              f"{p99:.1f} ms | {p99 / plain_p99:.2f} | {p999:.1f} ms | {slowest:.0f} ms |")
    print(f"\nGoal for --trace sample: CPU per request <= 1.05x plain, p99 <= 1.2x plain. "
          f"Load average {load0:.1f} -> {os.getloadavg()[0]:.1f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
