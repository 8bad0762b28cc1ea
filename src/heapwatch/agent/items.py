"""What a growing container gains: the type and allocation site of its newest items."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections import Counter, deque
from itertools import islice
from types import BuiltinFunctionType, CodeType, FrameType, FunctionType, MethodType, ModuleType
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent import census, core
from heapwatch.agent.naming import type_name
from heapwatch.agent.sites import (
    is_own,
    object_frames,
    object_sites,
    sampling,
    split_frames,
    storage_sites,
)
from heapwatch.model import ItemSample

_ATOMIC = (type(None), bool, int, str, bytes)
# item type, site, user site, inferred (a field's site), evidence (ItemSample.evidence)
_Group = tuple[str, str | None, str | None, bool, str]


def _newest(obj: Any, k: int) -> list[tuple[Any, Any]]:
    """The ``k`` newest items, newest first (a set's in no order), each as (item, fallback):
    for a dict the value, and its key to try when the value has no traceback (a cached small
    int, an interned string)."""
    # Each container is read in one C call (list() over C iterators): the target's threads
    # change their containers as they please, and an iteration driven from Python code can
    # lose the GIL between two items ("deque mutated during iteration": 500 threads
    # waking from one Event empty its Condition's deque of waiters). The GIL can still pass
    # between making the iterator and reading it: a deque or set then says it changed, and
    # a dict resized meanwhile reads short (its reversed iterator keeps its old position).
    # A read like that is taken again, a few times at most.
    for _ in range(_READS - 1):
        try:
            got = _read_newest(obj, k)
        except RuntimeError:
            continue
        length = census.base_len(type(obj))  # never a subclass's __len__ (target code)
        if len(got) >= min(k, length(obj) if length is not None else 0):
            return got
    return _read_newest(obj, k)


#: Reads of one container before the last one's result (or error) is taken as it is.
_READS = 4


def _read_newest(obj: Any, k: int) -> list[tuple[Any, Any]]:
    t = type(obj)
    if issubclass(t, dict):
        return [(v, key) for key, v in list(islice(reversed(dict.items(obj)), k))]
    if issubclass(t, list):
        return [(v, None) for v in reversed(list.__getitem__(obj, slice(-k, None)))]
    if issubclass(t, deque):
        return [(v, None) for v in list(islice(deque.__reversed__(obj), k))]
    if issubclass(t, set):
        return [(v, None) for v in list(islice(set.__iter__(obj), k))]
    return []


def _site_of(item: Any) -> tuple[str | None, str | None, bool]:
    """(site, first user frame when the site is in the stdlib or a library, inferred).

    ``inferred`` is True when the item itself has no trace (freelist reuse, or CPython 3.11
    instances with a managed ``__dict__``, gh-101430) and the site comes from one of its
    fields: when that field was set in the class's ``__init__`` and the traceback goes
    further back, the frame that called the constructor is the item's own line (not
    inferred); otherwise the field's line stands in for it, and is said to."""
    site, user = object_sites(item)
    if site is not None or isinstance(item, (*_ATOMIC, type)):
        return site, user, False
    # Containers first: an int or a str field often comes from elsewhere (a loop counter,
    # parsed input), a dict or list field from the item's own constructor.
    for ref in sorted(gc.get_referents(item), key=lambda r: isinstance(r, _ATOMIC)):
        if isinstance(ref, type):
            continue
        site, user = object_sites(ref)
        if site is None:
            continue
        caller = _constructor_caller(type(item), ref)
        if caller is not None:
            return caller[0], caller[1], False
        return site, user, True
    return None, None, False


def _init_lines(t: type) -> list[tuple[str, int, int]]:
    """(file, first line, last line) of the ``__init__``/``__new__`` functions in ``t``'s
    MRO, read from the classes' own dicts (no attribute lookup runs user code)."""
    out = []
    for klass in t.__mro__:
        for name in ("__init__", "__new__", "__post_init__"):
            fn = klass.__dict__.get(name)
            if isinstance(fn, staticmethod):
                fn = fn.__func__
            if type(fn) is FunctionType:
                code = fn.__code__
                lines = [ln for _, _, ln in code.co_lines() if ln is not None]
                if lines:
                    out.append((code.co_filename, min(code.co_firstlineno, *lines), max(lines)))
    return out


