"""Request/response tracker for an RPC client (leaking scenario).

Every outgoing request is recorded in ``TRACKER._pending`` (request id ->
send timestamp) so that the response handler can compute the round-trip
latency.  The response handler reads the timestamp with ``dict.get`` instead
of ``dict.pop``, so answered requests are never removed and ``_pending``
grows by ~100 entries per second forever.

The dict only holds ints and floats, so it is not tracked by the garbage
collector -- the most common (and least visible) leak shape.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time

TICK = 0.05  # seconds between batches
REQUESTS_PER_TICK = 5  # -> ~100 requests per second


class PendingTracker:
    """Tracks in-flight requests and aggregates response latencies."""

    def __init__(self) -> None:
        self._pending: dict[int, float] = {}
        self._next_id = 0
        self.answered = 0
        self.latency_total = 0.0
        self.latency_max = 0.0

    def send(self) -> int:
        self._next_id += 1
        req_id = self._next_id
        self._pending[req_id] = time.monotonic()  # LEAK-SITE
        return req_id

    def on_response(self, req_id: int) -> None:
        # BUG: should be self._pending.pop(req_id, None) (what --fixed does)
        sent_at = self._pending.pop(req_id, None) if FIXED else self._pending.get(req_id)
        if sent_at is None:
            return
        latency = time.monotonic() - sent_at
        self.answered += 1
        self.latency_total += latency
        self.latency_max = max(self.latency_max, latency)


TRACKER = PendingTracker()
FIXED = False  # --fixed: the repaired service, for checking that a finding is gone


class FakeBackend:
    """In-process stand-in for a remote server: answers after 1-3 ticks."""

    def __init__(self) -> None:
        self._inflight: collections.deque[tuple[int, int]] = collections.deque()
        self._tick = 0

    def submit(self, req_id: int) -> None:
        self._inflight.append((self._tick + random.randint(1, 3), req_id))

    def poll(self) -> list[int]:
        self._tick += 1
        ready = [r for due, r in self._inflight if due <= self._tick]
        if ready:
            self._inflight = collections.deque(
                (due, r) for due, r in self._inflight if due > self._tick
            )
        return ready


def handle_batch(backend: FakeBackend) -> None:
    for _ in range(REQUESTS_PER_TICK):
        backend.submit(TRACKER.send())
    for req_id in backend.poll():
        TRACKER.on_response(req_id)


def run(duration: float | None, load_for: float | None = None) -> None:
    backend = FakeBackend()
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    load_until = None if load_for is None else start + load_for
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        if load_until is None or time.monotonic() < load_until:
            handle_batch(backend)
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
    parser.add_argument("--fixed", action="store_true", help="run the repaired version")
    parser.add_argument(
        "--load-for",
        type=float,
        default=None,
        help="handle requests for this many seconds only, then stay idle (default: all along)",
    )
    args = parser.parse_args(argv)
    global FIXED
    FIXED = args.fixed
    try:
        run(args.duration, args.load_for)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
