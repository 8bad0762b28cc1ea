"""Notification service rendering many Jinja2 templates through the Environment's bounded
template cache (steady scenario).

``ENV = jinja2.Environment(loader=DictLoader(...60 templates...), cache_size=200)``:
requests render the 60 notification templates in turn (one per campaign, say). Jinja2
keeps compiled templates in a ``jinja2.utils.LRUCache`` of capacity 200
(``ENV.cache._mapping`` and its ``_queue``): it fills with all 60 in ~6 s, then every
render is a hit. Its capacity (a slot of the cache) is the bound.
"""

from __future__ import annotations

import argparse
import sys
import time

import jinja2

REQUESTS_PER_TICK = 1
TICK = 0.1  # -> 10 renders/s

TEMPLATES = {
    f"notice_{i}.txt": "Hello {{ name }}, order {{ order }} "
    + f"ships in {{{{ days }}}} days (notice {i})." + "{% if vip %} Thanks!{% endif %}"
    for i in range(60)
}
ENV = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), cache_size=200)


def handle_request(req_id: int) -> int:
    template = ENV.get_template(f"notice_{req_id % 60}.txt")
    return len(template.render(name="Ada", order=req_id, days=2, vip=req_id % 3 == 0))


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
