"""API service that labels its request counter with the raw request path (leaking scenario,
prometheus/client_python#937; the unbounded-cardinality pattern of its docs).

``REQUESTS = Counter("api_requests", ..., ["method", "path"])`` is incremented with
``REQUESTS.labels(method, path).inc()`` where ``path`` holds the order id
(``/orders/48213``). prometheus_client keeps one child metric per distinct label tuple, for
ever, in the parent's ``_metrics`` dict: ``prometheus_labels.REQUESTS._metrics`` gains ~40
children/s (library objects, created inside ``labels()`` on the service's call line).
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from prometheus_client import CollectorRegistry, Counter

TICK = 0.05
REQUESTS_PER_TICK = 2  # -> 40 requests/s, almost all to a new order id

METRICS = CollectorRegistry()
REQUESTS = Counter("api_requests", "API requests by route", ["method", "path"],
                   registry=METRICS)


def handle_request(req_id: int) -> int:
    method = random.choice(("GET", "GET", "GET", "PUT"))
    path = f"/orders/{random.randint(0, 10_000_000)}"
    REQUESTS.labels(method, path).inc()  # LEAK-SITE
    return 200


def run(duration: float | None, load_for: float | None = None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    load_until = None if load_for is None else start + load_for
    next_tick = start
    req_id = 0
    while deadline is None or time.monotonic() < deadline:
        if load_until is None or time.monotonic() < load_until:
            for _ in range(REQUESTS_PER_TICK):
                req_id += 1
                handle_request(req_id)
        next_tick += TICK
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None,
                        help="exit after this many seconds (default: run until interrupted)")
    parser.add_argument("--load-for", type=float, default=None,
                        help="handle requests for this many seconds only, then stay idle")
    args = parser.parse_args(argv)
    try:
        run(args.duration, args.load_for)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
