"""The same shop as a bare ASGI app for uvicorn: ``uvicorn --workers 2 shop_asgi:app``.

Its page memo ``CACHE`` is a module global (``shop_asgi.CACHE``), leaking or steady by
``SHOP_MODE`` like the WSGI shop.
"""

from __future__ import annotations

from typing import Any

from catalog import page

CACHE: dict[object, str] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope.get("path", "/")
    if path.startswith("/product/"):
        try:
            body = page(int(path.rsplit("/", 1)[1]), CACHE).encode()
            status = 200
        except ValueError:
            body, status = b"bad product", 400
    elif path == "/health":
        body, status = b"ok", 200
    else:
        body, status = b"not found", 404
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
