"""Catalogue service with a big warm-up and then bounded state (steady scenario).

At import, helper ``catalog.py`` loads 50,000 products into
``catalog.PRODUCTS``.  During the first ~2 s the service then warms up: each
tick it adds 500 entries to a price index (``SERVICE._by_price``, 20,000
entries when done) and 50 pre-computed quotes for the most popular products
(``SERVICE._quotes``, 2,000 entries when done).  After that, requests only
read those tables and record themselves in the bounded ``SERVICE.recent``
(``deque(maxlen=256)``), so nothing grows any more: warm-up is not a leak.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import random
import sys
import time

import catalog

TICK = 0.05
REQUESTS_PER_TICK = 20  # -> ~400 requests per second
INDEX_SIZE = 20_000
INDEX_CHUNK = 500  # -> index complete after 40 ticks (~2 s)
HOT_SKUS = 2_000
QUOTE_CHUNK = 50  # -> quote cache complete after 40 ticks (~2 s)


class CatalogService:
    def __init__(self) -> None:
        self._by_price: list[tuple[float, int]] = []
        self._quotes: dict[int, tuple[str, float]] = {}
        self._index_pos = 0
        self.recent: collections.deque[tuple[int, int]] = collections.deque(maxlen=256)

    @property
    def warm(self) -> bool:
        return self._index_pos >= INDEX_SIZE and len(self._quotes) >= HOT_SKUS

    def warm_up_step(self) -> None:
        stop = min(INDEX_SIZE, self._index_pos + INDEX_CHUNK)
        for sku in range(self._index_pos, stop):
            bisect.insort(self._by_price, (catalog.PRODUCTS[sku].price, sku))
        self._index_pos = stop
        start = len(self._quotes)
        for sku in range(start, min(HOT_SKUS, start + QUOTE_CHUNK)):
            product = catalog.PRODUCTS[sku]
            self._quotes[sku] = (product.name, round(product.price * 1.2, 2))

    def handle(self, sku: int) -> float:
        quote = self._quotes.get(sku)
        # Cold products are priced on the fly and deliberately not cached.
        price = round(catalog.PRODUCTS[sku].price * 1.2, 2) if quote is None else quote[1]
        rank = bisect.bisect_left(self._by_price, (price, -1))  # how many indexed items are cheaper
        self.recent.append((sku, rank))
        return price


SERVICE = CatalogService()


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        if not SERVICE.warm:
            SERVICE.warm_up_step()
        for _ in range(REQUESTS_PER_TICK):
            hot = random.random() < 0.9
            SERVICE.handle(random.randrange(HOT_SKUS if hot else catalog.PRODUCT_COUNT))
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
