"""Query-timing service that adds a SQLAlchemy event listener per request and never removes
it (leaking scenario; the pattern of inconshreveable/sqltap#41 and sqlalchemy's event docs).

Each request tags its queries with ``event.listen(ENGINE, "before_execute", on_execute)``
on a fresh closure over the request id and forgets ``event.remove``. The engine keeps
every listener in ``ENGINE.dispatch.before_execute.listeners`` (a deque inside
SQLAlchemy's dispatch objects): +20 listeners/s, and every query runs all of them. SQLAlchemy's ``sqlalchemy.event.registry`` tables (weak
references) grow at the same rate.
"""

from __future__ import annotations

import argparse
import sys
import time

from sqlalchemy import create_engine, event, text

TICK = 0.05
REQUESTS_PER_TICK = 1  # -> 20 requests/s

ENGINE = create_engine("sqlite://")
LAST_QUERY = [0]


def handle_request(req_id: int) -> int:
    def on_execute(conn, clauseelement, multiparams, params, execution_options):  # type: ignore[no-untyped-def]
        LAST_QUERY[0] = req_id

    event.listen(ENGINE, "before_execute", on_execute)  # BUG: never event.remove(...)
    with ENGINE.connect() as conn:
        conn.execute(text("SELECT :n"), {"n": req_id})
    return LAST_QUERY[0]


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
