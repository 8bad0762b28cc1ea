"""Sites: live memory grouped by allocation line, from tracemalloc or from the native
sampler (``--trace sample``).

tracemalloc: while tracing is on, everything the agent allocates is traced too, which
makes ``Snapshot.statistics()`` 5-30x slower than with tracing off. So the raw traces of
a snapshot are aggregated in one cheap pass over tuples, and heapwatch's own frames (and
tracemalloc's) are dropped.

The sampler (``heapwatch._native``, sampler.c): an allocator hook samples about one block
per ``interval`` bytes allocated, with a short stack, and keeps the sampled blocks that
are still alive. :func:`sampled_sites` drains it into the same ``{site: (blocks, bytes)}``
shape, each sample weighted to stand for the blocks it represents, so the analysis reads
estimated figures where tracemalloc's were exact.
"""

from __future__ import annotations

import math
import os
import sys
import sysconfig
import tracemalloc
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent import core
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
    """The stdlib, an installed package, or code without a file (``<frozen ...>``)."""
    return (is_stdlib(filename) or "site-packages" in filename or "dist-packages" in filename
            or filename.startswith("<"))


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


def split_frames(frames: Sequence[tuple[str, int]]) -> tuple[str | None, str | None]:
    """From a stack, newest frame first: the allocation line (``site``) and, when that line
    is in a library, the first frame in the user's code (``user``). A stack whose innermost
    frame outside the stdlib is the agent's is the agent's own allocation: ``(its line,
    None)``."""
    if not frames:
        return None, None
    # The innermost frame outside the stdlib says who allocated: the agent when it is
    # heapwatch's (its own code, or the stdlib called by it), the user's code otherwise,
    # even when heapwatch is further out on the stack (leakcheck calls the test body).
    for filename, lineno in frames:
        if is_own(filename):
            return site_label(filename, lineno), None
        if not is_stdlib(filename):
            break
    site = site_label(*frames[0])
    if not is_library(frames[0][0]):
        return site, None
    user = next((f for f in frames if not is_library(f[0]) and not is_own(f[0])), None)
    if user is None:  # all library: the first frame outside the stdlib, if any
        user = next((f for f in frames[1:] if not is_stdlib(f[0])), None)
    return site, (site_label(*user) if user is not None else None)


def object_frames(obj: object) -> list[tuple[str, int]] | None:
    """The stack that allocated ``obj``, newest frame first; None when it was neither
    traced nor sampled. While the sampler runs it answers; otherwise tracemalloc does."""
    if _sampling:
        frames = lookup([obj])[0]
        if frames is not None:
            return frames
    if not tracemalloc.is_tracing():
        return None
    tb = tracemalloc.get_object_traceback(obj)
    if tb is None:
        return None
    return [(fr.filename, fr.lineno) for fr in reversed(tb)]


def object_sites(obj: object) -> tuple[str | None, str | None]:
    """Where ``obj`` was allocated (its newest frame), and the first frame in the user's
    code when that differs (see :func:`split_frames`). ``(None, None)`` when it was neither
    traced nor sampled."""
    frames = object_frames(obj)
    return split_frames(frames) if frames is not None else (None, None)


# -- the native sampler ---------------------------------------------------------------------
#: The default mean sampling interval, bytes (bench/overhead.py: at 512 KiB the sampler
#: costs about what the hook alone costs, ~1-2% CPU per request).
DEFAULT_SAMPLE_INTERVAL = 512 * 1024
#: The interval while an unsited suspect is being sited (a few snapshots at a time). Small
#: items need it small: a leak of ~7 strings of ~90 bytes a second (scenarios/slow_drip)
#: had about one of them sampled per 3-snapshot window at 1 KiB, and under load a run's
#: three windows all missed in 2 of 12 runs; at 256 bytes ~3 per window. The rate bound
#: below, not this floor, caps the cost: a target allocating over 12.8 MB/s is sampled
#: more widely.
BOOST_SAMPLE_INTERVAL = 256
#: ... but never more samples a second than this: a sample costs ~0.2 us (bench/overhead.py
#: --sweep: 1M samples per CPU-second cost 16%), so the window costs at most ~1% of a core.
BOOST_MAX_SAMPLES_S = 50_000


def boost_interval(base: int, alloc_rate: float | None) -> int:
    """The boost window's mean interval: ``base`` bytes, or wider when the target allocates
    so fast that ``base`` would take more than BOOST_MAX_SAMPLES_S samples a second (its
    rate unknown: ``base``)."""
    if alloc_rate is None or alloc_rate <= 0:
        return base
    return max(base, math.ceil(alloc_rate / BOOST_MAX_SAMPLES_S))

_sampling = False


def _native() -> tuple[ModuleType | None, str | None]:
    """The native module when its sampler can run here, else (None, why). The core loader
    (agent/core.py) checks the build against this interpreter, once."""
    info = core.info()
    mod = core.load_native()[0] if info.name == "native" else None
    if mod is None:
        return None, info.fallback
    if not hasattr(mod, "sampler_start"):
        return None, "heapwatch._native has no sampler"
    if sys.version_info >= (3, 14):
        return None, "the sampler does not read this Python's frames yet"
    return mod, None


