"""Pricing service that memoises a method on an ever-changing key (leaking scenario).

``Pricer.quote`` is decorated with ``functools.lru_cache(maxsize=None)`` to
avoid recomputing quotes.  But the request id is one of its arguments, and it
is new for every request, so the cache never hits: it keeps one entry per
request (the ``(self, request_id, sku, qty)`` key and the quote) and grows by
~60 entries per second without bound.  The cache lives on the function object
``Pricer.quote`` (named ``memo_method.Pricer.quote.<lru_cache>``).
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time

TICK = 0.05
REQUESTS_PER_TICK = 3  # -> ~60 quotes (and cache entries) per second
SKU_COUNT = 400


class Pricer:
    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.base = {sku: 5.0 + (sku % 37) * 1.25 for sku in range(SKU_COUNT)}

    # BUG: request_id makes every key unique, so the unbounded cache never hits.
    @functools.lru_cache(maxsize=None)  # noqa: B019, UP033
    def quote(self, request_id: int, sku: int, qty: int) -> tuple[float, str]:
        unit = self.base[sku]
        discount = 0.9 if qty >= 10 else 1.0
        return round(unit * qty * discount, 2), self.currency


PRICER = Pricer("EUR")


def handle_request(request_id: int) -> float:
    sku = random.randrange(SKU_COUNT)
    qty = random.randint(1, 20)
    total, _currency = PRICER.quote(request_id, sku, qty)  # LEAK-SITE
    return total


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    request_id = 0
    revenue = 0.0
    while deadline is None or time.monotonic() < deadline:
        for _ in range(REQUESTS_PER_TICK):
            request_id += 1
            revenue += handle_request(request_id)
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
