"""Noisy session cache next to a slow audit-trail leak (leaking scenario).

``SESSIONS`` is a busy cache: every tick adds 10-30 sessions and evicts random
ones down to a target drawn between 850 and 1150, so its size jumps around
(mostly ~850-1000 entries) but stays bounded.  Next to it, privileged actions (about
one every 0.15 s) are appended to the module-level list ``AUDIT_TRAIL`` "until
the nightly export", which never runs -- a slow, steady leak of ~6-7 strings
per second hidden behind the much noisier cache.  At start the trail is seeded
with the 150 entries left over from the previous run's spool, so it is already
a sizeable list and the test is about slow growth, not about a list appearing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

TICK = 0.05
AUDIT_EVERY = 3  # ticks -> one audit entry every 0.15 s (~6.7/s)
CACHE_TARGET = 1000
CACHE_JITTER = 150

USERS = [f"user{i:04d}" for i in range(300)]
ACTIONS = ("grant-role", "revoke-role", "rotate-key", "export-data", "impersonate")

SESSIONS: dict[str, tuple[str, float]] = {}
AUDIT_TRAIL: list[str] = []
SPOOLED_ENTRIES = 150


def touch_sessions(now: float) -> None:
    for _ in range(random.randint(10, 30)):
        token = f"{random.getrandbits(64):016x}"
        SESSIONS[token] = (random.choice(USERS), now)
    target = CACHE_TARGET + random.randint(-CACHE_JITTER, CACHE_JITTER)
    if len(SESSIONS) > target:
        for token in random.sample(list(SESSIONS), len(SESSIONS) - target):
            del SESSIONS[token]


def audit(now: float) -> None:
    user = random.choice(USERS)
    action = random.choice(ACTIONS)
    AUDIT_TRAIL.append(f"{now:.3f} {user} {action}")  # LEAK-SITE
    # BUG: the nightly export that should drain AUDIT_TRAIL was never scheduled.


def restore_spool(now: float) -> None:
    """Entries the previous run had not exported yet."""
    for i in range(SPOOLED_ENTRIES):
        AUDIT_TRAIL.append(f"{now - 3600 + i:.3f} {USERS[i % len(USERS)]} {ACTIONS[i % len(ACTIONS)]}")


def run(duration: float | None) -> None:
    restore_spool(time.time())
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    tick = 0
    while deadline is None or time.monotonic() < deadline:
        now = time.time()
        touch_sessions(now)
        if tick % AUDIT_EVERY == 0:
            audit(now)
        tick += 1
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
