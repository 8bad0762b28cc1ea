"""Order export service on PyYAML 5.1 whose one custom implicit resolver makes every dump grow a
class attribute of the library's Dumper (leaking scenario, yaml/pyyaml#67).

At start the service registers an implicit resolver for its ``!sku`` tag with
``yaml.add_implicit_resolver`` (no ``first`` characters: it goes under the key ``None``).
PyYAML 5.1's ``BaseResolver.resolve`` does ``resolvers += yaml_implicit_resolvers.get(None,
[])`` on the list it got for the scalar's first character, which extends that list *in
place*: every dumped scalar that starts with ``t`` (each line's ``in_stock: true``) appends
one more entry to ``yaml.dumper.Dumper.yaml_implicit_resolvers['t']``, a list inside a dict
that is a class attribute of a library class. ~50 entries/s.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time

import yaml

TICK = 0.05
REQUESTS_PER_TICK = 1  # -> 20 exports/s, 2-3 priced lines each
SKU = re.compile(r"^SKU-\d{6}$")

yaml.add_implicit_resolver("!sku", SKU)


def export_order(req_id: int) -> str:
    lines = [{"sku": f"SKU-{random.randint(0, 999_999):06d}",
              "price": f"EUR {random.uniform(1.0, 199.99):.2f}", "in_stock": True}
             for _ in range(random.randint(2, 3))]
    return yaml.dump({"id": f"A{req_id}", "lines": lines}, default_flow_style=True)


def handle_request(req_id: int) -> int:
    return len(export_order(req_id))


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
