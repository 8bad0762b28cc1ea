"""Stage 1 of a leak check: the screen, a census of the young heap after each call."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import os
import sys
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

from heapwatch.agent import census, core, paths
from heapwatch.agent.naming import main_stem, type_name
from heapwatch.analysis.trend import TrendParams, assess
from heapwatch.model import ContainerStat, ItemSample, ProcessStat, Snapshot
from heapwatch.store import RunData

FLOOR = 8  # containers shorter than this are not followed one by one


class Screen:
    """Per-call figures of the young heap, kept in arrays: arrays are not tracked by gc and
    hold no objects, so the screen's own bookkeeping neither shows in the census nor keeps
    anything alive. The blocks its bookkeeping keeps are counted and subtracted.

    The diagnosis adds ``watched`` containers (found by the owner walk, old ones too: the
    census only sees young objects) and turns the figures into a run for the analysis."""

    def __init__(self) -> None:
        self.n = 0
        self.blocks = array("q")
        self.objects = array("q")
        self.types: dict[int, array[int]] = {}  # by id of the type
        self.typeobj: dict[int, type] = {}
        self.lens: dict[int, array[int]] = {}  # container id -> lengths from the call it appeared
        self.ctypes: dict[int, type] = {}
        self.first: dict[int, int] = {}
        self.watched: dict[int, tuple[str, Any, array[int]]] = {}
        self.own_blocks = 0
        self.exclude: set[int] = {id(self.types), id(self.lens), id(self), id(self.ctypes),
                                  id(self.typeobj),
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
        res = core.census(FLOOR, self.exclude)
        try:
            n = self.n
            # the screen's own arrays are gc-tracked objects too
            own_arrays = 2 + len(self.types) + len(self.lens) + len(self.watched)
            self.blocks.append(b0 - self.own_blocks)
            self.objects.append(res.gc_objects - own_arrays)
            for t, c in res.type_counts:  # pairs: hashing a class may run user code
                if t is array:
                    c -= own_arrays
                col = self.types.get(id(t))
                if col is None:
                    col = self.types[id(t)] = array("q", bytes(8 * n))
                    self.typeobj[id(t)] = t
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
        cands += [(f"type {self.typeobj[t].__qualname__}", v) for t, v in self.types.items()]
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

    def grown_types(self, since: int, need: float) -> list[str]:
        """Names of the types whose live count grew by ``need`` since call ``since``, summed
        by name as the analysis sums them (a class made per call has its own per-class
        types of the same name, one object each)."""
        stem = main_stem()
        growth: dict[str, int] = {}
        for t, v in self.types.items():
            if len(v) > since:
                name = type_name(self.typeobj[t], stem)
                growth[name] = growth.get(name, 0) + v[-1] - v[since]
        return [name for name, g in growth.items() if g >= need]

    def run(self, since: int, names: dict[int, str], samples: list[ItemSample]) -> RunData:
        """Calls ``since``.. as a run the analysis reads: one snapshot per call, call
        number as its time."""
        stem = main_stem()
        pid = os.getpid()
        tnames = {t: type_name(self.typeobj[t], stem) for t in self.types}
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
        self.typeobj.clear()


_SCREEN_TREND = TrendParams(warmup_fraction=0.0, warmup_max_samples=0, min_samples=8,
                            alpha=0.01, min_grew_share=0.4)


def growing(series: Sequence[int]) -> bool:
    xs = [float(i) for i in range(len(series))]
    ys = [float(v) for v in series]
    params = dataclasses.replace(_SCREEN_TREND, min_growth=max(4.0, 0.5 * len(ys)))
    return assess(xs, ys, params).growing


@contextlib.contextmanager
def frozen_heap() -> Iterator[bool]:
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
