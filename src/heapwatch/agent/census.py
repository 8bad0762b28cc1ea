"""Census, the pure-Python core: count the gc-tracked objects by type and list the tracked
containers above a size floor by (id, type, len), holding no reference to a target object
while another thread can run.

Why that matters: a thread building a tuple holds its only reference and relies on it
(``_PyTuple_Resize`` and ``PyTuple_SetItem`` fail with ``SystemError: bad argument to
internal function`` when the refcount is not 1). ``gc.get_objects()`` hands out such a
half-built tuple too; if the agent keeps that list while the GIL passes to the building
thread, the *target* raises. The GIL passes only at an eval-breaker check — between
bytecodes (after a call returns, at a backward jump) — in code that releases it
explicitly, or in a garbage collection that runs finalizers; never inside a C function
that calls no Python code.

So every pass here is one C call (``list``, ``deque``, ``_count_elements``) consuming a
pipeline of C iterators (``map``, ``compress``, ``chain``, ``repeat``, ``partial``, bound
methods of dicts, sets and ints) over a *lazy* ``gc.get_objects()``: the list L is made
at the first ``next()``, inside that call, with the gc disabled, and every reference to
it or to its items is gone before the call returns (so before the interpreter checks the
eval breaker after it). Two rules make that true:

* No buffering iterator sees L's items. ``tee`` and ``zip`` keep the last items they
  read; the pipeline's own iterators were made before L, so L holds them, and a buffer
  that holds them back forms a cycle that outlives the call (the probe caught exactly
  this: ``tee(gc objects)`` kept ~57 of the newest objects alive). Where a pass needs L
  twice, it pulls the list itself twice (``_gc_lists``) and iterates it twice.
* Every iterator that holds L drops it when exhausted (list iterators, ``chain``,
  ``repeat`` once drained, ``compress`` freed by the ``chain`` that ran it), and each
  pipeline is pulled until it is exhausted.

What comes out is ints, types and containers (dict, list, set, deque and subclasses:
code does not rely on holding the only reference to one of those); container lengths
come from the base types' C ``__len__``; types are keyed by ``_key`` (ints hash in C, a
metaclass ``__hash__`` never runs inside a pass).

Raising the switch interval for a pass would not be enough on its own: a thread already
waiting for the GIL asks for it after the interval it read when it began to wait
(``take_gil``). It is not needed: no eval-breaker check happens inside a pass.
"""

from __future__ import annotations

import gc
import operator
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from functools import partial
from itertools import chain, compress, repeat
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401

try:  # the C loop behind Counter.update: the counting runs inside it, in no Python frame
    from _collections import _count_elements  # type: ignore[import-not-found]
except ImportError:  # not CPython: no reference counts, no tuple race
    def _count_elements(mapping: dict[Any, int], iterable: Iterable[Any]) -> None:
        for x in iterable:
            mapping[x] = mapping.get(x, 0) + 1

CONTAINER_BASES: tuple[type, ...] = (dict, list, set, deque)
# Never handed out by newest_of_type: code that builds one of these may rely on holding
# the only reference (tuple resize and SetItem, frozenset add, str and bytes resize).
UNSAFE_TO_HOLD: tuple[type, ...] = (tuple, frozenset, str, bytes)


def base_len(t: type) -> Callable[[Any], int] | None:
    """The C-level ``len`` of the container base of ``t`` (never a user ``__len__``)."""
    for base in CONTAINER_BASES:
        if issubclass(t, base):
            fn: Callable[[Any], int] = base.__len__  # type: ignore[attr-defined]
            return fn
    return None


def _fast_len(t: type) -> Callable[[Any], int] | None:
    """``len`` itself when no class from ``t`` down to its container base defines
    ``__len__`` but the base (so ``len`` runs the base's C slot), else the base's
    ``__len__``; None for a type that is not a container."""
    fn = base_len(t)
    if fn is None:
        return None
    mro: tuple[type, ...] = type.__dict__["__mro__"].__get__(t)
    for k in mro:
        if any(k is base for base in CONTAINER_BASES):  # no ==: a metaclass may define it
            return len
        if "__len__" in type.__dict__["__dict__"].__get__(k):
            return fn
    return fn


