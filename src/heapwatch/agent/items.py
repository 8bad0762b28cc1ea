"""What a growing container gains: the type and allocation site of its newest items."""

from __future__ import annotations

import gc
import sys
from collections import Counter, deque
from itertools import islice
from typing import Any

from heapwatch.agent.naming import type_name
from heapwatch.agent.sites import object_sites
from heapwatch.model import ItemSample

_ATOMIC = (type(None), bool, int, str, bytes)


def _newest(obj: Any, k: int) -> list[tuple[Any, Any]]:
    """The ``k`` newest items, each as (item, fallback): for a dict the value, and its key
    to try when the value has no traceback (a cached small int, an interned string)."""
    t = type(obj)
    if issubclass(t, dict):
        return [(v, key) for key, v in islice(reversed(dict.items(obj)), k)]
    if issubclass(t, list):
        return [(v, None) for v in list.__getitem__(obj, slice(-k, None))]
    if issubclass(t, deque):
        return [(v, None) for v in islice(reversed(obj), k)]
    if issubclass(t, set):
        return [(v, None) for v in islice(set.__iter__(obj), k)]
    return []


def _site_of(item: Any) -> tuple[str | None, str | None]:
    site, user = object_sites(item)
    if site is None and not isinstance(item, _ATOMIC) and not isinstance(item, type):
        # Freelist reuse, or CPython 3.11 instances with a managed dict (gh-101430), have
        # no trace: the item's own fields were usually allocated on its line or just before.
        for ref in gc.get_referents(item):
            if isinstance(ref, type):
                continue
            site, user = object_sites(ref)
            if site is not None:
                break
    return site, user


def sample_items(key: str, obj: Any, k: int, stem: str, tracing: bool) -> list[ItemSample]:
    """Sample the ``k`` newest items of ``obj``; group them by (type, site)."""
    items = _newest(obj, k)
    try:
        groups: Counter[tuple[str, str | None, str | None]] = Counter()
        sizes: Counter[tuple[str, str | None, str | None]] = Counter()
        for item, fallback in items:
            site, user = _site_of(item) if tracing else (None, None)
            if site is None and tracing and fallback is not None:
                site, user = _site_of(fallback)
            g = (type_name(type(item), stem), site, user)
            groups[g] += 1
            sizes[g] += sys.getsizeof(item, 0)
        return [
            ItemSample(key, tname, n, site, user, sizes[(tname, site, user)] // max(n, 1))
            for (tname, site, user), n in groups.most_common()
        ]
    finally:
        del items
