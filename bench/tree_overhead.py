"""What watching a whole pre-fork server costs: gunicorn -w 2, plain / heapwatch / memray.

The steady shop of ``scenarios/web_shop`` (``SHOP_MODE=steady``) runs under gunicorn with
two sync workers, bound to 127.0.0.1 on a free port, three ways, in interleaved rounds:

* plain ``gunicorn``;
* ``heapwatch run --interval 1s -- gunicorn ...`` (default ``--children all``, ``--trace
  auto``: the master and both workers each have their own agent);
* ``memray run --follow-fork -o DIR/out.bin -m gunicorn ...`` (memray's own way to follow
  a pre-fork server; ``pip install memray``; skipped when it is not installed).

Each round waits for the server's "Booting worker" lines, then drives it with
``scenarios/web_shop/load.py`` (4 threads, keep-alive ``httpx`` clients, as fast as the
server answers) for ``--seconds``. Figures per round: requests per second seen by the
client, and CPU time per request of the whole server tree (master and workers, from
``/proc`` through psutil, read just before and after the load; the workers live through
the round). The table shows medians over the rounds and their ratio to plain gunicorn.
CPU per request is the steadier figure on a small shared machine: request rates move by
10-30% between identical rounds.

    python bench/tree_overhead.py [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from typing import Any

import psutil  # type: ignore[import-untyped]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOP = os.path.join(ROOT, "scenarios", "web_shop")
BIN = os.path.dirname(sys.executable)


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("shop_load", os.path.join(SHOP, "load.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_cpu(pid: int) -> float:
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def server_pid(proc: subprocess.Popen[str], mode: str) -> int:
    """The gunicorn master: the launched process, or its child under heapwatch run."""
    if mode != "heapwatch":
        return proc.pid
    for child in psutil.Process(proc.pid).children():
        return int(child.pid)
    raise RuntimeError("heapwatch started no server")


def one_round(mode: str, seconds: float, load: Any, tmp: str) -> dict[str, float] | None:
    port = free_port()
    gunicorn = ["-w", "2", "-b", f"127.0.0.1:{port}", "shop:app"]
    help_text = subprocess.run([os.path.join(BIN, "gunicorn"), "--help"], capture_output=True,
                               text=True).stdout
    if "--no-control-socket" in help_text:
        gunicorn.insert(0, "--no-control-socket")
    if mode == "plain":
        cmd = [os.path.join(BIN, "gunicorn"), *gunicorn]
    elif mode == "heapwatch":
        out = tempfile.mkdtemp(dir=tmp)
        cmd = [sys.executable, "-m", "heapwatch", "run", "--interval", "1s", "--out", out,
               "--", os.path.join(BIN, "gunicorn"), *gunicorn]
    else:
        memray = shutil.which("memray") or os.path.join(BIN, "memray")
        if not os.path.exists(memray):
            return None
        out = tempfile.mkdtemp(dir=tmp)
        cmd = [memray, "run", "--follow-fork", "-q", "-o", os.path.join(out, "out.bin"),
               "-m", "gunicorn", *gunicorn]
    env = dict(os.environ, SHOP_MODE="steady", PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.Popen(cmd, cwd=SHOP, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    booted = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if sum("Booting worker" in x for x in lines) >= 2:
                booted.set()
        proc.stderr.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not booted.wait(60):
            raise RuntimeError(f"{mode}: the server did not start:\n{''.join(lines[-20:])}")
        pid = server_pid(proc, mode)
        load.run(f"http://127.0.0.1:{port}", 2.0, 10**9, 4)  # warm-up, not measured
        cpu0 = tree_cpu(pid)
        got = load.run(f"http://127.0.0.1:{port}", seconds, 10**9, 4)
        cpu = tree_cpu(pid) - cpu0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(30)
    n = max(1, int(got["requests"]))
    return {"rps": float(got["rps"]), "cpu_ms_per_req": cpu / n * 1000.0,
            "failed": float(got["failed"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    load = _load()
    modes = ["plain", "heapwatch", "memray"]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="hw-tree-bench-") as tmp:
        for r in range(args.rounds):
            for mode in modes:
                got = one_round(mode, args.seconds, load, tmp)
                if got is None:
                    print(f"round {r + 1}: {mode} skipped (memray is not installed: "
                          f"pip install memray)", flush=True)
                    continue
                results[mode].append(got)
                print(f"round {r + 1}: {mode:9s} {got['rps']:8.1f} req/s  "
                      f"{got['cpu_ms_per_req']:6.3f} ms CPU/request  failed {got['failed']:.0f}",
                      flush=True)
    base = results["plain"]
    if not base:
        return 1
    rps0 = statistics.median(x["rps"] for x in base)
    cpu0 = statistics.median(x["cpu_ms_per_req"] for x in base)
    print(f"\ngunicorn -w 2, steady shop, {args.rounds} rounds of {args.seconds:g} s "
          f"(medians; ratio to plain)")
    print(f"{'mode':32s} {'req/s':>9s} {'ratio':>6s} {'CPU ms/req':>11s} {'ratio':>6s}")
    names = {"plain": "gunicorn (plain)", "heapwatch": "heapwatch run (3 agents)",
             "memray": "memray run --follow-fork"}
    for mode in modes:
        rows = results[mode]
        if not rows:
            continue
        rps = statistics.median(x["rps"] for x in rows)
        cpu = statistics.median(x["cpu_ms_per_req"] for x in rows)
        print(f"{names[mode]:32s} {rps:9.1f} {rps / rps0:6.2f} {cpu:11.3f} {cpu / cpu0:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