class CensusResult:
    """Plain data out of one census: ``type_counts`` as (type, count) pairs (no dict keyed
    by type: hashing a class may run its metaclass's ``__hash__``), ``big`` as (id, type,
    len). ``wanted`` holds the only object references, the containers asked for by id; the
    caller clears it before the snapshot ends."""

    __slots__ = ("big", "gc_objects", "type_counts", "wanted")

    def __init__(
        self,
        type_counts: list[tuple[type, int]],
        big: list[tuple[int, type, int]],
        gc_objects: int,
        wanted: dict[int, Any] | None = None,
    ) -> None:
        self.type_counts = type_counts
        self.big = big
        self.gc_objects = gc_objects
        self.wanted: dict[int, Any] = wanted if wanted is not None else {}


# -- C-only building blocks ---------------------------------------------------------------
def _gc_lists(pulls: int, generation: int | None = None) -> Iterator[list[Any]]:
    """``gc.get_objects(generation)``, made at the first ``next()`` (inside the consuming C
    call) and handed out ``pulls`` times; the next pull drops it and ends the stream."""
    return chain.from_iterable(map(repeat, map(gc.get_objects, (generation,)), (pulls,)))


def _over(f: Callable[[Any], Any]) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """``_over(f)(xs)`` is ``map(f, xs)``: a C function that maps a whole stream."""
    return partial(map, f)


# A type's identity as an int, computed in C by object's own hash (the pointer, rotated: one
# int per object, never a metaclass __hash__). Not id(): id() raises the "builtins.id" audit
# event, so with any Python audit hook installed (the target's, or the agent's temp-file
# watch) every id() runs Python code, and the GIL can pass while a pass holds L.
_key: Callable[[Any], int] = object.__hash__
_ids, _types = _over(_key), _over(type)
_call: Callable[..., Any] | None = getattr(operator, "call", None)  # 3.11+


def _apply(fns: Iterable[Callable[[Any], Any]], objs: Iterable[Any]) -> Iterator[Any]:
    """``f(o)`` for each pair, in C: ``operator.call`` where it exists, else ``next(map(f,
    (o,)))``. Only for streams of our own making (never gc's list: ``zip`` keeps items)."""
    if _call is not None:
        return map(_call, fns, objs)
    return map(next, map(map, fns, zip(objs)))


# Each pipeline function only builds a pipeline: nothing is read until its consumer runs,
# and every stream of L in it is pulled in lockstep, in the order written.
def _type_id_pipeline() -> Iterator[int]:
    """The type id of every gc object."""
    return chain.from_iterable(map(_ids, map(_types, _gc_lists(1))))


def _select(type_ids: frozenset[int], generation: int | None = None) -> Iterator[Any]:
    """The gc objects whose type id is in ``type_ids`` (L pulled twice: the data, then the
    selectors)."""
    ls = _gc_lists(2, generation)
    selectors = map(_over(type_ids.__contains__), map(_ids, map(_types, ls)))
    return chain.from_iterable(map(compress, ls, selectors))


def _live_types() -> dict[int, type]:
    """Every class, by id: ``object`` and its subclasses, recursively (C calls on classes
    only: no instance is touched)."""
    subclasses = type.__dict__["__subclasses__"]
    found: dict[int, type] = {_key(object): object}
    todo = [object]
    while todo:
        for sub in subclasses(todo.pop()):
            if _key(sub) not in found:
                found[_key(sub)] = sub
                todo.append(sub)
    return found


# -- gc paused for a pass, and the target's own gc switches -------------------------------------
# While a pass has gc paused, a target thread that calls gc.disable() (or enable) would see
# its call undone when the pass restores the state it found. So while an agent runs on this
# core, gc.enable / gc.disable / gc.isenabled are thin pass-throughs that wait for a pass in
# progress to end (one C call: milliseconds): a pass then never overlaps the target's own
# switch, and the target never sees the state a pass set. A caller that kept a reference to
# the original functions bypasses them. The agent installs them at start and removes them
# at stop (if still ours); a pass outside an agent (leakcheck in the test's own thread)
# leaves gc's functions alone.
_GC_REAL: dict[str, Callable[[], Any]] = {
    "enable": gc.enable, "disable": gc.disable, "isenabled": gc.isenabled}
_gc_lock: Any = None  # an RLock, made when the switches are installed
_gc_switches: dict[str, Callable[[], Any]] = {}