def sampler_unavailable() -> str | None:
    """Why ``--trace sample`` cannot run in this process (None: it can)."""
    mod, why = _native()
    return why if mod is None else None


def start_sampling(interval: int, depth: int) -> str | None:
    """Install (or re-enable) the sampler; return why it cannot run, or None."""
    global _sampling
    mod, why = _native()
    if mod is None:
        return why
    try:
        mod.sampler_start(interval=float(interval), depth=max(1, min(64, depth)))
    except Exception as exc:
        return f"the sampler did not start ({type(exc).__name__})"
    _sampling = True
    return None


def stop_sampling() -> str | None:
    """Stop sampling: ``"removed"`` from the allocator chain, or ``"passthrough"`` when
    another hook installed after it still calls it; None when it was not running."""
    global _sampling
    if not _sampling:
        return None
    _sampling = False
    mod, _ = _native()
    return str(mod.sampler_stop()) if mod is not None else None


def sampling() -> bool:
    return _sampling


def forget_sampling() -> None:
    """In a forked child: the C side already stopped (its fork hook); only forget it here."""
    global _sampling
    _sampling = False


def set_sample_interval(interval: int) -> None:
    mod, _ = _native()
    if mod is not None and _sampling:
        mod.sampler_set_interval(float(interval))


def allocated() -> int | None:
    """Bytes the target allocated through the Python allocators since the sampler started
    (the agent's own, inside ``unsampled`` blocks, left out); None unless sampling."""
    mod, _ = _native()
    if mod is None or not _sampling or not hasattr(mod, "sampler_allocated"):
        return None
    n = mod.sampler_allocated()
    return None if n is None else int(n)


class unsampled:  # lower case: used like a function, ``with unsampled():``
    """The calling thread's allocations are not sampled inside the block (the agent's).

    A class rather than ``contextlib.contextmanager``: contextlib's code looks builtins up
    in the real module, which a target may have emptied (``del builtins.getattr``); this
    one's methods use the agent's copy."""

    __slots__ = ("_before", "_mod")

    def __init__(self) -> None:
        mod, _ = _native()
        self._mod = mod if _sampling else None
        self._before = False

    def __enter__(self) -> unsampled:
        if self._mod is not None:
            self._before = bool(self._mod.sampler_ignore_thread(True))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mod is not None:
            self._mod.sampler_ignore_thread(self._before)

    def napping(self, asleep: bool) -> None:
        """The agent's thread naps (pace.py) while the target runs: the window lets go
        meanwhile, so that ``allocated()`` counts what the target allocates in the nap
        (the window subtracts every byte allocated while it is held, by any thread)."""
        if self._mod is not None:
            self._mod.sampler_ignore_thread(self._before if asleep else True)


def lookup(objs: Sequence[object]) -> list[list[tuple[str, int]] | None]:
    """Each object's sampled stack (newest frame first), None where it was not sampled."""
    mod, _ = _native()
    if mod is None or not _sampling:
        return [None] * len(objs)
    return list(mod.sampler_lookup(objs))


def storage_sites(container: object) -> tuple[str | None, str | None]:
    """Where a dict, list or set last grew: the sampled stack of the block holding its
    items (reallocated as it grows, large, so sampled at nearly every resize)."""
    mod, _ = _native()
    if mod is None or not _sampling:
        return None, None
    frames = mod.sampler_storage(container)
    return split_frames(frames) if frames is not None else (None, None)


def sampled_sites(top: int) -> tuple[dict[str, tuple[int, int]], int, dict[str, Any]]:
    """Top ``top`` allocation lines by estimated live bytes, ``{"file:line": (blocks,
    bytes)}``; the estimated live sampled heap outside heapwatch; the sampler's figures.

    A sample of size s drawn at mean interval T stands for 1/(1 - e^(-s/T)) blocks and
    s/(1 - e^(-s/T)) bytes: the sum over a site's live samples estimates its live memory.
    """
    mod, _ = _native()
    if mod is None or not _sampling:
        return {}, 0, {}
    rows, stats = mod.sampler_drain()
    by_site: dict[str, list[float]] = {}
    total = 0.0
    try:
        for frames, blocks, nbytes, _n in rows:
            site, _user = split_frames(frames)
            if site is None or is_own(site.rpartition(":")[0]):
                continue  # the agent's own allocation (see split_frames)
            total += nbytes
            entry = by_site.get(site)
            if entry is None:
                by_site[site] = [blocks, nbytes]
            else:
                entry[0] += blocks
                entry[1] += nbytes
    finally:
        rows.clear()
    ranked = sorted(by_site.items(), key=lambda kv: -kv[1][1])[:top]
    return ({k: (round(v[0]), round(v[1])) for k, v in ranked}, round(total), dict(stats))
