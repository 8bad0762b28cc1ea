"""API gateway rate limiter with a pruned last-seen map (steady scenario).

``LIMITER._throttle`` maps client id -> last-seen timestamp.  Client ids come
from a large key space, so the map fills up quickly; whenever it exceeds
``max_entries`` (2000) the limiter deletes every entry older than the
throttle window.  The map therefore follows a sawtooth between roughly 800
and 2000 entries and never grows beyond that.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

TICK = 0.05
REQUESTS_PER_TICK = 40  # -> ~800 requests per second, mostly from new clients
CLIENT_SPACE = 1_000_000


class RateLimiter:
    def __init__(
        self, min_interval: float = 0.2, window: float = 1.0, max_entries: int = 2000
    ) -> None:
        self.min_interval = min_interval
        self.window = window
        self.max_entries = max_entries
        self._throttle: dict[int, float] = {}
        self.allowed = 0
        self.rejected = 0
        self.prunes = 0

    def allow(self, client_id: int, now: float) -> bool:
        last = self._throttle.get(client_id)
        self._throttle[client_id] = now
        if len(self._throttle) > self.max_entries:
            self._prune(now)
        if last is not None and now - last < self.min_interval:
            self.rejected += 1
            return False
        self.allowed += 1
        return True

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        stale = [cid for cid, seen in self._throttle.items() if seen < cutoff]
        for cid in stale:
            del self._throttle[cid]
        self.prunes += 1


LIMITER = RateLimiter()


def pick_client() -> int:
    # A small set of chatty clients plus a long tail of one-off callers.
    if random.random() < 0.2:
        return random.randrange(50)
    return random.randrange(CLIENT_SPACE)


def handle_batch() -> None:
    now = time.monotonic()
    for _ in range(REQUESTS_PER_TICK):
        LIMITER.allow(pick_client(), now)


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        handle_batch()
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
