"""Bounded HTTP load on a local shop: ``python load.py URL [--seconds S] [--requests N]``.

Threads with one ``httpx.Client`` each ask for product pages until S seconds passed or N
requests were sent (whichever first), or until ``--until-gone PID`` exits, at most
``--rate`` requests per second in all (0: as fast as the server answers); then print one
JSON line: requests, failures, seconds, requests per second. Only for 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

RECONNECT = 20  # requests per connection


def run(url: str, seconds: float, max_requests: int, threads: int,
        until_gone: int | None = None, rate: float = 0.0,
        stop: threading.Event | None = None) -> dict[str, Any]:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"load.py only sends to this machine, not {host}")
    lock = threading.Lock()
    counts = {"requests": 0, "failed": 0}
    errors: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    t_start = time.monotonic()

    def gone() -> bool:
        if stop is not None and stop.is_set():
            return True
        if until_gone is None:
            return False
        try:
            os.kill(until_gone, 0)
        except ProcessLookupError:
            return True
        return False

    def one(client: httpx.Client, i: int) -> bool:
        """One request for product ``i``; False when the run is over."""
        with lock:
            if counts["requests"] >= max_requests:
                return False
            counts["requests"] += 1
            due = t_start + counts["requests"] / rate if rate > 0 else 0.0
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        try:
            r = client.get(f"{url}/product/{i % 100_000}")
            ok = r.status_code == 200
            why = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            ok, why = False, type(exc).__name__
        if not ok:
            with lock:
                counts["failed"] += 1
                errors[why] = errors.get(why, 0) + 1
        return True

    def worker(n: int) -> None:
        i = n
        while True:
            # A fresh connection every RECONNECT requests, as many clients would make: a
            # pre-fork server's kernel hands each connection to one worker, so four
            # connections kept alive for a whole run left a worker idle one run in eight.
            with httpx.Client(timeout=30.0) as client:
                for _ in range(RECONNECT):
                    if time.monotonic() >= deadline or gone():
                        return
                    i += threads
                    if not one(client, i):
                        return

    t0 = time.monotonic()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    took = time.monotonic() - t0
    return {"requests": counts["requests"], "failed": counts["failed"], "seconds": round(took, 3),
            "rps": round(counts["requests"] / took, 1) if took > 0 else 0.0, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--until-gone", type=int, default=None)
    ap.add_argument("--rate", type=float, default=0.0)
    args = ap.parse_args()
    print(json.dumps(run(args.url, args.seconds, args.requests, args.threads, args.until_gone,
                         args.rate)), flush=True)


if __name__ == "__main__":
    main()
