"""Script-formatting service on calmjs.parse 1.3.2 whose unparser's lru_cache keeps every
dispatcher it ever made (leaking scenario, calmjs/calmjs.parse#45).

Each request pretty-prints a small JavaScript snippet with
``calmjs.parse.unparsers.es5.pretty_print``. Every call builds a new ``Dispatcher``, and
``Dispatcher.optimize_definition`` is wrapped in ``functools.lru_cache(maxsize=None)`` on
the class: the cache key includes the dispatcher itself, so each call adds ~85 entries
that are never hit again and keep their dispatcher alive. The cache is
``calmjs.parse.unparsers.walker.Dispatcher.optimize_definition.<lru_cache>``: a class
attribute of a library class, ~170 entries/s.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from calmjs.parse import es5
from calmjs.parse.unparsers.es5 import pretty_print

TICK = 0.1
REQUESTS_PER_TICK = 1  # -> 10 snippets/s

SNIPPETS = (
    "var total = function(items) { var s = 0; for (var i = 0; i < items.length; i++) "
    "{ s += items[i].price * %d; } return s; };",
    "function greet(name) { if (!name) { return 'hello'; } return 'hello ' + name + %d; }",
)


def handle_request(req_id: int) -> int:
    tree = es5(random.choice(SNIPPETS) % req_id)
    return len(pretty_print(tree))


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
