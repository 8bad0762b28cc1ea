"""The shop's product rendering, shared by the WSGI and the ASGI app.

``SHOP_MODE=leak`` (default): every rendered page is memoised under the request's own id,
so the memo never hits and never evicts (``CACHE`` grows by one entry per request).
``SHOP_MODE=steady``: the memo is keyed by product (100 of them): full after a few
hundred requests, then constant.
"""

from __future__ import annotations

import itertools
import os

MODE = os.environ.get("SHOP_MODE", "leak")
PRODUCTS = 100
_ids = itertools.count()


def render(product: int) -> str:
    return f"<li data-id='{product}'>product {product}: {product * 7 % 97} in stock</li>" * 3


def page(product: int, cache: dict[object, str]) -> str:
    key: object = (product, next(_ids)) if MODE == "leak" else product % PRODUCTS
    html = cache.get(key)
    if html is None:
        html = cache[key] = render(product)
    return html
