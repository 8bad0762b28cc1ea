"""A small Flask shop served by gunicorn: ``gunicorn -w 2 shop:app``.

Its page memo ``CACHE`` is a module global: with ``SHOP_MODE=leak`` it never evicts
(heapwatch names it ``shop.CACHE``), with ``SHOP_MODE=steady`` it is bounded.
"""

from __future__ import annotations

from catalog import page
from flask import Flask

app = Flask(__name__)
CACHE: dict[object, str] = {}


@app.get("/product/<int:product>")
def product_page(product: int) -> str:
    return page(product, CACHE)


@app.get("/health")
def health() -> str:
    return "ok"
