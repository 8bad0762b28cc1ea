"""The idle tail: where a run's load stopped, from the target's own CPU rate per interval."""

from __future__ import annotations

import random

from heapwatch.analysis.findings import _step_down

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
