"""Request handlers that subscribe to config-change events (leaking scenario).

Each simulated request creates a ``RequestHandler`` which subscribes its bound
method ``on_config_changed`` to ``bus.BUS`` so that it can react to a config
reload while it is running.  Finished handlers never unsubscribe, so
``bus.BUS._listeners`` gains ~100 bound methods per second and keeps every
handler (and its per-request state) alive.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import bus

TICK = 0.05
REQUESTS_PER_TICK = 5  # -> ~100 requests (and leaked listeners) per second
CONFIG_RELOAD_EVERY = 40  # ticks (~2 s)

CONFIG: dict[str, Any] = {"version": 0, "timeout": 1.0}


class RequestHandler:
    def __init__(self, req_id: int, path: str) -> None:
        self.req_id = req_id
        self.path = path
        self.timeout = CONFIG["timeout"]
        self.status = 0

    def on_config_changed(self, topic: str, payload: Any) -> None:
        if topic == "config" and self.status == 0:
            self.timeout = payload["timeout"]

    def handle(self) -> int:
        self.status = 200 if random.random() > 0.02 else 500
        return self.status


def handle_request(req_id: int) -> int:
    handler = RequestHandler(req_id, random.choice(("/", "/items", "/cart", "/login")))
    bus.BUS.subscribe(handler.on_config_changed)  # LEAK-SITE
    return handler.handle()
    # BUG: missing ``bus.BUS.unsubscribe(handler.on_config_changed)`` (e.g. in a finally)


def run(duration: float | None, load_for: float | None = None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    load_until = None if load_for is None else start + load_for
    next_tick = start
    req_id = 0
    tick = 0
    while deadline is None or time.monotonic() < deadline:
        busy = load_until is None or time.monotonic() < load_until
        for _ in range(REQUESTS_PER_TICK if busy else 0):
            req_id += 1
            handle_request(req_id)
        tick += 1
        if busy and tick % CONFIG_RELOAD_EVERY == 0:
            CONFIG["version"] += 1
            CONFIG["timeout"] = random.choice((0.5, 1.0, 2.0))
            bus.BUS.publish("config", dict(CONFIG))
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
