"""Log-ingest service parsing client timestamps with dateutil, whose warnings about unknown
zone names fill a dunder module global (leaking scenario; python/cpython#71722 (bpo-27535)
on ``__warningregistry__``, dateutil's UnknownTimezoneWarning).

Clients send timestamps such as ``2024-05-01 10:22:31 QZX``. ``dateutil.parser.parse``
does not know the zone and warns ``tzname QZX identified but not understood...``. The
warning's text holds the zone name, and the ``default`` action records every distinct
(text, category, line) in the warning module's ``__warningregistry__``: the module global
``dateutil.parser._parser.__warningregistry__`` gains an entry per new zone name, ~40/s.
The service routes warnings to logging (``logging.captureWarnings``) with a NullHandler, so
nothing is printed.
"""

from __future__ import annotations

import argparse
import logging
import random
import string
import sys
import time

from dateutil import parser as dtparser

TICK = 0.05
REQUESTS_PER_TICK = 2  # -> 40 timestamps/s, almost all with a new zone name

logging.captureWarnings(True)
logging.getLogger("py.warnings").addHandler(logging.NullHandler())
logging.getLogger("py.warnings").propagate = False


def client_timestamp() -> str:
    zone = "".join(random.choices(string.ascii_uppercase, k=random.choice((4, 5))))
    return f"2024-05-{random.randint(1, 28):02d} {random.randint(0, 23):02d}:17:31 {zone}"


def handle_request(req_id: int) -> int:
    try:
        when = dtparser.parse(client_timestamp())  # LEAK-SITE
    except (ValueError, OverflowError):  # e.g. a zone name that reads as a month ("SEPT")
        return -1  # a bad timestamp is the client's problem: counted, not fatal
    return when.hour


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
