"""Ingest worker that keeps every failure's exception object (leaking scenario).

Each request decodes a record with ``validation.decode_record``; about half of
the records have a bad checksum and raise ``ValueError``.  The worker keeps
every caught exception in the module-level list ``ERRORS`` "for the error
report".  Each exception holds its traceback, the traceback holds the frame
of ``decode_record``, and the frame holds that call's 16 KiB ``payload``
buffer -- so ``ERRORS`` gains ~20 exceptions per second, each pinning ~16 KiB
(~320 KiB/s).
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import validation

TICK = 0.05
REQUESTS_PER_TICK = 2  # -> ~40 records per second ...
BAD_RATIO = 0.5  # ... about half of them corrupt -> ~20 leaked exceptions per second

ERRORS: list[Exception] = []
STATS = {"ok": 0, "failed": 0}


def make_raw(record_id: int) -> bytes:
    body = b"%d,%s,%d" % (record_id, random.choice((b"click", b"view", b"buy")), random.randint(1, 99))
    good = validation.checksum(body)
    return body + bytes([good if random.random() >= BAD_RATIO else (good + 1) & 0xFF])


def handle_request(record_id: int) -> bool:
    try:
        validation.decode_record(record_id, make_raw(record_id))
    except ValueError as exc:
        ERRORS.append(exc)  # BUG: keeps the traceback (and its frames' locals) alive
        STATS["failed"] += 1
        return False
    STATS["ok"] += 1
    return True


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    record_id = 0
    while deadline is None or time.monotonic() < deadline:
        for _ in range(REQUESTS_PER_TICK):
            record_id += 1
            handle_request(record_id)
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
