"""Who owns tracemalloc: the agent stops only the tracing it started.

While the agent traces (a window of ``--trace auto``, the whole run with ``--trace on``),
``tracemalloc.start`` and ``tracemalloc.stop`` are replaced by thin wrappers, removed as
soon as the agent's tracing ends. If the target starts tracing meanwhile, tracing becomes
the target's: it is restarted with the target's frame count, as it would have been
without heapwatch, and the agent leaves it on. If the target stops it, it is stopped and
the agent's window simply ends. A ``take_snapshot()`` of the target never fails because
of heapwatch.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401

_REAL_START: Callable[..., None] = tracemalloc.start
_REAL_STOP: Callable[[], None] = tracemalloc.stop


class Tracing:
    """The agent's handle on tracemalloc. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owned = False
        self.taken_over = 0  # how many times the target took tracing over from the agent
        self._start = self._make_start()
        self._stop = self._make_stop()

    @property
    def owned(self) -> bool:
        """True while tracing runs because the agent started it."""
        return self._owned

    def start(self, depth: int) -> bool:
        """Start tracing for the agent; False (and nothing done) when something traces
        already: then it is not the agent's to stop."""
        with self._lock:
            if tracemalloc.is_tracing():
                return False
            _REAL_START(depth)
            self._owned = True
            tracemalloc.start = self._start
            tracemalloc.stop = self._stop
            return True

    def adopt(self) -> None:
        """Tracing that runs now is the agent's (a forked child's agent, whose parent's
        agent started it)."""
        with self._lock:
            if tracemalloc.is_tracing():
                self._owned = True
                tracemalloc.start = self._start
                tracemalloc.stop = self._stop

    def after_fork(self) -> None:
        """In a forked child: a lock that another thread held at the fork stays held."""
        self._lock = threading.Lock()

    def stop(self) -> None:
        """End the agent's tracing: stopped if it is still the agent's, else left alone."""
        with self._lock:
            if self._owned and tracemalloc.is_tracing():
                _REAL_STOP()
            self._release()

    def _release(self) -> None:
        self._owned = False
        # ours, or another agent's of this process (the parent's, in a forked child)
        if getattr(tracemalloc.start, "_heapwatch", False):
            tracemalloc.start = _REAL_START
        if getattr(tracemalloc.stop, "_heapwatch", False):
            tracemalloc.stop = _REAL_STOP

    def _make_start(self) -> Callable[..., None]:
        def start(nframe: int = 1, /) -> None:
            with self._lock:
                if self._owned:
                    self.taken_over += 1
                    self._release()
                    if tracemalloc.get_traceback_limit() != nframe:
                        _REAL_STOP()  # the target's own tracing starts now, at its depth
            _REAL_START(nframe)

        _like(start, _REAL_START)
        return start

    def _make_stop(self) -> Callable[[], None]:
        def stop() -> None:
            with self._lock:
                if self._owned:
                    self.taken_over += 1
                    self._release()
            _REAL_STOP()

        _like(stop, _REAL_STOP)
        return stop


def _like(wrapper: Any, real: Any) -> None:
    wrapper.__name__ = getattr(real, "__name__", wrapper.__name__)
    wrapper.__qualname__ = getattr(real, "__qualname__", wrapper.__qualname__)
    wrapper.__doc__ = getattr(real, "__doc__", None)
    wrapper.__wrapped__ = real
    wrapper._heapwatch = True
