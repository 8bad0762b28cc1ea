"""Census: one pass over the gc-tracked objects.

Counts live objects by type and notes every tracked container above a size floor by
(id, type, len). The object list is freed before this returns, so nothing the target
dropped is kept alive by the agent.
"""

from __future__ import annotations

import gc
from collections import Counter, deque
from collections.abc import Callable, Collection
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401

CONTAINER_BASES: tuple[type, ...] = (dict, list, set, deque)


def base_len(t: type) -> Callable[[Any], int] | None:
    """The C-level ``len`` of the container base of ``t`` (never a user ``__len__``)."""
    for base in CONTAINER_BASES:
        if issubclass(t, base):
            fn: Callable[[Any], int] = base.__len__  # type: ignore[attr-defined]
            return fn
    return None


class CensusResult:
    __slots__ = ("big", "gc_objects", "type_counts")

    def __init__(
        self,
        type_counts: dict[type, int],
        big: list[tuple[int, type, int]],
        gc_objects: int,
    ) -> None:
        self.type_counts = type_counts
        self.big = big
        self.gc_objects = gc_objects


def take_census(
    floor: int, exclude_ids: Collection[int], keep: dict[int, Any] | None = None
) -> CensusResult:
    """Count tracked objects by type; list tracked containers with ``len >= floor``.

    When ``keep`` is given, the big containers are also put in it (id -> object) for the
    rest of the snapshot; the caller must clear it before the snapshot ends.
    """
    objs = gc.get_objects()
    try:
        counts = Counter(map(type, objs))
        lens: dict[type, Callable[[Any], int]] = {}
        for t in counts:
            fn = base_len(t)
            if fn is not None:
                lens[t] = fn
        big: list[tuple[int, type, int]] = []
        for o in objs:
            t = type(o)
            fn = lens.get(t)
            if fn is None:
                continue
            n = fn(o)
            if n >= floor:
                i = id(o)
                if i in exclude_ids:
                    continue
                big.append((i, t, n))
                if keep is not None:
                    keep[i] = o
        return CensusResult(dict(counts), big, len(objs))
    finally:
        del objs
