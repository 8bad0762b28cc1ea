"""Pricing service with bounded LRU caches (steady scenario).

Quotes are cached in ``CACHE._data``, an ``OrderedDict``-based LRU bounded to
500 entries, and tax rates are memoised with ``functools.lru_cache(maxsize=512)``.
Both key spaces are much larger than the bounds, so the caches are full after
~1-2 s and then stay exactly at their maximum size, evicting the least
recently used entries.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time
from collections import OrderedDict
from typing import NamedTuple

TICK = 0.05
LOOKUPS_PER_TICK = 40  # -> ~800 price lookups per second
SKU_SPACE = 20_000
REGIONS = [f"region-{i}" for i in range(8)]
CATEGORIES = [f"cat-{i:03d}" for i in range(120)]  # 960 (region, category) pairs


class Quote(NamedTuple):
    sku: int
    region: str
    net: float
    gross: float
    computed_at: float


class LRUCache:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[tuple[int, str], Quote] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[int, str]) -> Quote | None:
        try:
            value = self._data[key]
        except KeyError:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: tuple[int, str], value: Quote) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)


CACHE = LRUCache(maxsize=500)


@functools.lru_cache(maxsize=512)
def tax_rate(region: str, category: str) -> float:
    # Pretend this is an expensive lookup in a tax table.
    return round(0.05 + (hash((region, category)) % 200) / 1000, 3)


def base_price(sku: int) -> float:
    return 1.0 + (sku * 7919 % 10_000) / 100


def quote(sku: int, region: str) -> Quote:
    key = (sku, region)
    cached = CACHE.get(key)
    if cached is not None:
        return cached
    category = CATEGORIES[sku % len(CATEGORIES)]
    net = base_price(sku)
    result = Quote(
        sku, region, net, round(net * (1 + tax_rate(region, category)), 2), time.monotonic()
    )
    CACHE.put(key, result)
    return result


def pick_sku() -> int:
    # Popular products are requested often, but the long tail dominates.
    if random.random() < 0.4:
        return random.randrange(40)
    return random.randrange(SKU_SPACE)


def handle_batch() -> float:
    total = 0.0
    for _ in range(LOOKUPS_PER_TICK):
        total += quote(pick_sku(), random.choice(REGIONS)).gross
    return total


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        handle_batch()
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
