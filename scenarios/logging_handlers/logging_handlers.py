"""Request handlers that attach a per-request audit log handler (leaking scenario).

Every simulated request builds an ``AuditHandler`` carrying its request id and
user, and attaches it to the shared ``logging.getLogger("audit")`` logger so
that the request's audit records would be tagged.  The handler is never
removed (``removeHandler`` is missing), so the logger's ``handlers`` list
grows by ~40 handlers per second and keeps every handler (and its lock)
alive.  The service keeps no reference to the logger itself: the list is
reachable only through the logging manager, as
``logging.Logger.manager.loggerDict['audit'].handlers``.

The audit logger is set to WARNING and the service only logs at DEBUG, so
nothing is ever written anywhere.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time

TICK = 0.05
REQUESTS_PER_TICK = 2  # -> ~40 requests (and leaked handlers) per second

USERS = ("alice", "bob", "carol", "dave", "erin")
AUDIT_LOGGER = "audit"


class AuditHandler(logging.Handler):
    """Tags audit records with the request that produced them (never writes)."""

    def __init__(self, req_id: int, user: str) -> None:
        self.tag = f"req-{req_id}:{user}"
        super().__init__(level=logging.DEBUG)
        self.req_id = req_id
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1


def handle_request(req_id: int) -> int:
    user = random.choice(USERS)
    audit = logging.getLogger(AUDIT_LOGGER)
    audit.addHandler(AuditHandler(req_id, user))  # LEAK-SITE
    # BUG: missing ``audit.removeHandler(handler)`` once the request is done.
    audit.debug("request %d by %s", req_id, user)  # filtered: the logger's level is WARNING
    return 200 if random.random() > 0.02 else 500


def configure_logging() -> None:
    audit = logging.getLogger(AUDIT_LOGGER)
    audit.setLevel(logging.WARNING)
    audit.propagate = False


def run(duration: float | None) -> None:
    configure_logging()
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
