"""The idle tail: where a run's load stopped, from the target's own activity per interval
(bytes allocated, or CPU time)."""

from __future__ import annotations

import os
import random
from typing import Any

from heapwatch.analysis.findings import _step_down, analyze
from heapwatch.model import ContainerStat, ProcessInfo, ProcessStat, Snapshot
from heapwatch.store import Writer, open_run

T0 = 1_700_000_000.0

# CPU ms/s per interval, recorded under `heapwatch run --interval 0.5` on the load-stops
# scenarios (load for 12 s, then idle): a light service's idle loop keeps part of its CPU,
# and one noisy interval sits in the idle tail.
PENDING_TRACKER = [1.62, 1.89, 1.57, 3.83, 4.41, 2.73, 1.65, 1.5, 1.78, 1.91, 1.83, 1.87, 1.86,
                   1.86, 2.22, 1.6, 1.79, 1.59, 1.76, 1.74, 1.49, 1.58, 0.58, 0.67, 0.91, 0.6,
                   0.72, 0.76, 0.72, 0.76, 0.66, 0.73, 0.81, 0.59, 1.13, 0.78, 0.84]
EVENT_BUS = [1.49, 1.47, 1.22, 3.3, 2.44, 2.49, 1.47, 1.34, 1.48, 1.65, 1.62, 1.44, 1.52, 1.45,
             2.07, 1.39, 1.59, 1.98, 1.94, 1.79, 1.1, 1.53, 1.1, 0.6, 1.11, 0.65, 0.89, 0.85,
             0.89, 1.05, 0.91, 0.89, 1.07, 0.79, 1.02, 0.74, 3.02]


def test_a_step_down_to_idle_is_found_where_the_load_stopped() -> None:
    assert _step_down(PENDING_TRACKER, 8, 3) == 22
    k = _step_down(EVENT_BUS, 8, 3)
    assert k is not None and 20 <= k <= 23


def test_steady_noise_is_not_idle() -> None:
    rng = random.Random(7)
    for _ in range(50):
        rates = [rng.lognormvariate(0.0, 0.35) for _ in range(40)]
        assert _step_down(rates, 8, 4) is None


def test_a_dip_that_recovers_is_not_an_idle_tail() -> None:
    rates = [2.0] * 20 + [0.5] * 8 + [2.0] * 10
    assert _step_down(rates, 8, 3) is None


def test_the_idle_tail_must_be_long_enough() -> None:
    rates = [2.0] * 30 + [0.5] * 2
    assert _step_down(rates, 8, 3) is None
    assert _step_down([2.0] * 30 + [0.5] * 3, 8, 3) == 30


# -- which activity decides: bytes allocated when the sampler counted them, else CPU time ------
def _load_stops_run(tmp_path: Any, cpu: list[float], alloc: list[float] | None) -> str:
    """A store of 40 snapshots, 0.5 s apart: ``BUS._listeners`` grows by 50 items per
    snapshot over the first 24, then stays; ``cpu`` / ``alloc`` are the target's CPU seconds
    and bytes allocated per second in each interval."""
    os.makedirs(tmp_path, exist_ok=True)
    path = os.path.join(str(tmp_path), "run.sqlite")
    w = Writer(path, meta={"run": {"command": ["svc"], "interval_s": 0.5},
                           "agent": {"pid": 100, "trace": "sample"}})
    w.register_process(ProcessInfo(pid=100, t_start=T0, how="run", role="main"))
    c = a = 0.0
    for i in range(40):
        if i:
            c += cpu[i - 1] * 0.5
            a += (alloc[i - 1] if alloc else 0.0) * 0.5
        n = 100 + 50 * min(i, 24)
        w.write_snapshot(Snapshot(
            seq=i + 1, pid=100, t=T0 + 0.5 * i, mono=0.5 * i, reason="interval",
            duration_s=0.01, phase=None, traced=False,
            process=ProcessStat(rss=30 << 20, cpu_s=c, alloc_bytes=int(a) if alloc else None),
            types={"list": 500 + n, "method": n},
            containers=(ContainerStat("bus.BUS._listeners", "list", n, 0, "bus.BUS._listeners"),)))
    w.close()
    return path


def _noisy(rng: random.Random, level: float, n: int) -> list[float]:
    return [level * rng.uniform(0.85, 1.15) for _ in range(n)]


def test_allocations_find_the_idle_tail_where_cpu_time_cannot(tmp_path: Any) -> None:
    # A light load on a machine where a wake-up costs nearly as much as the work: the
    # target's CPU time falls only to ~85% once idle, but its allocations fall to ~10%.
    rng = random.Random(3)
    cpu = _noisy(rng, 1.0e-3, 23) + _noisy(rng, 0.85e-3, 16)
    alloc = _noisy(rng, 40e3, 23) + _noisy(rng, 4e3, 16)
    by_cpu = analyze(open_run(_load_stops_run(tmp_path / "cpu", cpu, None)))
    assert by_cpu.verdict == "no-leak"  # grew, then flat: a plateau, as far as CPU tells
    ana = analyze(open_run(_load_stops_run(tmp_path / "alloc", cpu, alloc)))
    assert ana.verdict == "leak", ana.notes
    first = ana.findings[0]
    assert first.path == "bus.BUS._listeners" and first.retained is not None
    assert 11.0 <= first.retained["load_end_s"] <= 12.0
    assert any("allocations fell to idle" in n for n in ana.notes)


def test_a_cache_that_filled_still_allocates_for_its_hits(tmp_path: Any) -> None:
    # The cache stops growing when it is full; requests go on, each hit cheaper than a miss
    # (allocations at ~45% of the filling rate): not idle, so a plateau, not a leak.
    rng = random.Random(5)
    cpu = _noisy(rng, 1.0e-3, 23) + _noisy(rng, 0.6e-3, 16)
    alloc = _noisy(rng, 40e3, 23) + _noisy(rng, 18e3, 16)
    ana = analyze(open_run(_load_stops_run(tmp_path, cpu, alloc)))
    assert ana.verdict == "no-leak", [f.title for f in ana.findings]
    assert not any("load stopped" in n for n in ana.notes)
