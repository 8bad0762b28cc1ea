"""Who holds what a leak check saw grow: holders of type findings, reached forward from
growing containers and bounded caches (never by searching for referrers); ignore patterns
matched against holders and sites, never against the type of the items held."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import gc
import os
import sys
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from heapwatch.agent import paths
from heapwatch.agent.items import _newest, _site_of
from heapwatch.agent.naming import main_stem, type_name
from heapwatch.agent.sites import is_own, is_stdlib
from heapwatch.analysis.findings import UNREACHABLE
from heapwatch.model import Finding

# Holders (owner paths) of interpreter and stdlib caches that fill up and never fail a test.
KNOWN_CACHES = (
    "re._cache", "re._cache2", "re._*cache*", "typing.*", "linecache.*", "functools.*",
    "logging._handlerList", "logging._at_fork_reinit_lock_weakset*", "logging._handlers",
    "logging.Logger.manager.loggerDict*", "logging.root.manager.loggerDict*", "sys.modules",
    "sys.path_importer_cache", "abc.*", "_abc*", "encodings.*", "importlib.*", "inspect.*",
    "fnmatch.*", "tokenize.*", "copyreg.*", "weakref.*", "_weakrefset.*", "collections.*",
    "threading._*", "string.*", "enum.*", "dataclasses.*", "ast.*", "warnings.*", "locale.*",
    "decimal.*", "json.*", "<thread *", "_pytest.*", "pytest.*", "pluggy.*", "_hypothesis*",
    "hypothesis.*", "coverage.*", "py.*", "unittest.*", "asyncio.*", "anyio.*",
    "pytest_asyncio.*", "xdist.*", "execnet.*", "heapwatch.*",
)

# Sites (allocation lines) of the test runner's own machinery: what it allocates and keeps
# (its records of each setup, say) is not the test's growth.
KNOWN_SITES = ("*/_pytest/*", "*/pluggy/*", "*/pytest_asyncio/*", "*/anyio/pytest_plugin.py:*",
               "*/xdist/*", "*/execnet/*", "*/heapwatch/*")
# A weak reference keeps nothing alive: what it points to is held elsewhere, and that is
# the finding (a growing list of weakrefs mirrors it).
_WEAK_TYPES = {"weakref.ReferenceType", "weakref", "weakref.KeyedRef", "weakcallableproxy",
               "weakproxy"}

# Objects that are parts of other objects (a class's tuples, descriptors and dict; an
# instance's dict): when something else grows or was silenced, their growth is its growth.
_PARTS = {"tuple", "dict", "list", "set", "frozenset", "getset_descriptor", "member_descriptor",
          "cell", "function", "method", "builtin_function_or_method", "mappingproxy",
          "wrapper_descriptor", "method_descriptor", "classmethod", "staticmethod", "property"}

def _stdlib_cache(path: str) -> bool:
    """An ``lru_cache`` of a stdlib function, or a stdlib module's global."""
    top = path.split(".", 1)[0].split("[", 1)[0]
    return top in getattr(sys, "stdlib_module_names", ()) and (
        ".<lru_cache>" in path or path.count(".") <= 1)


def holder_ignored(path: str | None, patterns: Iterable[str]) -> bool:
    """Is ``path`` (an owner path, or a site) matched by a pattern or a known cache?"""
    if not path:
        return False
    if _stdlib_cache(path):
        return True
    return any(fnmatch.fnmatchcase(path, p) for p in (*KNOWN_CACHES, *KNOWN_SITES, *patterns))


def bounded_lru(steps: tuple[paths.Step, ...] | None) -> bool:
    """The cache dict of an ``lru_cache`` with a ``maxsize``: it fills, then evicts."""
    if not steps or steps[-1][0] != "l":
        return False
    wrapper = paths.resolve(steps[:-1])
    if type(wrapper) is not functools._lru_cache_wrapper:
        return False
    try:
        return wrapper.cache_info().maxsize is not None
    except Exception:
        return False


