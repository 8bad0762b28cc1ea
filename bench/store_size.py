"""How big a run store grows: bytes per snapshot, and per hour at the default interval.

A real target runs under ``heapwatch run`` for ``--seconds`` at ``--interval``; the store
(after a WAL checkpoint) is measured per table and its size per snapshot is projected to
one hour at heapwatch's default interval (5 s: 720 snapshots), the goal being at most
5 MB per hour per process. Targets:

* ``scenario``: ``scenarios/pending_tracker`` (a small leaking service, ~150 types);
* ``service``: a heavier steady service that imports what a real one does (asyncio,
  http.server, email, logging, sqlite3, json, decimal, numpy, matplotlib, click, psutil:
  ~400 gc-tracked types, ~180 containers above 100 items) and churns a cache;
* with ``--retain-demo``, the ``service`` again with ``--retain 1m`` at 0.2 s for 150 s:
  the store's size every 15 s, to show it stops growing once old snapshots are thinned.

Run from the repository root::

    python bench/store_size.py                     # ~2 min
    python bench/store_size.py --retain-demo       # + 2.5 min
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_INTERVAL = 5.0
GOAL_MB_PER_HOUR = 5.0

SERVICE = """
import asyncio, email.mime.multipart, http.server, json, logging, sqlite3, decimal
import xml.etree.ElementTree, argparse, csv, dataclasses, typing, inspect, urllib.request
import numpy, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import click, psutil
import random, time
CACHE = {}
print("ready", flush=True)
while True:
    for i in range(50):
        CACHE[random.randrange(5000)] = {"user": i, "tags": [i] * 3}
    time.sleep(0.05)
"""


def store_size(db: str) -> tuple[int, int, dict[str, int]]:
    """(bytes of the file after a checkpoint, snapshots, bytes per table)."""
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        n = con.execute("SELECT COUNT(*) FROM snapshots WHERE source='agent'").fetchone()[0]
        tables: dict[str, int] = {}
        try:
            for name, size in con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                tables[name] = size
        except sqlite3.Error:
            pass
    finally:
        con.close()
    return os.path.getsize(db), n, tables


def record(name: str, cmd: list[str], seconds: float, interval: float, tmp: str,
           extra: list[str] | None = None, watch: float = 0.0) -> str:
    out = os.path.join(tmp, name)
    run = [sys.executable, "-m", "heapwatch", "run", "--interval", f"{interval:g}",
           "--duration", f"{seconds:g}", "--trace", "auto", "--out", out, *(extra or []),
           "--", *cmd]
    proc = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = os.path.join(out, "run.sqlite")
    t0 = time.monotonic()
    while watch and proc.poll() is None:
        time.sleep(watch)
        if os.path.exists(db):
            con = sqlite3.connect(db, timeout=30)
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")  # pages into the file; WAL reused
            n = con.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
            con.close()
            wal = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
            print(f"    {time.monotonic() - t0:5.0f} s: {n:5d} snapshots kept, store "
                  f"{os.path.getsize(db) / 1e6:5.2f} MB (WAL {wal / 1e6:.2f} MB, reused)",
                  flush=True)
    _, err = proc.communicate(timeout=seconds + 300)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: heapwatch run exited {proc.returncode}: {err[-500:]}")
    return db


# Written once per run, not per snapshot: the interned names, metadata, schema.
FIXED = {"names", "sqlite_autoindex_names_1", "meta", "sqlite_autoindex_meta_1", "sqlite_schema",
         "marks", "events"}


def report(name: str, db: str) -> float:
    size, n, tables = store_size(db)
    fixed = sum(v for k, v in tables.items() if k in FIXED) if tables else 0
    per_snap = (size - fixed) / max(1, n)
    per_hour = (fixed + per_snap * 3600 / DEFAULT_INTERVAL) / 1e6
    verdict = "within" if per_hour <= GOAL_MB_PER_HOUR else "OVER"
    print(f"{name:<10} {n:5d} snapshots  {size / 1e6:6.2f} MB = {fixed / 1024:.0f} KiB once + "
          f"{per_snap / 1024:5.2f} KiB/snapshot  -> {per_hour:5.2f} MB per hour at "
          f"{DEFAULT_INTERVAL:g} s ({verdict} the {GOAL_MB_PER_HOUR:g} MB goal)")
    top = sorted(tables.items(), key=lambda kv: -kv[1])[:5]
    if top:
        print("           by table: " + ", ".join(f"{t} {s / max(1, n) / 1024:.1f} KiB"
                                                   for t, s in top) + " per snapshot")
    return per_hour


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="recording per target [60]")
    p.add_argument("--interval", type=float, default=0.25,
                   help="snapshot interval of the measured runs (the size per snapshot does "
                        "not depend on it; the projection uses 5 s) [0.25]")
    p.add_argument("--retain-demo", action="store_true")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="hw-store-size-")
    service = os.path.join(tmp, "service.py")
    with open(service, "w") as f:
        f.write(SERVICE)
    try:
        targets = {
            "scenario": [sys.executable,
                         os.path.join(ROOT, "scenarios", "pending_tracker", "pending_tracker.py")],
            "service": [sys.executable, service],
        }
        print(f"{args.seconds:g} s per target at {args.interval:g} s; projected to one hour "
              f"at the default {DEFAULT_INTERVAL:g} s ({int(3600 / DEFAULT_INTERVAL)} snapshots)")
        for name, cmd in targets.items():
            report(name, record(name, cmd, args.seconds, args.interval, tmp))
        if args.retain_demo:
            print("\nservice with --retain 1m at 0.2 s for 150 s (window: 300 snapshots, "
                  "older ones thinned to at most 240):")
            db = record("retain", targets["service"], 150, 0.2, tmp, ["--retain", "1m"],
                        watch=15.0)
            size, n, _ = store_size(db)
            print(f"    at the end: {n} snapshots kept, {size / 1e6:.2f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
