"""Sharing the GIL with the target while the agent runs a long stretch of Python code.

CPython gives the GIL to a waiting thread only once the holder has kept it for the switch
interval (5 ms), and a thread that let it go for a system call must wait that long again
to get it back. A busy service lets it go many times a millisecond (each epoll, each
socket send); the agent's walk never does. So while the agent walks (~50 ms of CPU on a
small uvicorn service) it holds the GIL nearly all the time, and the requests in flight
wait for the walk: measured here, a service's p99.9 latency went from 3 ms to 20-40 ms at
5 s snapshots, its slowest request to 60 ms, and the snapshots were the whole difference.

A long loop of the agent calls ``Pacer.step()`` every few dozen items. After ``slice_s``
of running it sleeps ``nap_s`` (the GIL released), which lets a waiting thread take the
GIL and keep it until it next lets go. The agent then takes a share of about
slice / (slice + nap) of a contended GIL, in slices short enough for a request to wait
through one, and its work is spread over more wall time instead of stopping the target.
An idle target pays nothing; the agent's own work takes longer by about nap / slice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401

SLICE_S = 0.0005  # the longest stretch the agent keeps the GIL between naps
NAP_S = 0.001  # how long it then leaves it: the agent takes ~1/3 of a contended GIL


class Pacer:
    """Naps of ``nap_s`` after each ``slice_s`` of work; ``step()`` is cheap in between.
    With ``nap_s`` 0 it never naps (a snapshot taken on the target's own thread)."""

    __slots__ = ("_due", "around", "nap_s", "napped_s", "naps", "slice_s")

    def __init__(self, slice_s: float = SLICE_S, nap_s: float = NAP_S) -> None:
        self.slice_s = slice_s
        self.nap_s = nap_s
        self.naps = 0
        self.napped_s = 0.0  # wall time spent napping and getting the GIL back: not a pause
        # called with True before each nap and False after (sites.unsampled.napping)
        self.around: Callable[[bool], None] | None = None
        self._due = time.perf_counter() + slice_s

    def step(self) -> None:
        """Nap if this slice is used up. Never raises."""
        if self.nap_s <= 0:
            return
        now = time.perf_counter()
        if now < self._due:
            return
        around = self.around
        if around is not None:
            around(True)
        time.sleep(self.nap_s)
        if around is not None:
            around(False)
        self.naps += 1
        after = time.perf_counter()
        self.napped_s += after - now
        self._due = after + self.slice_s
