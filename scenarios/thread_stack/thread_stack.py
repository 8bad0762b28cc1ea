"""Background poller whose de-duplication list lives on its stack (leaking scenario).

A worker thread named ``poller`` polls a simulated job feed every 0.05 s.  To
avoid handling the same event twice it remembers every event it has seen in
the local list ``seen`` of ``poll_loop`` -- and never forgets any.  ``seen``
is referenced from nowhere but the thread's running frame, so the only owner
path is ``<thread poller>.poll_loop.seen``.  It gains ~60 small dicts per
second.  The main thread only supervises.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from typing import Any

TICK = 0.05
EVENTS_PER_POLL = 3  # -> ~60 new events (and leaked dicts) per second
QUEUES = ("emails", "thumbnails", "exports", "webhooks")

STATS = {"polls": 0, "handled": 0}


def fetch_events(cursor: int) -> list[tuple[int, str]]:
    """Simulated feed: a few new event ids plus some re-deliveries."""
    fresh = [(cursor + i, random.choice(QUEUES)) for i in range(EVENTS_PER_POLL)]
    redelivered = [(max(0, cursor - random.randint(1, 30)), random.choice(QUEUES))]
    return fresh + redelivered


def poll_loop(stop: threading.Event) -> None:
    seen: list[dict[str, Any]] = []  # every event handled so far, for "debugging"
    highest = -1  # re-deliveries are recognised by id, not by scanning ``seen``
    cursor = 0
    next_tick = time.monotonic()
    while not stop.is_set():
        for event_id, queue in fetch_events(cursor):
            if event_id <= highest:
                continue
            seen.append({"id": event_id, "queue": queue, "at": time.time()})  # LEAK-SITE
            # BUG: nothing ever trims ``seen``; it should be a short window of recent events.
            highest = event_id
            STATS["handled"] += 1
        cursor += EVENTS_PER_POLL
        STATS["polls"] += 1
        next_tick += TICK
        delay = next_tick - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_tick = time.monotonic()


def run(duration: float | None) -> None:
    stop = threading.Event()
    poller = threading.Thread(target=poll_loop, args=(stop,), name="poller", daemon=True)
    poller.start()
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        poller.join(1.0)


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
