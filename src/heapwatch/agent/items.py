"""What a growing container gains: the type and allocation site of its newest items."""

from __future__ import annotations

import gc
import sys
from collections import Counter, deque
from itertools import islice
from types import BuiltinFunctionType, CodeType, FrameType, FunctionType, MethodType, ModuleType
from typing import Any

from heapwatch.agent import core
from heapwatch.agent.naming import type_name
from heapwatch.agent.sites import is_own, object_sites, sampling, storage_sites
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
        # Containers first: an int or a str field often comes from elsewhere (a loop
        # counter, parsed input), a dict or list field from the item's own constructor.
        for ref in sorted(gc.get_referents(item), key=lambda r: isinstance(r, _ATOMIC)):
            if isinstance(ref, type):
                continue
            site, user = object_sites(ref)
            if site is not None:
                break
    return site, user


_OPAQUE = (type, ModuleType, FunctionType, CodeType, FrameType, BuiltinFunctionType)


def deep_size(obj: Any, tracing: bool, limit: int = 2000) -> int:
    """Bytes ``obj`` retains: pympler's ``asizeof`` when the target has already imported it
    and tracemalloc is off, else ``sys.getsizeof`` over what it references, bounded to
    ``limit`` objects (classes, modules, functions and frames are shared, not retained).

    The agent does not import pympler itself: its import adds ~1,500 functions and large
    type tables to the target, which the census would then report as the target's growth
    (and under tracing the import costs a second).
    """
    asizeof_mod = sys.modules.get("pympler.asizeof")
    if asizeof_mod is not None and not tracing:
        try:
            return int(asizeof_mod.asizeof(obj))
        except Exception:
            pass
    seen: set[int] = set()
    todo = [obj]
    total = 0
    try:
        while todo and len(seen) < limit:
            o = todo.pop()
            if id(o) in seen or isinstance(o, _OPAQUE):
                continue
            seen.add(id(o))
            total += sys.getsizeof(o, 0)
            todo.extend(gc.get_referents(o))
    finally:
        todo.clear()
    return total


def _item_type(item: Any, stem: str) -> str:
    """``bound method of mod.Handler`` for bound methods: the object a listener list keeps
    alive is the one the method is bound to."""
    if type(item) is MethodType:
        return "bound method of " + type_name(type(item.__self__), stem)
    return type_name(type(item), stem)


def sample_items(key: str, obj: Any, k: int, stem: str, tracing: bool) -> list[ItemSample]:
    """Sample the ``k`` newest items of ``obj``; group them by (type, site)."""
    items = _newest(obj, _widen(k))
    return _group(key, items, stem, tracing, storage_sites(obj) if sampling() else None)


def sample_type(name: str, t: type, k: int, stem: str) -> list[ItemSample]:
    """Sites of the newest objects of type ``t`` (the youngest gc generation holds them).

    Never from a list of ``gc.get_objects(0)`` held while this Python code runs: that list
    can hold a tuple another thread is still building (see census.py)."""
    items = [(o, None) for o in core.newest_of_type(t, _widen(k))]
    return _group("type:" + name, items, stem, True)


#: Types CPython recycles through free lists: an object of these types often reuses a block
#: first allocated elsewhere, so its sampled block names that other line (tracemalloc
#: corrects this on reuse; a sampler sees no reuse).
_RECYCLED = (float, tuple, list, dict)

#: Items looked at while the sampler runs: about one block in T/size is sampled, so the
#: newest 256 are looked up in its live-sample table (a lookup costs ~0.1 us).
SAMPLED_ITEMS = 256


def _widen(k: int) -> int:
    return max(k, SAMPLED_ITEMS) if sampling() else k


def _sites(items: list[tuple[Any, Any]]) -> list[tuple[str | None, str | None]]:
    """Each item's site, by the best evidence the batch has: the items' own allocations;
    else (none of them traced or sampled) a dict's keys; else what the items refer to."""
    direct = [object_sites(item) for item, _ in items]
    if any(s for s, _ in direct):
        return direct
    keys = [object_sites(fb) if fb is not None else (None, None) for _, fb in items]
    if any(s for s, _ in keys):
        return keys
    return [_site_of(item) for item, _ in items]


def _group(key: str, items: list[tuple[Any, Any]], stem: str, tracing: bool,
           storage: tuple[str | None, str | None] | None = None) -> list[ItemSample]:
    """Group items by (type, site). ``storage``, while sampling: where the container last
    grew, the site of items of free-list types (their own samples are unreliable)."""
    try:
        groups: Counter[tuple[str, str | None, str | None]] = Counter()
        sizes: Counter[tuple[str, str | None, str | None]] = Counter()
        sized: Counter[tuple[str, str | None, str | None]] = Counter()
        found = _sites(items) if tracing else [(None, None)] * len(items)
        for (item, _), (site, user) in zip(items, found, strict=True):
            if storage is not None and storage[0] is not None and type(item) in _RECYCLED:
                site, user = storage
            if site is not None and is_own(site.rpartition(":")[0]):
                continue  # the agent's own object (a type sample can catch one)
            g = (_item_type(item, stem), site, user)
            groups[g] += 1
            if sized[g] < 8:  # the mean size of a group from its first few items
                sized[g] += 1
                sizes[g] += deep_size(item, tracing)
        return [ItemSample(key, g[0], n, g[1], g[2], sizes[g] // max(sized[g], 1))
                for g, n in groups.most_common()]
    finally:
        del items
