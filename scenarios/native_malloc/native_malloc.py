"""Image service whose native decode buffers are never freed (leaking scenario).

Each request "decodes" a thumbnail into a 64 KiB scratch buffer obtained from
the C library's ``malloc`` through ``ctypes`` (as a C extension would) and
fills it with ``memset`` so that its pages are really resident.  The matching
``free`` is missing.  Python only keeps a counter and the last address, so the
Python heap stays flat while RSS grows by ~2.5 MB per second (~40 buffers/s)
-- the leak is visible only outside the Python heap.  After ``MAX_BYTES``
(128 MiB, ~50 s) the service stops allocating, to keep long runs bounded.
"""

from __future__ import annotations

import argparse
import ctypes
import random
import sys
import time

TICK = 0.05
REQUESTS_PER_TICK = 2  # -> ~40 native buffers (~2.5 MiB) per second
BUFFER_SIZE = 64 * 1024
MAX_BYTES = 128 * 1024 * 1024

_libc = ctypes.CDLL(None)
_malloc = _libc.malloc
_malloc.restype = ctypes.c_void_p
_malloc.argtypes = [ctypes.c_size_t]


class Decoder:
    def __init__(self) -> None:
        self.buffers = 0  # only a count and the last address: no Python-side growth
        self.leaked_bytes = 0
        self.last_address = 0

    def decode(self, width: int, height: int, fill: int) -> int:
        if self.leaked_bytes + BUFFER_SIZE > MAX_BYTES:
            return 0
        address = _malloc(BUFFER_SIZE)  # LEAK-SITE
        if not address:
            return 0
        ctypes.memset(address, fill, BUFFER_SIZE)  # touch every page
        # BUG: missing ``_libc.free(address)`` once the thumbnail is encoded.
        self.buffers += 1
        self.leaked_bytes += BUFFER_SIZE
        self.last_address = address
        return width * height


DECODER = Decoder()


def handle_request() -> int:
    return DECODER.decode(random.randint(64, 256), random.randint(64, 256), random.randint(1, 255))


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        for _ in range(REQUESTS_PER_TICK):
            handle_request()
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
