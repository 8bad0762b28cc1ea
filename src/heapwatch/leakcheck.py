"""Leak checks for a callable, run in-process: the engine of the pytest plugin.

A check has two stages, so that a test that does not leak costs little:

1. **Screen** (every checked test). The callable runs ``warmup`` times, then the objects
   alive so far are frozen (``gc.freeze()``: the collector and ``gc.get_objects()`` skip
   them), and after each further call the check collects the young garbage and takes a
   census of what is young: live objects by type, containers by length, and the
   allocator's live block count (which also sees ints or strings put into an old
   container). Census, collection and block count only touch what the calls left alive,
   so the census is the main cost. When nothing rises after ``SCREEN_MIN`` calls the test
   passes; when something rises but not clearly, the screen goes on (up to
   ``SCREEN_MAX`` calls); when something clearly grows, stage 2 runs.
2. **Diagnose** (only when something grew). The heap is unfrozen, tracemalloc is on, and
   the agent takes a snapshot after each of ``DIAGNOSE`` more calls; the same analysis as
   a recorded run names the growing container, its owner path (who holds it) and the
   allocation line of its newest items. Type findings are tied to the container that holds
   their newest objects (reached forward from the container, never by searching for
   referrers), so ignoring a holder also silences what it holds.

Ignore patterns (``fnmatch`` globs) are matched against holders (owner paths) and sites,
never against the type of the items held: a leak of ``collections.defaultdict`` items in
the user's list is still reported. Known interpreter and stdlib caches (re, typing,
linecache, logging's registries, bounded ``lru_cache`` s...) are holders that never fail a
test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import gc
import itertools
import os
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from heapwatch.agent import census, paths
from heapwatch.agent.items import _newest, _site_of, sample_items
from heapwatch.agent.naming import main_stem, type_name
from heapwatch.agent.sites import is_own, is_stdlib
from heapwatch.analysis import AnalysisParams, analyze
from heapwatch.analysis.findings import UNREACHABLE
from heapwatch.analysis.trend import TrendParams, assess
from heapwatch.errors import UsageError
from heapwatch.model import ContainerStat, Finding, ItemSample, ProcessStat, Snapshot
from heapwatch.store import RunData

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

SCREEN_MIN = 6       # measured calls before a test with nothing rising passes
SCREEN_CONFIRM = 10  # calls after which a rising series is judged with the trend test
SCREEN_MAX = 30      # calls after which an ambiguous rise is given up as noise
DIAGNOSE = 12        # calls of the diagnosis (the trend test needs 8 after warm-up)
TRACE_DEPTH = 10     # frames per traced allocation while diagnosing
TRACED_CALLS = 4     # the last calls of the diagnosis run with tracemalloc on
CONFIRM_CALLS = 4    # first calls of the diagnosis: does a container or a type grow at all?
WALK_BUDGET_S = 0.5  # CPU seconds for one owner walk while diagnosing
WARMUP = 2
FLOOR = 8            # containers shorter than this are not followed one by one
MIN_ITERATIONS = 8


@dataclass
class LeakResult:
    """Outcome of a leak check; ``message`` names what grew."""

    leaked: bool
    findings: list[Finding]
    iterations: int
    message: str
    # How the check went: calls screened, calls diagnosed, seconds spent on the check itself
    # (census, collections, analysis: not the calls), and why it stopped.
    screened: int = 0
    diagnosed: int = 0
    check_s: float = 0.0
    outcome: str = ""
    check_cpu_s: float = 0.0  # the same, in CPU time of this thread (a busy machine inflates wall time)

    def __bool__(self) -> bool:
        return self.leaked


@dataclass(frozen=True)
class Settings:
    """What a check does: ``iterations`` None means adaptive."""

    iterations: int | None = None
    warmup: int = WARMUP
    ignore: tuple[str, ...] = ()
    enabled: bool = True


_MARKER_ARGS = ("iterations", "warmup", "ignore", "enabled")


def parse_marker(args: Sequence[Any], kwargs: dict[str, Any]) -> Settings:
    """``leakcheck(iterations=None, warmup=2, ignore=(), enabled=True)``, positionally or by
    keyword; a bad argument raises :class:`UsageError` with a one-line message."""
    usage = ("use @pytest.mark.leakcheck(iterations=N, warmup=N, ignore=[patterns], "
             "enabled=True|False)")
    if len(args) > len(_MARKER_ARGS):
        raise UsageError(f"leakcheck takes at most {len(_MARKER_ARGS)} arguments, got "
                         f"{len(args)}: {usage}")
    values: dict[str, Any] = {}
    for name, value in zip(_MARKER_ARGS, args, strict=False):
        values[name] = value
    for name, value in kwargs.items():
        if name not in _MARKER_ARGS:
            raise UsageError(f"leakcheck has no argument {name!r}: {usage}")
        if name in values:
            raise UsageError(f"leakcheck got {name!r} twice (positionally and by keyword)")
        values[name] = value
    return settings_from(values, "leakcheck")


def settings_from(values: dict[str, Any], where: str, base: Settings | None = None
                  ) -> Settings:
    base = base or Settings()
    it = values.get("iterations", base.iterations)
    if it is not None and (type(it) is not int or it < MIN_ITERATIONS):
        raise UsageError(f"{where}: iterations must be a whole number of at least "
                         f"{MIN_ITERATIONS} (a trend needs that many points), not {it!r}")
    wu = values.get("warmup", base.warmup)
    if type(wu) is not int or wu < 0:
        raise UsageError(f"{where}: warmup must be a whole number of 0 or more, not {wu!r}")
    ig = values.get("ignore", ())
    if isinstance(ig, str):
        ig = (ig,)
    if not isinstance(ig, (list, tuple, set, frozenset)) or not all(isinstance(p, str)
                                                                  for p in ig):
        raise UsageError(f"{where}: ignore must be a glob pattern or a list of them, "
                         f"not {ig!r}")
    en = values.get("enabled", base.enabled)
    if not isinstance(en, bool):
        raise UsageError(f"{where}: enabled must be True or False, not {en!r}")
    return Settings(it, wu, (*base.ignore, *ig), en)


class Stop(Exception):
    """Raised by a step to end the check early without a verdict (a skip, say)."""


# -- stage 1: the screen ---------------------------------------------------------------------

class _Screen:
    """Per-call figures of the young heap, kept in arrays: arrays are not tracked by gc and
    hold no objects, so the screen's own bookkeeping neither shows in the census nor keeps
    anything alive. The blocks its bookkeeping keeps are counted and subtracted.

    The diagnosis adds ``watched`` containers (found by the owner walk, old ones too: the
    census only sees young objects) and turns the figures into a run for the analysis."""

    def __init__(self) -> None:
        self.n = 0
        self.blocks = array("q")
        self.objects = array("q")
        self.types: dict[type, array[int]] = {}
        self.lens: dict[int, array[int]] = {}  # container id -> lengths from the call it appeared
        self.ctypes: dict[int, type] = {}
        self.first: dict[int, int] = {}
        self.watched: dict[int, tuple[str, Any, array[int]]] = {}
        self.own_blocks = 0
        self.exclude: set[int] = {id(self.types), id(self.lens), id(self), id(self.ctypes),
                                  id(self.first), id(self.watched)}

    def watch(self, found: paths.Found) -> None:
        for oid, path in found.paths.items():
            obj = found.objects[oid]
            if census.base_len(type(obj)) is not None:
                self.watched[oid] = (path, obj, array("q", [-1]) * self.n)
                self.exclude.add(oid)
        obj = None

    def measure(self) -> None:
        gc.collect()
        b0 = sys.getallocatedblocks()
        self._record(b0)
        gc.collect()  # the census leaves a few cycles behind (cheap: the heap is frozen)
        # What the bookkeeping kept (its locals are gone), less the int ``b0`` itself.
        self.own_blocks += sys.getallocatedblocks() - b0 - 1

    def _record(self, b0: int) -> None:
        res = census.take_census(FLOOR, self.exclude)
        try:
            n = self.n
            # the screen's own arrays are gc-tracked objects too
            own_arrays = 2 + len(self.types) + len(self.lens) + len(self.watched)
            self.blocks.append(b0 - self.own_blocks)
            self.objects.append(res.gc_objects - own_arrays)
            for t, c in res.type_counts.items():
                if t is array:
                    c -= own_arrays
                col = self.types.get(t)
                if col is None:
                    col = self.types[t] = array("q", bytes(8 * n))
                col.append(c)
            for col in self.types.values():
                if len(col) == n:
                    col.append(0)
            for oid, t, length in res.big:
                lens = self.lens.get(oid)
                if lens is None or self.ctypes.get(oid) is not t:
                    lens = self.lens[oid] = array("q")
                    self.ctypes[oid] = t
                    self.first[oid] = n
                lens.append(length)
            for _path, obj, wl in self.watched.values():
                fn = census.base_len(type(obj))
                wl.append(fn(obj) if fn is not None else -1)
        finally:
            del res
        self.n += 1

    def rising(self, window: int = 8) -> list[tuple[str, array[int]]]:
        """Series that rose over the last ``window`` calls (net, and in at least half the
        steps): a cache that filled at the first calls and stays full drops out."""
        out: list[tuple[str, array[int]]] = []
        cands: list[tuple[str, array[int]]] = [("allocator blocks", self.blocks),
                                               ("objects", self.objects)]
        cands += [(f"type {t.__qualname__}", v) for t, v in self.types.items()]
        cands += [(f"container {oid:#x}", v) for oid, v in self.lens.items() if len(v) >= 4]
        cands += [(path, v) for path, _, v in self.watched.values()]
        for label, v in cands:
            tail = v[-(window + 1):]
            need = max(3.0, 0.5 * (len(tail) - 1))
            if len(tail) >= 4 and tail[-1] - tail[0] >= need:
                ups = sum(1 for a, b in itertools.pairwise(tail) if b > a)
                if 2 * ups >= len(tail) - 1:
                    out.append((label, v))
        return out

    def grown_containers(self, since: int) -> list[tuple[int, str | None]]:
        """Containers longer at the last call than at call ``since``: (id, path)."""
        out: list[tuple[int, str | None]] = []
        for oid, (path, _, wl) in self.watched.items():
            if len(wl) > since and wl[-1] > wl[since] >= 0:
                out.append((oid, path))
        for oid, lens in self.lens.items():
            if oid in self.watched or self.first[oid] + len(lens) < self.n:
                continue  # gone before the end
            start = max(0, since - self.first[oid])
            if len(lens) > start + 1 and lens[-1] > lens[start]:
                out.append((oid, None))
        return out

    def steady_growth(self, since: int, calls: int) -> bool:
        """Did a container or a type grow at (nearly) every one of the last ``calls`` calls?"""
        def steady(v: Sequence[int]) -> bool:
            tail = list(v[-(calls + 1):])
            ups = sum(1 for a, b in itertools.pairwise(tail) if b > a)
            return len(tail) == calls + 1 and tail[-1] > tail[0] and ups >= calls - 1
        if any(steady(v) for _, _, v in self.watched.values()):
            return True
        if any(steady(v) for oid, v in self.lens.items()
               if self.first[oid] + len(v) == self.n):
            return True
        return any(steady(v) for v in self.types.values())

    def grown_types(self, since: int, need: float) -> list[type]:
        return [t for t, v in self.types.items() if len(v) > since and v[-1] - v[since] >= need]

    def run(self, since: int, names: dict[int, str], samples: list[ItemSample]) -> RunData:
        """Calls ``since``.. as a run the analysis reads: one snapshot per call, call
        number as its time."""
        stem = main_stem()
        pid = os.getpid()
        tnames = {t: type_name(t, stem) for t in self.types}
        snaps: list[Snapshot] = []
        for i in range(since, self.n):
            types: dict[str, int] = {}
            for t, col in self.types.items():
                if col[i]:
                    types[tnames[t]] = types.get(tnames[t], 0) + col[i]
            conts: list[ContainerStat] = []
            for path, obj, wl in self.watched.values():
                if wl[i] >= 0:
                    conts.append(ContainerStat(path, type_name(type(obj), stem), wl[i], 0, path))
            for oid, lens in self.lens.items():
                j = i - self.first[oid]
                if oid in self.watched or not 0 <= j < len(lens):
                    continue
                tname = type_name(self.ctypes[oid], stem)
                named = names.get(oid)
                conts.append(ContainerStat(named or f"{tname}@{oid:#x}", tname, lens[j], 0,
                                           named))
            snaps.append(Snapshot(
                seq=i - since + 1, pid=pid, t=float(i - since), mono=float(i - since),
                reason="manual", duration_s=0.0, phase=None, traced=True,
                process=ProcessStat(rss=0, allocated_blocks=self.blocks[i],
                                    gc_objects=self.objects[i]),
                types=types, containers=tuple(conts),
                items=tuple(samples) if i == self.n - 1 else ()))
        return RunData(path=os.path.join(tempfile.gettempdir(), "leakcheck"),
                       meta={"agent": {"pid": pid, "trace": "on"}}, snapshots=snaps)

    def clear(self) -> None:
        self.watched.clear()


_SCREEN_TREND = TrendParams(warmup_fraction=0.0, warmup_max_samples=0, min_samples=8,
                            alpha=0.01, min_grew_share=0.4)


def _growing(series: Sequence[int]) -> bool:
    xs = [float(i) for i in range(len(series))]
    ys = [float(v) for v in series]
    params = dataclasses.replace(_SCREEN_TREND, min_growth=max(4.0, 0.5 * len(ys)))
    return assess(xs, ys, params).growing


@contextlib.contextmanager
def _frozen() -> Iterator[bool]:
    """Freeze what is alive now; unfreeze after. A process that froze objects itself is
    left alone (the screen then counts its whole heap: slower, same answers)."""
    if gc.get_freeze_count():
        yield False
        return
    gc.freeze()
    try:
        yield True
    finally:
        gc.unfreeze()


# -- stage 2: the diagnosis ------------------------------------------------------------------

def params_for(iterations: int) -> AnalysisParams:
    trend = TrendParams(warmup_fraction=0.0, warmup_max_samples=0, min_samples=8)
    return AnalysisParams(
        trend=trend,
        container_min_growth=max(5.0, 0.2 * iterations), container_min_per_hour=0.0,
        type_min_growth=max(6.0, 0.5 * iterations), type_min_per_hour=0.0,
        site_min_growth=64 * 1024, site_min_per_hour=0.0,
        rss_min_growth=1e18,  # RSS of a test runner is too noisy per iteration
        fds_min_growth=max(3.0, 0.2 * iterations), threads_min_growth=3,
        # The temp directory holds other processes' files, and pytest's own tmp_path
        # directories: not the test's growth.
        files_min_growth=1e18,
    )


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


def _bounded_lru(steps: tuple[paths.Step, ...] | None) -> bool:
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


def _reach(obj: Any, k: int = 32, depth: int = 5, limit: int = 20_000,
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


def _bounded_caches() -> tuple[list[Any], list[tuple[str, int, int]]]:
    """The cache dicts of every ``lru_cache`` with a ``maxsize`` that holds something
    (typing's, for one, sit in closures the owner walk does not enter), and the code of the
    functions they wrap: what such a function allocated and returned is held by its cache.
    Unfreezes the heap: call it after the last measure."""
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


def _newest_of(name: str, k: int) -> tuple[list[tuple[int, str | None, list[tuple[str, int]]]],
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
            site, user = _site_of(o)
            if site is not None and is_own(site.rpartition(":")[0]):
                continue  # heapwatch's own (the analysis makes dicts and lists)
            got.append((id(o), user or site, _frames_of(o)))
            kept.append(o)
            if len(got) >= k:
                break
        return got, _reach(None, depth=3, start=kept)
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


def _objects_by_id(ids: set[int]) -> dict[int, Any]:
    objs = gc.get_objects()
    try:
        return {id(o): o for o in objs if id(o) in ids}
    finally:
        del objs


def _user_file(filename: str) -> bool:
    return not (is_own(filename) or is_stdlib(filename) or filename.startswith("<")
                or "site-packages" in filename or "dist-packages" in filename)


def _fallback_site(snap: tracemalloc.Snapshot) -> str | None:
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


def _diagnose(screen: _Screen, call: Callable[[], None], iterations: int,
              patterns: Sequence[str]) -> tuple[list[Finding], int]:
    """``iterations`` more calls, watching the containers the owner walk finds, the last
    :data:`TRACED_CALLS` of them with tracemalloc on (tracing slows the calls several
    times; the newest items, whose sites are wanted, come from those calls); then the
    analysis of a run names what grows, who holds it and where its items were allocated.
    The costly explaining (item samples, holders of type findings, bounded caches) is
    done only when the analysis found something. Returns the findings that fail the test
    and the calls run."""
    found = paths.discover(FLOOR, WALK_BUDGET_S, 1_000_000)
    try:
        screen.watch(found)
        bounded = {found.paths[oid] for oid, st in found.steps.items() if _bounded_lru(st)}
    finally:
        found.clear()
    started = False
    since = screen.n
    done = 0
    samples: list[ItemSample] = []
    reached: dict[str, set[int]] = {}
    newest: dict[str, list[tuple[int, str | None, list[tuple[str, int]]]]] = {}
    cached_code: list[tuple[str, int, int]] = []
    holds: dict[str, set[int]] = {}
    snap: tracemalloc.Snapshot | None = None
    stem = main_stem()
    params = params_for(iterations)
    try:
        screen.measure()
        for i in range(iterations):
            if i == max(0, iterations - TRACED_CALLS) and not tracemalloc.is_tracing():
                tracemalloc.start(TRACE_DEPTH)
                started = True
            call()
            done += 1
            screen.measure()
            if done == CONFIRM_CALLS and not screen.steady_growth(since, CONFIRM_CALLS):
                # Allocator blocks rose, but no container (old ones too, now watched) and
                # no type grows call after call: interned strings or allocator noise.
                return [], done
        if not any(f.severity in ("high", "medium") for f in
                   analyze(screen.run(since, {}, []), params).findings):
            return [], done
        grown = screen.grown_containers(since)
        objs = _objects_by_id({oid for oid, path in grown if path is None})
        for oid, path in grown:
            obj = screen.watched[oid][1] if path is not None else objs.get(oid)
            if obj is None:
                continue
            key = path or f"{type_name(type(obj), stem)}@{oid:#x}"
            samples += sample_items(key, obj, 4, stem, True)
            reached[key] = _reach(obj)
        obj = None
        objs.clear()
        for t in screen.grown_types(since, max(6.0, 0.5 * iterations)):
            name = type_name(t, stem)
            newest[name], holds[name] = _newest_of(name, 16)
        snap = tracemalloc.take_snapshot()  # grouped only if a finding needs it (costly)
        caches, cached_code = _bounded_caches()
        for cache in caches:
            reached[f"<bounded lru_cache {id(cache):#x}>"] = _reach(cache)
        caches.clear()
        cache = None
    finally:
        if started and tracemalloc.is_tracing():
            tracemalloc.stop()
    names: dict[int, str] = {}
    if any(path is None for _, path in grown):
        found = paths.discover(FLOOR, WALK_BUDGET_S, 1_000_000)
        names = dict(found.paths)
        bounded |= {found.paths[oid] for oid, st in found.steps.items() if _bounded_lru(st)}
        found.clear()
    run = screen.run(since, names, samples)
    screen.clear()
    a = analyze(run, params)
    return _verdicts(a.findings, [*patterns, *bounded], reached, newest,
                     functools.partial(_fallback_site, snap) if snap is not None else None,
                     cached_code, holds), done


def _in_cached_call(frames: list[tuple[str, int]], code: list[tuple[str, int, int]]) -> bool:
    return any(f == c[0] and c[1] <= ln <= c[2] for f, ln in frames for c in code)


def _verdicts(findings: list[Finding], patterns: Sequence[str], reached: dict[str, set[int]],
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
            if (f.type in _WEAK_TYPES
                    or (ids and any(2 * len(ids & r) >= len(ids) for r in pool))
                    or (got and 2 * sum(_in_cached_call(fr, code) for _, _, fr in got)
                    >= len(got))):
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


# -- the check -------------------------------------------------------------------------------

def _describe(f: Finding) -> str:
    per_it = f.growth.per_hour / 3600
    held = f" of {f.items[0]['type']}" if f.items else ""
    site = (f"allocated at {f.site}" + (f" (inside {f.alloc_site})" if f.alloc_site else "")
            if f.site else "allocation site not traced")
    if f.kind == "container":
        return (f"{f.path} ({f.type}{held}) grows {per_it:+.2f} {f.growth.unit}/iteration, "
                f"{site} [{f.growth.grew_in}]")
    if f.kind == "type":
        return (f"{f.type} objects accumulate {per_it:+.2f}/iteration, {site}; held by no "
                f"container reachable from module globals [{f.growth.grew_in}]")
    what = f.site or f.path or f.type or f.kind
    return f"{what} ({f.kind}) grows {per_it:+.2f} {f.growth.unit}/iteration [{f.growth.grew_in}]"


def _screen(screen: _Screen, call: Callable[[], None], fixed: int | None
            ) -> tuple[int, bool, str]:
    """Stage 1: (calls screened, whether something clearly grows, what)."""
    screen_max = fixed if fixed is not None else SCREEN_MAX
    outcome = "nothing rose"
    screen.measure()
    while screen.n - 1 < screen_max:
        call()
        screen.measure()
        measured = screen.n - 1
        if fixed is None and measured < SCREEN_MIN:
            continue
        rising = screen.rising()
        if os.environ.get("HEAPWATCH_LEAKCHECK_DEBUG"):
            print("screen", measured, list(screen.blocks), list(screen.objects),
                  [lb for lb, _ in rising][:6],
                  sorted(((v[-1] - v[0], t.__qualname__) for t, v in screen.types.items()),
                         reverse=True)[:4], file=sys.stderr)
        if not rising:
            if fixed is None:
                break
            continue
        confirm_at = SCREEN_CONFIRM if fixed is None else min(SCREEN_CONFIRM, fixed)
        growing = ([label for label, v in rising if _growing(v)]
                   if measured >= confirm_at else [])
        if growing:
            return measured, True, "grew: " + ", ".join(growing[:5])
        outcome = "rose, not clearly"
    return screen.n - 1, False, outcome


def run_check(step: Callable[[int], None], settings: Settings, name: str,
              fixtures_note: str = "") -> LeakResult:
    """Run ``step(i)`` (the i-th call, from 0) as the check decides; see the module doc.

    ``step`` raises to end the check: any exception propagates (the test failed on that
    call), :class:`Stop` ends it without a verdict."""
    t_total, c_total = time.perf_counter(), time.thread_time()
    in_calls = [0.0, 0.0]  # wall, CPU
    calls = 0

    def call() -> None:
        nonlocal calls
        t, c = time.perf_counter(), time.thread_time()
        try:
            step(calls)
        finally:
            calls += 1
            in_calls[0] += time.perf_counter() - t
            in_calls[1] += time.thread_time() - c

    def cost() -> tuple[float, float]:
        return (time.perf_counter() - t_total - in_calls[0],
                time.thread_time() - c_total - in_calls[1])

    fixed = settings.iterations
    for _ in range(settings.warmup):
        call()
    screen = _Screen()
    with _frozen():
        screened, confirmed, outcome = _screen(screen, call, fixed)
        if not confirmed:
            wall, cpu = cost()
            return LeakResult(False, [], calls, f"{name}: nothing kept growing over "
                              f"{screened} calls (after {settings.warmup} warm-up)", screened,
                              0, wall, outcome, cpu)
        bad, done = _diagnose(screen, call, max(DIAGNOSE, fixed or 0), settings.ignore)
    del screen
    wall, cpu = cost()
    if not bad:
        return LeakResult(False, [], calls, f"{name}: the screen saw growth ({outcome}) but "
                          f"the diagnosis over {done} calls found nothing that grows without "
                          f"bound", screened, done, wall, "diagnosed: nothing", cpu)
    lines = [f"{name} leaks: after {settings.warmup} warm-up calls and {screened} screened, "
             f"{done} calls under the agent found:"]
    lines += [f"  {_describe(f)}" for f in bad[:5]]
    if fixtures_note:
        lines.append(f"  ({fixtures_note})")
    return LeakResult(True, bad, calls, "\n".join(lines), screened, done, wall,
                      "diagnosed: leak", cpu)


def check(fn: Callable[[], Any], iterations: int | None = None, warmup: int = WARMUP,
          ignore: Iterable[str] = (), name: str | None = None) -> LeakResult:
    """Run ``fn`` repeatedly and report what keeps growing (see the module doc).

    ``iterations``: None for adaptive (screen 6 to 30 calls, diagnose 12), or at least 8:
    the screen runs that many calls and the diagnosis at least that many."""
    settings = settings_from({"iterations": iterations, "warmup": warmup,
                              "ignore": tuple(ignore)}, "leakcheck")
    label = name or str(getattr(fn, "__qualname__", "the function"))
    return run_check(lambda i: fn(), settings, label)


__all__ = ["KNOWN_CACHES", "LeakResult", "Settings", "Stop", "check", "holder_ignored",
           "params_for", "parse_marker", "run_check", "settings_from"]
