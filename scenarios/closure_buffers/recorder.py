"""Payload recorder factory used by the closure_buffers scenario.

``make_recorder`` returns a ``record`` function that copies each payload into
a fixed-size 4 KiB buffer and keeps it in the closure-captured list
``chunks``, so that ``dump`` can replay them for debugging.  Nothing ever
trims ``chunks``.
"""

from __future__ import annotations

from collections.abc import Callable

CHUNK_SIZE = 4096


def make_recorder() -> Callable[[bytes], int]:
    chunks: list[bytearray] = []
    total = 0

    def record(data: bytes) -> int:
        nonlocal total
        buf = bytearray(CHUNK_SIZE)  # LEAK-SITE
        n = min(len(data), CHUNK_SIZE)
        buf[:n] = data[:n]
        chunks.append(buf)
        # BUG: no cap -- should keep only the last N chunks (e.g. a deque(maxlen=N)).
        total += n
        return len(chunks)

    return record
