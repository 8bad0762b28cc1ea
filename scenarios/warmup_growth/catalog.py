"""Product catalogue loaded once at import (used by the warmup_growth scenario)."""

from __future__ import annotations

import random
from dataclasses import dataclass

PRODUCT_COUNT = 50_000
CATEGORIES = tuple(f"cat-{i:02d}" for i in range(40))


@dataclass(frozen=True, slots=True)
class Product:
    sku: int
    name: str
    category: str
    price: float


def _load() -> dict[int, Product]:
    rng = random.Random(1234)  # deterministic "file" contents
    return {
        sku: Product(sku, f"product-{sku:06d}", rng.choice(CATEGORIES), round(rng.uniform(1, 500), 2))
        for sku in range(PRODUCT_COUNT)
    }


PRODUCTS: dict[int, Product] = _load()
