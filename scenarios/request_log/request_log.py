"""HTTP-ish service keeping a ring buffer of recent requests (steady scenario).

Every request appends a ``RequestRecord`` (a gc-tracked object with its own
dict) to ``metrics.RECENT``, a ``collections.deque(maxlen=256)``.  At ~100
requests per second the buffer is full after ~2.5 s and then stays at 256
entries; per-route counters live in a Counter with a fixed set of routes.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import metrics

TICK = 0.05
REQUESTS_PER_TICK = 5  # -> ~100 requests per second
ROUTES = ("/", "/items", "/items/{id}", "/cart", "/login", "/logout", "/search")


def handle_batch(state: dict[str, int]) -> None:
    for _ in range(REQUESTS_PER_TICK):
        state["req_id"] += 1
        status = 200 if random.random() > 0.03 else 503
        metrics.record(
            state["req_id"], random.choice(ROUTES), status, random.lognormvariate(2.0, 0.5)
        )
    if state["req_id"] % 100 == 0:
        metrics.p95_latency()


def run(duration: float | None) -> None:
    state = {"req_id": 0}
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        handle_batch(state)
        next_tick += TICK
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="exit after this many seconds (default: run until interrupted)",
    )
    args = parser.parse_args(argv)
    try:
        run(args.duration)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
