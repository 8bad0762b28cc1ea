"""Login service with an epoch-rotated session table (steady scenario).

``SessionStore._sessions`` (a class attribute) maps session token ->
``Session``.  Sessions are only valid for the current key epoch; every 2 s
the signing key rotates and the whole table is cleared.  The table grows
linearly to ~200 entries and then drops to zero: a bounded sawtooth.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import time
from typing import ClassVar

TICK = 0.05
LOGINS_PER_TICK = 5  # -> ~100 new sessions per second
ROTATE_EVERY = 2.0  # seconds


class Session:
    __slots__ = ("created", "epoch", "last_seen", "token", "user")

    def __init__(self, token: str, user: str, now: float, epoch: int) -> None:
        self.token = token
        self.user = user
        self.created = now
        self.last_seen = now
        self.epoch = epoch


class SessionStore:
    _sessions: ClassVar[dict[str, Session]] = {}
    _epoch = 0
    _rotated_at = 0.0

    @classmethod
    def login(cls, user: str, now: float) -> str:
        token = secrets.token_hex(8)
        cls._sessions[token] = Session(token, user, now, cls._epoch)
        return token

    @classmethod
    def touch(cls, token: str, now: float) -> bool:
        session = cls._sessions.get(token)
        if session is None:
            return False
        session.last_seen = now
        return True

    @classmethod
    def maybe_rotate(cls, now: float) -> None:
        if now - cls._rotated_at >= ROTATE_EVERY:
            cls._epoch += 1
            cls._rotated_at = now
            cls._sessions.clear()


def handle_batch(recent: list[str]) -> None:
    now = time.monotonic()
    SessionStore.maybe_rotate(now)
    for _ in range(LOGINS_PER_TICK):
        token = SessionStore.login(f"user{random.randrange(10_000)}", now)
        recent[random.randrange(len(recent))] = token
    for token in random.sample(recent, 10):
        SessionStore.touch(token, now)


def run(duration: float | None) -> None:
    recent = [""] * 32  # fixed-size sample of recently issued tokens
    print("ready", flush=True)
    start = time.monotonic()
    SessionStore._rotated_at = start
    deadline = None if duration is None else start + duration
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        handle_batch(recent)
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
