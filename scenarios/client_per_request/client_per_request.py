"""Service that opens a new backend client per request (leaking scenario).

Each simulated request creates a new ``Client`` instead of reusing one.  The
client registers itself in the class-level registry ``ConnectionPool._clients``
(so the pool can close everything at shutdown) but the request handler never
calls ``client.close()``, so the registry grows by ~60 clients per second.

Each client owns a real but never-connected ``socket.socket()``.  To stay far
away from the open-file limit, the service stops handing out new sockets once
``SOCKET_BUDGET`` are open; later clients are created in the ``"queued"``
state without a socket but are still registered (and still leaked).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import random
import resource
import socket
import sys
import time
from typing import ClassVar

TICK = 0.05
REQUESTS_PER_TICK = 3  # -> ~60 new clients per second

_soft_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
if _soft_nofile == resource.RLIM_INFINITY:
    _soft_nofile = 4096
SOCKET_BUDGET = max(16, min(600, _soft_nofile - 128))


class ConnectionPool:
    """Class-level registry of every client that has been opened."""

    _clients: ClassVar[list[Client]] = []
    _open_sockets = 0

    @classmethod
    def register(cls, client: Client) -> None:
        cls._clients.append(client)

    @classmethod
    def unregister(cls, client: Client) -> None:
        with contextlib.suppress(ValueError):
            cls._clients.remove(client)

    @classmethod
    def new_socket(cls) -> socket.socket | None:
        if cls._open_sockets >= SOCKET_BUDGET:
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        cls._open_sockets += 1
        return sock


class Client:
    _ids = itertools.count(1)

    def __init__(self, host: str, port: int) -> None:
        self.client_id = next(self._ids)
        self.host = host
        self.port = port
        self.sock = ConnectionPool.new_socket()
        self.state = "idle" if self.sock is not None else "queued"
        self.requests_sent = 0
        ConnectionPool.register(self)

    def call(self, method: str, body: bytes) -> bytes:
        # Simulated round trip: nothing goes on the wire.
        self.requests_sent += 1
        return b"OK " + method.encode() + b" " + str(len(body)).encode()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            ConnectionPool._open_sockets -= 1
        self.state = "closed"
        ConnectionPool.unregister(self)


def handle_request(n: int) -> bytes:
    client = Client("127.0.0.1", 9000 + n % 4)  # LEAK-SITE
    reply = client.call("GET", random.randbytes(32))
    # BUG: the client should be closed (or taken from a shared pool) here.
    return reply


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    n = 0
    while deadline is None or time.monotonic() < deadline:
        for _ in range(REQUESTS_PER_TICK):
            n += 1
            handle_request(n)
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
        pass
    finally:
        # Release the sockets so no ResourceWarning is emitted at shutdown.
        ConnectionPool._clients, clients = [], ConnectionPool._clients
        for client in clients:
            if client.sock is not None:
                client.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
