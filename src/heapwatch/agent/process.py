"""Process figures: RSS, open fds, threads, children, gc and allocator counters.

Read from /proc on Linux (a few microseconds), from psutil elsewhere when it can be
imported by the target itself (heapwatch never brings its own copy into a target).

Every figure is the target's own: its fds, its threads, its children, and of the temp
directory only the entries the target created (seen by the native core's C audit hook in
the interpreter's events ``open`` with ``O_CREAT`` and ``os.mkdir``) or holds open (its
fds; all the pure-Python core counts): another process's files in a shared ``/tmp`` are
never counted, and the target's environment (``TMPDIR``, ``tempfile.tempdir``) is left as
it is.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent import core
from heapwatch.model import ProcessStat

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_HAVE_PROC = os.path.exists("/proc/self/statm")


def _proc_rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def _proc_threads() -> int | None:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Threads:"):
                return int(line.split()[1])
    return None


def _proc_children() -> int | None:
    pid = os.getpid()
    try:
        with open(f"/proc/self/task/{pid}/children", "rb") as f:
            return len(f.read().split())
    except OSError:
        return None


def _fds_and_sockets(roots: tuple[str, ...]) -> tuple[int | None, int | None, set[str]]:
    """Open fds, the sockets among them, and the files they hold open under ``roots``.

    With the native core the listing is one call that releases the GIL once; in Python each
    descriptor's readlink releases it, and on a busy target the agent then waits up to the
    switch interval to get it back, and makes the target's thread hand it over, every
    time."""
    found = _native_fd_targets()
    if found is None:
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            return None, None, set()
        targets = []
        for name in names:
            try:
                targets.append(os.readlink(f"/proc/self/fd/{name}"))
            except OSError:
                continue
        found = (len(names), targets)
    count, targets = found
    sockets = 0
    held: set[str] = set()
    for target in targets:
        if target.startswith("socket:"):
            sockets += 1
        elif roots and target.startswith(roots):
            held.add(target)
    return count, sockets, held


def _native_fd_targets() -> tuple[int, list[str]] | None:
    mod = core.load_native()[0]
    fn = getattr(mod, "fd_targets", None) if mod is not None else None
    return fn() if fn is not None else None


class _TempWatch:
    """The temp entries the target created or holds open: paths only (bytes copies, never
    the target's objects), at most ``limit`` of them; gone ones are dropped at each count.

    What the target created is noted by the C audit hook of ``heapwatch._native``
    (``_native/audit.c``): it runs no Python code, so the target's ``id()``,
    ``copy.deepcopy`` and the like keep their speed, and it never raises into the target.
    Without the native core no audit hook is added (one in Python runs on every audit
    event of every thread: ``deepcopy`` ran 2-3.7x slower), and only the temp files the
    target holds open are counted. The hook cannot be removed once added (PEP 578): after
    :func:`stop_watching` it returns at its second test."""

    limit = 50_000

    def __init__(self) -> None:
        self.active = False
        self.hooked = False  # the C hook notes what this process creates
        self.stop_hook: Callable[[], None] | None = None
        self.fork_registered = False
        self.roots: tuple[str, ...] = ()
        self.pending_str: set[str] = set()  # filled by the C hook, drained by count()
        self.pending_bytes: set[bytes] = set()
        self.created: set[bytes] = set()
        self.overflow = False
        self.ignore_threads: set[int] = set()
        self.agent_cpu = 0.0  # CPU time of the agent's threads, as last read from the agent
        self.agent_cpu_base = 0.0  # CPU time of the agent's threads that have ended
        self.lock = threading.Lock()

    def arm(self) -> None:
        """Hand the roots and the agent's threads to the C hook when the native core runs
        (adding the hook to the interpreter the first time); stop it when it does not."""
        mod = core.native()
        watch = getattr(mod, "audit_watch", None)
        if watch is None or not self.active:
            self.disarm()
            return
        broots = tuple(os.fsencode(r) for r in self.roots)
        threads = tuple(sorted(self.ignore_threads))[-16:]  # the C side keeps 16
        self.hooked = bool(watch(self.pending_str, self.pending_bytes, self.roots, broots,
                                 threads, self.limit))
        self.stop_hook = getattr(mod, "audit_stop", None) if self.hooked else None

    def disarm(self) -> None:
        stop, self.stop_hook = self.stop_hook, None
        self.hooked = False
        if stop is not None:
            stop()

    def _drain(self) -> None:
        """Move what the hook noted into ``created`` (one C call each to copy and to
        remove: the hook cannot run in between a call, only between two)."""
        for pending in (self.pending_str, self.pending_bytes):
            got: list[str | bytes] = list(pending)
            if not got:
                continue
            pending.difference_update(got)
            for p in got:
                if len(self.created) >= self.limit:
                    self.overflow = True
                    break
                self.created.add(os.fsencode(p))

    def count(self, held: set[str]) -> int:
        if not self.hooked:
            return len(held)
        with self.lock:
            self._drain()
            paths = list(self.created)
        gone = []
        alive = 0
        for p in paths:
            try:
                os.lstat(p)
            except OSError:
                gone.append(p)
                continue
            alive += 1
        if gone:
            with self.lock:
                self.created.difference_update(gone)
        extra = sum(1 for h in held if os.fsencode(h) not in self.created)
        return alive + extra


_WATCH = _TempWatch()


def _temp_roots() -> tuple[str, ...]:
    """The system temp directory and the target's ``tempfile.tempdir`` (as set by it), with
    a trailing separator, real paths too (``/tmp`` may be a link)."""
    roots: set[str] = set()
    for d in (os.environ.get("TMPDIR") or "/tmp", tempfile.tempdir):
        if isinstance(d, str) and d:
            for p in (os.path.abspath(d), os.path.realpath(d)):
                roots.add(p.rstrip(os.sep) + os.sep)
    return tuple(sorted(roots))


def watch_files(ignore_thread: int | None = None) -> None:
    """Start counting the temp entries this process creates (idempotent). Entries created
    by ``ignore_thread`` (the agent's own thread) are left out."""
    w = _WATCH
    w.roots = _temp_roots()
    if ignore_thread is not None:
        w.ignore_threads.add(ignore_thread)
    w.active = True
    w.arm()
    if not w.fork_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_parent)
        w.fork_registered = True


def agent_thread_started() -> None:
    """The calling thread is the agent's (a new one after each fork, in the parent too): its
    files and its CPU time are not the target's."""
    ident = threading.get_ident()
    w = _WATCH
    if ident not in w.ignore_threads:
        w.ignore_threads.add(ident)
        if w.active:
            w.arm()


def agent_thread_ending() -> None:
    """The calling agent thread ends: its CPU time stays the agent's."""
    try:
        _WATCH.agent_cpu_base += time.thread_time()
    except (OSError, AttributeError):
        pass


def _forget_parent() -> None:
    """In a forked child: what the parent created is the parent's, and so is its thread.
    (The C hook forgets its side in ``_native``'s own after-fork hook.)"""
    _WATCH.lock = threading.Lock()
    _WATCH.created.clear()  # the same sets: the agent leaves them out of the census by id
    _WATCH.pending_str.clear()
    _WATCH.pending_bytes.clear()
    _WATCH.ignore_threads = set()
    _WATCH.agent_cpu = _WATCH.agent_cpu_base = 0.0  # a child's CPU time starts at zero
    _WATCH.active = False
    _WATCH.hooked = False
    _WATCH.stop_hook = None


def own_ids() -> set[int]:
    """Ids of this module's containers, which the census must not count as the target's."""
    w = _WATCH
    return {id(w.created), id(w.ignore_threads), id(w.pending_str), id(w.pending_bytes)}


def stop_watching() -> None:
    _WATCH.active = False
    _WATCH.disarm()
    with _WATCH.lock:
        _WATCH.created.clear()
        _WATCH.pending_str.clear()
        _WATCH.pending_bytes.clear()


def counts_created() -> bool:
    """Whether the temp entries the target created are counted (the C audit hook runs), or
    only the temp files it holds open."""
    return _WATCH.hooked


def _tmp_files(held: set[str]) -> int | None:
    """Temp entries the target created and that still exist (native core), plus temp
    files it holds open (both cores)."""
    try:
        _WATCH.roots = _temp_roots()
        _WATCH.arm()
        return _WATCH.count(held)
    except (OSError, ValueError):
        return None


def _psutil_figures() -> tuple[int, int | None, int | None, int | None]:
    try:
        import psutil  # type: ignore[import-untyped]  # only if the target has it itself
    except Exception:
        return 0, None, None, None
    p = psutil.Process()
    fds = p.num_fds() if hasattr(p, "num_fds") else None
    return p.memory_info().rss, fds, p.num_threads(), len(p.children())


def _target_cpu() -> float | None:
    """The process's CPU time less the agent thread's (read when the agent's thread takes the
    snapshot, remembered for snapshots taken from other threads): the target's own work."""
    try:
        if threading.get_ident() in _WATCH.ignore_threads:
            _WATCH.agent_cpu = _WATCH.agent_cpu_base + time.thread_time()
        return max(0.0, time.process_time() - _WATCH.agent_cpu)
    except (OSError, AttributeError):
        return None


def process_stat(gc_objects: int | None = None, sampled_heap: int | None = None,
                 alloc_bytes: int | None = None) -> ProcessStat:
    """The process's figures now. ``sampled_heap`` (``--trace sample``): the sampler's
    estimate of the live Python heap, which stands for tracemalloc's traced figure."""
    if not _WATCH.active:
        watch_files(threading.get_ident())
    held: set[str] = set()
    if _HAVE_PROC:
        rss = _proc_rss()
        fds, sockets, held = _fds_and_sockets(_WATCH.roots)
        threads = _proc_threads()
        children = _proc_children()
    else:
        rss, fds, threads, children = _psutil_figures()
        sockets = None
    tracing = tracemalloc.is_tracing()
    current, peak = tracemalloc.get_traced_memory() if tracing else (None, None)
    return ProcessStat(
        rss=rss,
        fds=fds,
        threads=threads,
        children=children,
        allocated_blocks=sys.getallocatedblocks(),
        gc_objects=gc_objects,
        gc_collections=tuple(s.get("collections", 0) for s in gc.get_stats()),
        traced_current=sampled_heap if sampled_heap is not None else current,
        traced_peak=peak,
        tracemalloc_overhead=tracemalloc.get_tracemalloc_memory() if tracing else None,
        sockets=sockets,
        tmp_files=_tmp_files(held),
        gc_garbage=len(gc.garbage),
        cpu_s=_target_cpu(),
        alloc_bytes=alloc_bytes,
    )
