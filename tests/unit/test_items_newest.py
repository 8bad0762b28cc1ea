"""The newest items of a container a target thread keeps changing are read in one piece."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict, deque
from typing import Any

import pytest

from heapwatch.agent.items import _newest


@pytest.mark.parametrize("make, change", [
    (lambda: deque(range(400)), lambda c, i: (c.append(i), c.popleft())),
    (lambda: dict.fromkeys(range(400)), lambda c, i: (c.__setitem__(i + 400, None),
                                                      c.pop(next(iter(c))))),
    (lambda: OrderedDict.fromkeys(range(400)), lambda c, i: (c.__setitem__(i + 400, None),
                                                             c.popitem(last=False))),
    (lambda: set(range(400)), lambda c, i: (c.add(i + 400), c.discard(i))),
], ids=["deque", "dict", "OrderedDict", "set"])
def test_newest_while_another_thread_changes_the_container(make: Any, change: Any) -> None:
    # The GIL is handed over every microsecond: an iteration driven from Python code
    # between two items would meet "mutated during iteration" within a few reads.
    box = make()
    stop = threading.Event()

    def mutate() -> None:
        i = 0
        while not stop.is_set():
            change(box, i)
            i += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t = threading.Thread(target=mutate)
    t.start()
    try:
        for _ in range(300):
            got = _newest(box, 256)
            assert len(got) == 256
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
