"""Profile service with a cachetools LRU cache that is still filling at the end of a short run
(steady scenario: a bounded cache is not a leak).

Profiles are looked up through ``CACHE = cachetools.LRUCache(maxsize=4096)`` from a key
space of 200,000 users; a miss builds the profile (a small tuple) and stores it. At ~120
misses/s the cache holds ~2,400 of its 4,096 entries after 20 s, still climbing, and stops
at 4,096 (cachetools evicts the least recently used entry) after ~35 s. The dict inside it
(``CACHE._Cache__data``) and its order ``OrderedDict`` grow all along a short run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import cachetools

TICK = 0.05
REQUESTS_PER_TICK = 6  # -> 120 lookups/s, nearly all misses until the cache is warm

CACHE: cachetools.LRUCache[int, tuple[int, str, float]] = cachetools.LRUCache(maxsize=4096)
TIERS = ("free", "pro", "team", "enterprise")


def load_profile(user_id: int) -> tuple[int, str, float]:
    return (user_id, TIERS[user_id % len(TIERS)], random.random())


def handle_request(req_id: int) -> int:
    user_id = random.randint(0, 200_000)
    profile = CACHE.get(user_id)
    if profile is None:
        profile = CACHE[user_id] = load_profile(user_id)
    return profile[0]


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