def reach(obj: Any, k: int = 32, depth: int = 5, limit: int = 20_000,
           start: list[Any] | None = None) -> set[int]:
    """Ids of what the ``k`` newest items of container ``obj`` (or the objects ``start``)
    hold, ``depth`` levels down (forward, through ``gc.get_referents``): the objects it keeps
    alive."""
    out: set[int] = set()
    level = start if start is not None else [
        item for pair in _newest(obj, k) for item in pair if item is not None]
    try:
        for _ in range(depth):
            nxt: list[Any] = []
            for o in level:
                if id(o) in out:
                    continue
                out.add(id(o))
                if len(out) >= limit:
                    return out
                nxt.extend(gc.get_referents(o))
            level = nxt
        out.update(id(o) for o in level)
        return out
    finally:
        level = []


def bounded_caches(unfreeze: bool = True) -> tuple[list[Any], list[tuple[str, int, int]]]:
    """The cache dicts of every ``lru_cache`` with a ``maxsize`` that holds something
    (typing's, for one, sit in closures the owner walk does not enter), and the code of the
    functions they wrap: what such a function allocated and returned is held by its cache.
    ``unfreeze``: the check froze the heap, so it unfreezes it first (call this after the
    last measure); a heap the process froze itself stays frozen, and its frozen caches
    unseen."""
    if unfreeze:
        gc.unfreeze()
    objs = gc.get_objects()
    try:
        caches, codes = [], []
        for o in objs:
            if type(o) is functools._lru_cache_wrapper:
                try:
                    info = o.cache_info()
                except Exception:
                    continue
                if info.maxsize is not None and info.currsize:
                    cache = paths._lru_cache_dict(o)
                    if cache is not None:
                        caches.append(cache)
                    code = _cached_code(o)
                    if code is not None:
                        codes.append(code)
        return caches, codes
    finally:
        del objs


def _frames_of(o: Any) -> list[tuple[str, int]]:
    """Where ``o`` was allocated, oldest frame first; for an instance without a trace of its
    own (CPython 3.11 managed dicts), the trace of the first traced thing it holds."""
    tb = tracemalloc.get_object_traceback(o)
    if tb is None and not isinstance(o, type):
        for ref in gc.get_referents(o):
            if not isinstance(ref, type):
                tb = tracemalloc.get_object_traceback(ref)
                if tb is not None:
                    break
    return [(f.filename, f.lineno) for f in tb] if tb is not None else []


def newest_of(name: str, k: int) -> tuple[list[tuple[int, str | None, list[tuple[str, int]]]],
                                          set[int]]:
    """The ``k`` newest objects of type ``name`` not allocated by heapwatch (the analysis
    itself makes dicts and lists): id, site (None when untraced), frames; and the ids of
    what they hold (three levels down)."""
    stem = main_stem()
    objs = gc.get_objects()
    kept: list[Any] = []
    try:
        got: list[tuple[int, str | None, list[tuple[str, int]]]] = []
        for o in reversed(objs):
            if type_name(type(o), stem) != name:
                continue
            site, user, _ = _site_of(o)
            if site is not None and is_own(site.rpartition(":")[0]):
                continue  # heapwatch's own (the analysis makes dicts and lists)
            got.append((id(o), user or site, _frames_of(o)))
            kept.append(o)
            if len(got) >= k:
                break
        return got, reach(None, depth=3, start=kept)
    finally:
        del objs
        kept.clear()


def _cached_code(wrapper: Any) -> tuple[str, int, int] | None:
    """(file, first line, last line) of the function an ``lru_cache`` wraps."""
    code = getattr(getattr(wrapper, "__wrapped__", None), "__code__", None)
    if code is None:
        return None
    lines = [ln for _, _, ln in code.co_lines() if ln is not None]
    return code.co_filename, code.co_firstlineno, max(lines, default=code.co_firstlineno)


def _short(site: str | None) -> str | None:
    if not site:
        return site
    filename, _, line = site.rpartition(":")
    try:
        rel = os.path.relpath(filename)
    except ValueError:
        rel = filename
    return f"{rel if not rel.startswith('..') else filename}:{line}"