def _switch(name: str) -> Callable[[], Any]:
    real = _GC_REAL[name]

    def switch() -> Any:
        lock = _gc_lock
        got = lock is not None and lock.acquire(timeout=2.0)  # never a deadlock: then as before
        try:
            return real()
        finally:
            if got:
                lock.release()

    switch.__name__ = switch.__qualname__ = getattr(real, "__name__", name)
    switch.__doc__ = getattr(real, "__doc__", None)
    switch.__module__ = "gc"
    return switch


def _fresh_lock() -> None:
    global _gc_lock
    import threading

    _gc_lock = threading.RLock()


def install_gc_switches() -> None:
    """Put the pass-throughs in place (idempotent; a gc function someone else replaced
    is left to them)."""
    if _gc_switches:
        return
    if _gc_lock is None:  # once per process: an agent started again reuses lock and hook
        _fresh_lock()
        import os

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_fresh_lock)  # a child holds no pass
    for name, real in _GC_REAL.items():
        if getattr(gc, name, None) is real:
            _gc_switches[name] = _switch(name)
            setattr(gc, name, _gc_switches[name])


def remove_gc_switches() -> None:
    """The original gc functions back, where ours are still in place."""
    for name, fn in list(_gc_switches.items()):
        if getattr(gc, name, None) is fn:
            setattr(gc, name, _GC_REAL[name])
    _gc_switches.clear()


class _GcPaused:
    """gc disabled for a pass (in 3.10/3.11 an allocation can start a collection, and a
    collection runs finalizers: Python code), restored after it if it was enabled; the
    target's own switches wait for the pass to end (see ``install_gc_switches``)."""

    __slots__ = ("held", "was")

    def __enter__(self) -> None:
        lock = _gc_lock
        self.held = lock if lock is not None and lock.acquire(timeout=5.0) else None
        self.was = _GC_REAL["isenabled"]()
        _GC_REAL["disable"]()

    def __exit__(self, *exc: object) -> None:
        try:
            if self.was:
                _GC_REAL["enable"]()
        finally:
            if self.held is not None:
                self.held.release()


# -- the passes -------------------------------------------------------------------------------
def take_census(
    floor: int, exclude_ids: Collection[int], want_ids: Collection[int] = ()
) -> CensusResult:
    """Count tracked objects by type; list tracked containers with ``len >= floor`` (not in
    ``exclude_ids``); return the containers whose id is in ``want_ids`` in ``wanted``."""
    counts_by_id: dict[int, int] = {}
    with _GcPaused():
        _count_elements(counts_by_id, _type_id_pipeline())
    types_by_id = _live_types()
    unknown = frozenset(tid for tid in counts_by_id if tid not in types_by_id)
    if unknown:  # made since the pass, or not listed by __subclasses__: ask the objects
        with _GcPaused():
            found = list(map(type, _select(unknown)))
        types_by_id.update((_key(t), t) for t in found)
    lens: dict[int, Callable[[Any], int]] = {}
    for tid in counts_by_id:
        t = types_by_id.get(tid)
        fn = _fast_len(t) if t is not None else None
        if fn is not None:
            lens[tid] = fn
    with _GcPaused():
        containers = list(_select(frozenset(lens)))
    # From here on only containers are held, and only until the end of this function.
    try:
        if all(fn is len for fn in lens.values()):
            sizes = list(map(len, containers))
        else:
            sizes = list(_apply(map(lens.__getitem__, map(_key, map(type, containers))),
                                containers))
        selected = list(map(floor.__le__, sizes))
        big = [(id(c), type(c), n)
               for c, n in zip(compress(containers, selected), compress(sizes, selected),
                               strict=True)
               if id(c) not in exclude_ids]
        want = frozenset(want_ids)
        wanted = {id(c): c for c in compress(containers, map(want.__contains__,
                                                             map(id, containers)))}
    finally:
        containers.clear()
    type_counts = [(types_by_id[tid], n) for tid, n in counts_by_id.items() if tid in types_by_id]
    return CensusResult(type_counts, big, sum(counts_by_id.values()), wanted)


def newest_of_type(t: type, k: int) -> list[Any]:
    """Up to ``k`` of the newest objects of exactly type ``t`` (youngest gc generation,
    newest first); none for tuples, frozensets, str and bytes (see UNSAFE_TO_HOLD)."""
    if k <= 0 or issubclass(t, UNSAFE_TO_HOLD):
        return []
    with _GcPaused():
        newest = deque(_select(frozenset((_key(t),)), 0), maxlen=k)
    newest.reverse()
    return list(newest)
