"""Sites: live traced memory grouped by allocation line (tracemalloc).

While tracing is on, everything the agent allocates is traced too, which makes
``Snapshot.statistics()`` 5-30x slower than with tracing off. So the raw traces of a
snapshot are aggregated in one cheap pass over tuples, and heapwatch's own frames (and
tracemalloc's) are dropped.
"""

from __future__ import annotations

import os
import sysconfig
import tracemalloc
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent.naming import clean

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TRACEMALLOC_FILE = os.path.abspath(tracemalloc.__file__)
_STDLIB = tuple(
    p for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")} if p
)


def is_own(filename: str) -> bool:
    return filename.startswith(_PKG_DIR) or filename == _TRACEMALLOC_FILE


def is_stdlib(filename: str) -> bool:
    return filename.startswith(_STDLIB) and "site-packages" not in filename


def is_library(filename: str) -> bool:
    """The stdlib or an installed package: not where a user fixes a leak."""
    return filename.startswith(_STDLIB) or "site-packages" in filename or (
        "dist-packages" in filename)


def site_label(filename: str, lineno: int) -> str:
    return clean(f"{filename}:{lineno}")


def take_raw() -> list[Any]:
    """The raw traces, (domain, size, frames newest first, [nframe]) tuples: cheap to take
    while tracing; aggregate them with :func:`aggregate` (after tracing stopped, if it will)."""
    snap = tracemalloc.take_snapshot()
    raw: list[Any] = snap.traces._traces  # type: ignore[attr-defined]
    return raw


def aggregate(raw: list[Any], top: int) -> tuple[dict[str, tuple[int, int]], int]:
    """Top ``top`` allocation lines by live bytes: ``{"file:line": (blocks, bytes)}``, and the
    total bytes traced outside heapwatch. One pass over tuples: a Trace object per block
    would cost more than the aggregation itself."""
    by_frame: dict[Any, list[int]] = {}
    for trace in raw:
        frames = trace[2]
        frame = frames[0] if frames else ("<unknown>", 0)
        entry = by_frame.get(frame)
        if entry is None:
            by_frame[frame] = [1, trace[1]]
        else:
            entry[0] += 1
            entry[1] += trace[1]
    total = 0
    out: list[tuple[int, int, str]] = []
    for (filename, lineno), (count, size) in by_frame.items():
        if is_own(filename):
            continue
        total += size
        out.append((size, count, site_label(filename, lineno)))
    out.sort(reverse=True)
    return {label: (count, size) for size, count, label in out[:top]}, total


def traced_sites(top: int) -> tuple[dict[str, tuple[int, int]], int]:
    raw = take_raw()
    try:
        return aggregate(raw, top)
    finally:
        del raw


def object_sites(obj: object) -> tuple[str | None, str | None]:
    """Where ``obj`` was allocated (its newest frame), and the newest frame outside the
    stdlib when that differs. ``(None, None)`` when it was not traced."""
    tb = tracemalloc.get_object_traceback(obj)
    if tb is None:
        return None, None
    frames = list(tb)  # oldest first
    if not frames:
        return None, None
    newest = frames[-1]
    # The innermost frame outside the stdlib says who allocated: the agent when it is
    # heapwatch's (its own code, or the stdlib called by it), the user's code otherwise,
    # even when heapwatch is further out on the stack (leakcheck calls the test body).
    for fr in reversed(frames):
        if is_own(fr.filename):
            return site_label(fr.filename, fr.lineno), None
        if not is_stdlib(fr.filename):
            break
    site = site_label(newest.filename, newest.lineno)
    user = None
    if is_library(newest.filename):
        for fr in reversed(frames):
            if not is_library(fr.filename) and not is_own(fr.filename):
                user = site_label(fr.filename, fr.lineno)
                break
    return site, user
