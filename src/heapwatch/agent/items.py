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
from heapwatch.agent import core
from heapwatch.agent.naming import type_name
from heapwatch.agent.sites import is_library, is_own, object_sites, site_label
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
    for ref in gc.get_referents(item):
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


def _constructor_caller(t: type, field: Any) -> tuple[str, str | None] | None:
    """Where ``t(...)`` was called, from the traceback of a field its constructor allocated:
    the newest frame outside ``t``'s constructors, as (site, user site)."""
    tb = tracemalloc.get_object_traceback(field)
    if tb is None or len(tb) < 2:
        return None
    inits = _init_lines(t)
    frames = list(tb)  # oldest first
    newest = frames[-1]
    if not any(f == newest.filename and a <= newest.lineno <= b for f, a, b in inits):
        return None
    for fr in reversed(frames[:-1]):
        if any(f == fr.filename and a <= fr.lineno <= b for f, a, b in inits):
            continue
        site = site_label(fr.filename, fr.lineno)
        user = None
        if is_library(fr.filename):
            for up in reversed(frames[: frames.index(fr)]):
                if not is_library(up.filename):
                    user = site_label(up.filename, up.lineno)
                    break
        return site, user
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
    items = _newest(obj, k)
    return _group(key, items, stem, tracing)


def sample_type(name: str, t: type, k: int, stem: str) -> list[ItemSample]:
    """Sites of the newest objects of type ``t`` (the youngest gc generation holds them).

    Never from a list of ``gc.get_objects(0)`` held while this Python code runs: that list
    can hold a tuple another thread is still building (see census.py)."""
    items = [(o, None) for o in core.newest_of_type(t, k)]
    return _group("type:" + name, items, stem, True)


def _group(key: str, items: list[tuple[Any, Any]], stem: str, tracing: bool) -> list[ItemSample]:
    try:
        groups: Counter[tuple[str, str | None, str | None, bool]] = Counter()
        sizes: Counter[tuple[str, str | None, str | None, bool]] = Counter()
        for item, fallback in items:
            site, user, inferred = _site_of(item) if tracing else (None, None, False)
            if site is None and tracing and fallback is not None:
                site, user, inferred = _site_of(fallback)
            if site is not None and is_own(site.rpartition(":")[0]):
                continue  # the agent's own object (a type sample can catch one)
            g = (_item_type(item, stem), site, user, inferred)
            groups[g] += 1
            # ids allocate under tracing: a smaller bound keeps a traced snapshot short
            sizes[g] += deep_size(item, tracing, 400 if tracing else 2000)
        return [
            ItemSample(key, tname, n, site, user, sizes[(tname, site, user, inf)] // max(n, 1),
                       inf)
            for (tname, site, user, inf), n in groups.most_common()
        ]
    finally:
        del items
