"""Request payload capture through a closure (leaking scenario).

The module-level ``RECORD`` is a closure built by ``recorder.make_recorder()``.
Every request hands its body to ``RECORD``, which copies it into a new 4 KiB
``bytearray`` and appends it to the closure-captured list ``chunks``.  The
list is never trimmed, so it gains ~40 buffers (~160 KiB) per second.  It is
reachable only through the closure cell, named
``closure_buffers.RECORD.<closure>.chunks``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import recorder

TICK = 0.05
REQUESTS_PER_TICK = 2  # -> ~40 recorded payloads (~160 KiB) per second

RECORD = recorder.make_recorder()


def handle_request(req_id: int) -> int:
    body = b"POST /upload id=%d " % req_id + random.randbytes(random.randint(200, 3000))
    RECORD(body)
    return 201


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    req_id = 0
    while deadline is None or time.monotonic() < deadline:
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