def _constructor_caller(t: type, field: Any) -> tuple[str | None, str | None] | None:
    """Where ``t(...)`` was called, from the stack (traced or sampled) of a field its
    constructor allocated: the newest frame outside ``t``'s constructors, as (site, user
    site)."""
    frames = object_frames(field)  # newest first
    if frames is None or len(frames) < 2:
        return None
    inits = _init_lines(t)

    def inside(fr: tuple[str, int]) -> bool:
        return any(f == fr[0] and a <= fr[1] <= b for f, a, b in inits)

    if not inside(frames[0]):
        return None
    for i in range(1, len(frames)):
        if not inside(frames[i]):
            return split_frames(frames[i:])
    return None


_OPAQUE = (type, ModuleType, FunctionType, CodeType, FrameType, BuiltinFunctionType)


def deep_size(obj: Any, tracing: bool, limit: int = 2000) -> int:
    """Bytes ``obj`` retains: pympler's ``asizeof`` when the target has already imported it
    and tracemalloc is off, else ``sys.getsizeof`` over what it references, bounded to
    ``limit`` objects (classes, modules, code and frames are shared, not retained; of a
    function, only its closure and defaults).

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
            if id(o) in seen:
                continue
            if type(o) is FunctionType:
                # A closure made per request is retained with what it captured; its code
                # and its module's globals are shared.
                seen.add(id(o))
                total += sys.getsizeof(o, 0)
                todo.extend(c for c in (o.__closure__, o.__defaults__, o.__kwdefaults__)
                            if c is not None)
                continue
            if isinstance(o, _OPAQUE):
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


def _sites(items: list[tuple[Any, Any]]) -> list[tuple[str | None, str | None, bool]]:
    """Each item's (site, user site, inferred), by the best evidence the batch has: the
    items' own allocations (sampled or traced); else the lines that called their
    constructors (read from a field the constructor allocated); else a dict's keys' own
    allocations; else the line of one of the items' fields, or of their keys' fields
    (``registry[(text, category, line)] = True``: the text), marked inferred."""
    direct = [(*object_sites(item), False) for item, _ in items]
    if any(s for s, _, _ in direct):
        return direct
    fields = [_site_of(item) for item, _ in items]
    if any(s and not inferred for s, _, inferred in fields):
        return fields
    keys = [_site_of(fb) if fb is not None else (None, None, False) for _, fb in items]
    if any(s and not inferred for s, _, inferred in keys):
        return keys
    return fields if any(s for s, _, _ in fields) else keys


def _group(key: str, items: list[tuple[Any, Any]], stem: str, tracing: bool,
           storage: tuple[str | None, str | None] | None = None) -> list[ItemSample]:
    """Group items by (type, site). ``storage``, while sampling: where the container last
    grew, the site of items of free-list types (their own samples are unreliable) and of
    the newest item of a batch with no evidence of its own. Each group says where its site
    came from (ItemSample.evidence): analysis prefers the items' own to the storage's."""
    traced = tracemalloc.is_tracing()
    try:
        groups: Counter[_Group] = Counter()
        sizes: Counter[_Group] = Counter()
        sized: Counter[_Group] = Counter()
        found = _sites(items) if tracing else [(None, None, False)] * len(items)
        # no evidence for any item (True, None, cached ints; keys and fields unsampled):
        # the items were put there as the container grew
        blind = not any(s for s, _, _ in found)
        for i, ((item, _), (site, user, inferred)) in enumerate(
                zip(items, found, strict=True)):
            evidence = "own"
            if storage is not None and storage[0] is not None and (
                    (blind and i == 0) or type(item) in _RECYCLED):
                # a free-list type's own sample may be another line's block. A batch with
                # no evidence: the storage's one sample stands for one item, the newest (as
                # a sampled item does), not for the whole batch, so that a snapshot whose
                # newest items all went unsampled does not outweigh the items sampled in
                # the others
                site, user, inferred = *storage, False
                evidence = "storage"
            elif storage is not None and site is not None and type(item) in _RECYCLED:
                evidence = "recycled"  # the storage unsampled: its own block, for what it is
            if site is not None and is_own(site.rpartition(":")[0]):
                continue  # the agent's own object (a type sample can catch one)
            g = (_item_type(item, stem), site, user, inferred, evidence)
            groups[g] += 1
            if sized[g] < 8:  # the mean size of a group from its first few items
                sized[g] += 1
                # ids allocate under tracemalloc: a smaller bound keeps a traced snapshot short
                sizes[g] += deep_size(item, traced, 400 if traced else 2000)
        return [ItemSample(key, g[0], n, g[1], g[2], sizes[g] // max(sized[g], 1), g[3], g[4])
                for g, n in groups.most_common()]
    finally:
        del items