def objects_by_id(ids: set[int]) -> dict[int, Any]:
    objs = gc.get_objects()
    try:
        return {id(o): o for o in objs if id(o) in ids}
    finally:
        del objs


def _user_file(filename: str) -> bool:
    return not (is_own(filename) or is_stdlib(filename) or filename.startswith("<")
                or "site-packages" in filename or "dist-packages" in filename)


def fallback_site(snap: tracemalloc.Snapshot) -> str | None:
    """The user's line under which the most live blocks were allocated since tracing began
    (``snap``): where the items of a growing container were made when they have no trace
    of their own (small ints, interned strings; instances with a managed dict on CPython
    3.11)."""
    counts: dict[str, int] = {}
    for st in snap.statistics("traceback"):
        user = None
        for f in reversed(st.traceback):  # newest first
            if is_own(f.filename):
                break  # heapwatch's own allocation (or the stdlib called by it)
            if _user_file(f.filename):
                user = f
                break
        if user is not None:
            key = f"{user.filename}:{user.lineno}"
            counts[key] = counts.get(key, 0) + st.count
    return max(counts, key=lambda k: counts[k]) if counts else None


def _in_cached_call(frames: list[tuple[str, int]], code: list[tuple[str, int, int]]) -> bool:
    return any(f == c[0] and c[1] <= ln <= c[2] for f, ln in frames for c in code)


def verdicts(findings: list[Finding], patterns: Sequence[str], reached: dict[str, set[int]],
              newest: dict[str, list[tuple[int, str | None, list[tuple[str, int]]]]],
              fallback_of: Callable[[], str | None] | None,
              cached_code: Sequence[tuple[str, int, int]] = (),
              holds: dict[str, set[int]] | None = None) -> list[Finding]:
    """The findings that fail the test: holders not ignored; type findings only when no
    container holds their newest objects (the container finding says it, or its holder
    is ignored and so are they) and they were not made by a bounded cache's function; a
    site where the items had none."""
    code = list(cached_code)
    cache: list[str | None] = []

    def fallback() -> str | None:
        if not cache:
            cache.append(fallback_of() if fallback_of is not None else None)
        return cache[0]

    out: list[Finding] = []
    for f in findings:
        if f.kind != "container" or f.severity not in ("high", "medium"):
            continue
        if holder_ignored(f.path if f.path != UNREACHABLE else None, patterns):
            continue
        out.append(f)
    types = [f for f in findings if f.kind == "type" and f.type
             and f.severity in ("high", "medium")]
    pool = [r for r in reached.values()]
    silenced: set[str] = set()
    changed = True
    while changed:  # what a silenced type's objects hold is silenced with them
        changed = False
        for f in types:
            assert f.type is not None
            if f.type in silenced:
                continue
            got = newest.get(f.type, [])
            ids = {i for i, _, _ in got}
            framed = [fr for _, _, fr in got if fr]  # objects with an allocation trace
            if (f.type in _WEAK_TYPES
                    or (ids and any(2 * len(ids & r) >= len(ids) for r in pool))
                    or (framed and 2 * sum(_in_cached_call(fr, code) for fr in framed)
                        >= len(framed))):
                silenced.add(f.type)
                pool.append((holds or {}).get(f.type, set()))
                changed = True
    for f in findings:
        if f.kind == "container" or f.severity not in ("high", "medium"):
            continue
        if f.kind in ("files", "native") or f.type in silenced:
            continue
        if f.kind == "type" and f.type in _PARTS and (silenced or any(
                g.kind == "container" for g in out)):
            continue
        if f.kind == "type" and f.type:
            got = newest.get(f.type, [])
            f = dataclasses.replace(f, site=f.site or next((s for _, s, _ in got if s), None)
                                    or fallback())
        if f.kind in ("type", "site") and holder_ignored(f.site, patterns):
            continue
        out.append(f)
    return [dataclasses.replace(f, site=_short(f.site or fallback()),
                                alloc_site=_short(f.alloc_site)) for f in out]
