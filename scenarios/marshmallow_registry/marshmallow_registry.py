"""Form-builder service that makes a marshmallow schema class per submitted form revision
(leaking scenario, marshmallow-code/marshmallow#732, #1079).

Every request carries a form definition; the service builds its schema class with
``type(f"Form{id}Rev{rev}Schema", (Schema,), fields)`` to validate the submission.
marshmallow registers every Schema class by name and full path in the module global
``marshmallow.class_registry._registry`` so that ``Nested("Name")`` can find it, and never
lets go of them: the dict gains two keys (and a list each, holding the class) per request,
~40 entries/s, and every schema class stays alive.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from marshmallow import Schema, fields

TICK = 0.05
REQUESTS_PER_TICK = 1  # -> 20 forms/s

FIELD_KINDS = (fields.String, fields.Integer, fields.Float, fields.Boolean, fields.Email)


def validate(req_id: int, submission: dict[str, object]) -> dict[str, object]:
    spec = {f"q{i}": FIELD_KINDS[i % len(FIELD_KINDS)]() for i in range(4)}
    name = f"Form{req_id}Rev{random.randint(1, 9)}Schema"
    schema_cls = type(name, (Schema,), spec)  # LEAK-SITE
    errors = schema_cls().validate(submission)
    return errors


def handle_request(req_id: int) -> int:
    submission = {"q0": "yes", "q1": random.randint(0, 9), "q2": random.random(), "q3": True}
    return len(validate(req_id, submission))


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
