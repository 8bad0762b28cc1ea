"""What a traced snapshot would cost, learned as the run goes, so that a tracing window
never opens when it would pause the target longer than the budget (250 ms by default).

While tracemalloc is on, every allocation the agent makes is traced too: the census (a
count per type is a new int for every object past 256) costs ~9-10x more than untraced
with the pure-Python core, and reading the traces costs ~6 µs per traced block. One
traced snapshot of a 3M-object heap took 28.7 s. The model is the sum of three parts,
each a cost per unit measured on this run's own snapshots (the slowest of the last few,
so one quiet snapshot does not make it optimistic):

- census: seconds per live gc-tracked object, traced if a traced snapshot was seen, else
  untraced times ``factor`` (a prior, replaced by what traced snapshots show);
- the rest of a snapshot (paths, items, process figures): seconds, as measured;
- the traces: seconds per traced block, times the blocks expected (the growth of the
  allocated blocks over an interval when a window opens; tracemalloc's own memory over
  the bytes it needs per trace inside a window).
"""

from __future__ import annotations

from collections import deque

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401

DEFAULT_BUDGET_S = 0.25
TRACED_CENSUS_FACTOR = 10.0  # pure-Python census, measured 8.8-10.1x (3.11, 100k-1M objects)
SECONDS_PER_BLOCK = 7e-6  # take_snapshot + aggregation while tracing, measured 6-6.7 µs
BYTES_PER_TRACE = 50.0  # tracemalloc's own memory per trace, measured (depth 5)


def _slowest(values: deque[float], default: float) -> float:
    return max(values) if values else default


class PauseModel:
    """Per-unit costs of this run's snapshots and the estimate of a traced one."""

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S,
                 factor: float = TRACED_CENSUS_FACTOR) -> None:
        self.budget_s = budget_s
        self.factor = factor
        self._census_u: deque[float] = deque(maxlen=5)  # s per object, untraced
        self._census_t: deque[float] = deque(maxlen=5)  # s per object, traced
        self._rest_u: deque[float] = deque(maxlen=5)  # s, untraced
        self._rest_t: deque[float] = deque(maxlen=5)  # s, traced
        self._per_block: deque[float] = deque(maxlen=5)  # s per traced block
        self._bytes_per_trace: deque[float] = deque(maxlen=5)

    def observe(self, traced: bool, objects: int, census_s: float, total_s: float,
                blocks: int = 0, sites_s: float = 0.0, tracer_bytes: int = 0) -> None:
        """One snapshot: its census time for ``objects`` objects, its total time, and
        (traced) the blocks it read and how long that took."""
        if objects > 0 and census_s > 0:
            (self._census_t if traced else self._census_u).append(census_s / objects)
        (self._rest_t if traced else self._rest_u).append(max(0.0, total_s - census_s - sites_s))
        if blocks > 0:
            self._per_block.append(sites_s / blocks)
            if tracer_bytes > 0:
                self._bytes_per_trace.append(tracer_bytes / blocks)

    def census(self, objects: int) -> float:
        if self._census_t:
            return objects * _slowest(self._census_t, 0.0)
        return objects * _slowest(self._census_u, 0.0) * self.factor

    def traces(self, blocks: int) -> float:
        return max(0, blocks) * _slowest(self._per_block, SECONDS_PER_BLOCK)

    def blocks_in(self, tracer_bytes: int) -> int:
        """How many traces tracemalloc holds, from the memory it uses for them."""
        per = min(self._bytes_per_trace) if self._bytes_per_trace else BYTES_PER_TRACE
        return int(tracer_bytes / max(per, 1.0))

    def traced_snapshot(self, objects: int, blocks: int) -> float:
        """The estimated pause of a traced snapshot, in seconds."""
        rest = _slowest(self._rest_t, _slowest(self._rest_u, 0.0))
        return self.census(objects) + rest + self.traces(blocks)

    def window_fits(self, objects: int, blocks: int) -> tuple[bool, float]:
        """(whether a tracing window may open, the estimated pause of its snapshots)."""
        est = self.traced_snapshot(objects, blocks)
        return est <= self.budget_s, est

    def traces_fit(self, elapsed_s: float, tracer_bytes: int) -> tuple[bool, float]:
        """Inside a traced snapshot, before reading the traces: (whether reading them keeps
        the snapshot within the budget, the estimated cost of reading them)."""
        cost = self.traces(self.blocks_in(tracer_bytes))
        return elapsed_s + cost <= self.budget_s, cost
