"""The owner walk meets containers that the target's threads change as it reads them."""

from __future__ import annotations

import sys
import threading
import types
from collections import deque

from heapwatch.agent import paths


def test_the_walk_goes_on_when_a_thread_changes_a_container_it_reads() -> None:
    mod = types.ModuleType("hw_walk_churn")
    mod.QUEUE = deque([i] for i in range(3000))  # type: ignore[attr-defined]
    mod.TABLE = {i: [i] for i in range(3000)}  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    stop = threading.Event()

    def churn() -> None:
        i = 3000
        queue, table = mod.QUEUE, mod.TABLE  # type: ignore[attr-defined]
        while not stop.is_set():
            queue.append([i])
            queue.popleft()
            for k in range(i, i + 8):  # the size changes for a while
                table[k] = [k]
            for k in range(i - 3000, i - 2992):
                table.pop(k, None)
            i += 8

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the GIL changes hands every microsecond
    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(15):
            found = paths.discover(100, 5.0, 200_000)  # raised RuntimeError before
            assert found.nodes > 0
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
        del sys.modules[mod.__name__]
