"""Shop front-end rendering cart fragments (leaking scenario).

Each request renders a cart fragment through ``templates.render_cart``, which
memoises the HTML in the module-global dict ``templates._RENDERED``.  The key
contains the cart revision, which is bumped on every request, so the memo
never hits and gains ~80 strings per second.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import templates

TICK = 0.05
REQUESTS_PER_TICK = 4  # -> ~80 renders per second
PAGES = ("cart", "mini-cart", "checkout")


def handle_batch(state: dict[str, int]) -> int:
    size = 0
    for _ in range(REQUESTS_PER_TICK):
        state["rev"] += 1
        user_id = random.randrange(5000)
        html = templates.render_cart(
            random.choice(PAGES),
            user_id,
            state["rev"],
            random.randint(1, 9),
            random.uniform(5, 500),
        )
        size += len(html)
    return size


def run(duration: float | None, load_for: float | None = None) -> None:
    state = {"rev": 0}
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    load_until = None if load_for is None else start + load_for
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        if load_until is None or time.monotonic() < load_until:
            handle_batch(state)
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
    parser.add_argument(
        "--load-for",
        type=float,
        default=None,
        help="handle requests for this many seconds only, then stay idle (default: all along)",
    )
    args = parser.parse_args(argv)
    try:
        run(args.duration, args.load_for)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
