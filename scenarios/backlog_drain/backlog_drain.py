"""Work queue that absorbs a load spike and drains it again (steady scenario).

Incoming jobs go into the module-level ``BACKLOG`` deque; a worker pops at
most ``capacity`` jobs per tick.  Normally (~100 jobs/s in, up to 150/s out)
the backlog stays near zero.  From ~3 s to ~9 s after start a load spike
sends ~900 jobs/s, so ``BACKLOG`` climbs to ~4500 jobs; afterwards arrivals
drop to ~60/s while the worker scales up to 1000 jobs/s, so the backlog is
empty again by ~14 s and stays near zero.  Growth that is paid back is not a
leak.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time

TICK = 0.05
SPIKE_START = 3.0
SPIKE_END = 9.0


class Job:
    __slots__ = ("job_id", "kind", "payload")

    def __init__(self, job_id: int, kind: str, payload: bytes) -> None:
        self.job_id = job_id
        self.kind = kind
        self.payload = payload


BACKLOG: collections.deque[Job] = collections.deque()
STATS = {"enqueued": 0, "done": 0, "peak": 0, "checksum": 0}


def rates(elapsed: float) -> tuple[int, int]:
    """(arrivals per second, worker capacity per second) at this point in time."""
    if elapsed < SPIKE_START:
        return 100, 150
    if elapsed < SPIKE_END:
        return 900, 150  # load spike: the worker pool has not scaled up yet
    return 60, 1000  # spike over, worker pool scaled up


def enqueue(count: int, next_id: int) -> int:
    for _ in range(count):
        next_id += 1
        BACKLOG.append(Job(next_id, random.choice(("resize", "index", "mail")), random.randbytes(48)))
    STATS["enqueued"] += count
    STATS["peak"] = max(STATS["peak"], len(BACKLOG))
    return next_id


def work(capacity: int) -> None:
    for _ in range(min(capacity, len(BACKLOG))):
        job = BACKLOG.popleft()
        STATS["checksum"] = (STATS["checksum"] + sum(job.payload[:8]) + job.job_id) & 0xFFFFFFFF
        STATS["done"] += 1


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    next_id = 0
    while deadline is None or time.monotonic() < deadline:
        arrivals, capacity = rates(time.monotonic() - start)
        mean = arrivals * TICK
        next_id = enqueue(max(0, round(random.uniform(0.7 * mean, 1.3 * mean))), next_id)
        work(int(capacity * TICK))
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
