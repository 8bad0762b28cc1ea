"""Process figures: RSS, open fds, threads, children, gc and allocator counters.

Read from /proc on Linux (a few microseconds), from psutil elsewhere when it can be
imported by the target itself (heapwatch never brings its own copy into a target).
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import tracemalloc

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
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


def _fds_and_sockets() -> tuple[int | None, int | None]:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None, None
    sockets = 0
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                sockets += 1
        except OSError:
            pass
    return len(names), sockets


_TMP_LIMIT = 20_000


def _tmp_files() -> int | None:
    """Entries in the process's temp directory (None when it is too big to count cheaply)."""
    try:
        n = 0
        with os.scandir(tempfile.gettempdir()) as it:
            for _ in it:
                n += 1
                if n > _TMP_LIMIT:
                    return None
        return n
    except OSError:
        return None


def _psutil_figures() -> tuple[int, int | None, int | None, int | None]:
    try:
        import psutil  # type: ignore[import-untyped]  # only if the target has it itself
    except Exception:
        return 0, None, None, None
    p = psutil.Process()
    fds = p.num_fds() if hasattr(p, "num_fds") else None
    return p.memory_info().rss, fds, p.num_threads(), len(p.children())


def process_stat(gc_objects: int | None = None) -> ProcessStat:
    if _HAVE_PROC:
        rss = _proc_rss()
        fds, sockets = _fds_and_sockets()
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
        traced_current=current,
        traced_peak=peak,
        tracemalloc_overhead=tracemalloc.get_tracemalloc_memory() if tracing else None,
        sockets=sockets,
        tmp_files=_tmp_files(),
        gc_garbage=len(gc.garbage),
    )
