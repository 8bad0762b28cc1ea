"""asyncio service with fire-and-forget background jobs (leaking scenario).

Each request schedules a ``notify_webhook`` job with ``asyncio.create_task``
and keeps the task in the module-level set ``BACKGROUND`` (the documented way
to stop it from being garbage-collected mid-flight).  The matching
``task.add_done_callback(BACKGROUND.discard)`` was forgotten -- and the job
waits for a delivery acknowledgement (an ``asyncio.Event``) that never comes,
so the tasks never finish either.  ``BACKGROUND`` gains ~50 pending tasks per
second, each keeping its coroutine frame and payload alive.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

TICK = 0.05
REQUESTS_PER_TICK = 1  # -> ~20 requests per second ...
JOBS_PER_REQUEST = (2, 3)  # ... each firing 2-3 background jobs (~50 tasks/s)

BACKGROUND: set[asyncio.Task[None]] = set()


class Delivery:
    def __init__(self, req_id: int, hook: str) -> None:
        self.req_id = req_id
        self.hook = hook
        self.acked = asyncio.Event()  # set by the (never-arriving) ack callback
        self.attempts = 0


async def notify_webhook(delivery: Delivery) -> None:
    delivery.attempts += 1
    await delivery.acked.wait()  # never set: the job never completes


def handle_request(req_id: int) -> None:
    for hook in random.sample(("billing", "crm", "audit", "search"), random.randint(*JOBS_PER_REQUEST)):
        task = asyncio.create_task(notify_webhook(Delivery(req_id, hook)))  # LEAK-SITE
        BACKGROUND.add(task)
        # BUG: missing ``task.add_done_callback(BACKGROUND.discard)`` (and a timeout)


async def serve(duration: float | None) -> None:
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    start = loop.time()
    deadline = None if duration is None else start + duration
    next_tick = start
    req_id = 0
    while deadline is None or loop.time() < deadline:
        for _ in range(REQUESTS_PER_TICK):
            req_id += 1
            handle_request(req_id)
        next_tick += TICK
        delay = next_tick - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_tick = loop.time()
            await asyncio.sleep(0)


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
        # asyncio.run cancels (and awaits) every pending task before it returns or
        # re-raises KeyboardInterrupt, so no "Task was destroyed" warnings appear.
        asyncio.run(serve(args.duration))
    except KeyboardInterrupt:
        return 0
    finally:
        BACKGROUND.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
