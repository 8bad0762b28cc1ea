"""Trend verdicts on literal and seeded series: leaks grow, caches, sawtooths and spikes don't."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import time

import pytest

from heapwatch.analysis.trend import (
    DEFAULT,
    Trend,
    TrendParams,
    assess,
    grew_share,
    mann_kendall,
    plateau,
    theil_sen,
    warmup_cut,
)

STEP = 5.0  # seconds between samples


def times(n: int, step: float = STEP) -> list[float]:
    return [step * i for i in range(n)]


def noisy(seed: int, n: int, base: float, per_sample: float, sigma: float) -> list[float]:
    rng = random.Random(seed)
    return [base + per_sample * i + rng.gauss(0.0, sigma) for i in range(n)]


def verdict(ys: list[float], params: TrendParams = DEFAULT) -> Trend:
    return assess(times(len(ys)), ys, params)


# ---------------------------------------------------------------------------- leaks


def test_strictly_monotone_is_growing_with_high_confidence() -> None:
    ys = [100.0 + 10.0 * i for i in range(40)]
    t = verdict(ys)
    assert t.growing
    assert t.confidence > 0.9
    assert t.n == 32  # 40 samples, 8 dropped as warm-up
    assert t.first == 180.0
    assert t.last == 490.0
    assert t.slope == pytest.approx(2.0)  # 10 per 5 s
    assert t.per_hour == pytest.approx(7200.0)
    assert t.growth == pytest.approx(2.0 * 155.0)
    assert (t.grew, t.intervals) == (31, 31)
    assert t.mk_s == 32 * 31 // 2
    assert t.mk_p < 1e-10
    assert not t.plateau
    assert not t.drained
    assert t.new_highs
    assert t.reason == "grew in 31 of 31 intervals, +120/min, no plateau"


@pytest.mark.parametrize("seed", range(10))
def test_noisy_monotone_is_growing(seed: int) -> None:
    ys = noisy(seed, 60, base=1000.0, per_sample=5.0, sigma=8.0)
    t = verdict(ys)
    assert t.growing, t.reason
    assert 0.5 <= t.confidence <= 0.9
    assert t.grew < t.intervals  # the noise really does make it fall sometimes
    assert t.per_hour == pytest.approx(3600.0, rel=0.1)


@pytest.mark.parametrize("seed", range(10))
def test_slow_drip_under_noise_is_growing_with_enough_samples(seed: int) -> None:
    # +0.2 a sample under noise with sigma 1: each step is far smaller than the noise.
    ys = noisy(seed, 60, base=1000.0, per_sample=0.2, sigma=1.0)
    assert max(abs(b - a) for a, b in itertools.pairwise(ys)) > 1.0
    t = verdict(ys)
    assert t.growing, t.reason
    assert 0.5 <= t.confidence <= 0.85
    assert t.slope == pytest.approx(0.2 / STEP, rel=0.35)


def test_slow_drip_is_not_called_from_a_dozen_samples() -> None:
    flagged = [verdict(noisy(seed, 12, 1000.0, 0.2, 1.0)).growing for seed in range(10)]
    assert flagged.count(True) <= 1


def test_sawtooth_with_rising_troughs_is_a_leak() -> None:
    # Cleared every 10 samples, but each clear leaves 60 more behind.
    ys = [(i % 10) * 50.0 + (i // 10) * 60.0 for i in range(60)]
    t = verdict(ys)
    assert t.growing, t.reason
    assert t.new_highs


def test_leak_with_one_wild_sample_is_still_a_leak() -> None:
    ys = [100.0 + 10.0 * i for i in range(60)]
    ys[30] = 5000.0
    t = verdict(ys)
    assert t.growing, t.reason
    assert not t.drained
    assert t.slope == pytest.approx(2.0)
    assert t.confidence > 0.9


def test_leak_that_starts_late_is_a_leak() -> None:
    ys = [500.0] * 40 + [500.0 + 25.0 * k for k in range(1, 21)]
    t = verdict(ys)
    assert t.growing, t.reason
    assert t.tail_slope > t.slope


# ---------------------------------------------------------------------------- not leaks


@pytest.mark.parametrize("seed", range(10))
def test_flat_with_noise_is_not_growing(seed: int) -> None:
    ys = noisy(seed, 60, base=1000.0, per_sample=0.0, sigma=5.0)
    t = verdict(ys)
    assert not t.growing
    assert t.confidence < 0.1
    assert not t.new_highs


def test_sawtooth_is_not_growing() -> None:
    ys = [(i % 10) * 50.0 for i in range(60)]  # a dict filled then cleared, 6 times
    t = verdict(ys)
    assert not t.growing
    assert not t.new_highs
    assert t.confidence == 0.0
    assert t.grew / t.intervals > 0.8  # rises in most intervals, yet is no leak


def test_slow_sawtooth_caught_mid_tooth_sets_no_new_highs() -> None:
    # Cleared every 30 samples: the window holds the end of one tooth and a whole one,
    # which rises steadily (significant, no plateau, not drained) up to the old high.
    ys = [(i % 30) * 10.0 for i in range(60)]
    t = verdict(ys)
    assert t.mk_s > 0 and t.mk_p < 0.01
    assert t.slope > 0
    assert not t.plateau
    assert not t.drained
    assert not t.new_highs
    assert not t.growing
    assert t.reason == "no new highs: the last 34% never exceeded the earlier high 270"
    assert t.confidence == 0.0


def test_sawtooth_ending_just_after_a_clear_is_drained() -> None:
    ys = [(i % 10) * 50.0 for i in range(62)]
    t = verdict(ys)
    assert not t.growing
    assert t.drained


# Live tuple counts of a steady service (a bounded LRU cache) every 0.5 s, taken by
# heapwatch on a loaded machine: gc-tracked tuples pile up between two collections and
# most go at the next one. Two teeth in the window rise in most intervals, the second
# one a little above the first: every other test said "leak".
GC_TEETH = [1587.0, 1644, 2065, 2175, 2378, 2441, 2120, 2367, 2451, 2511, 2530]
GC_TEETH_2 = [1612.0, 1724, 2111, 2096, 2389, 2476, 2122, 2411, 2493, 2543, 2570]


@pytest.mark.parametrize("ys", [GC_TEETH, GC_TEETH_2])
def test_a_tooth_or_two_of_a_gc_sawtooth_is_not_a_leak(ys: list[float]) -> None:
    t = assess(times(len(ys), 0.5), ys)
    assert t.mk_p < DEFAULT.alpha and t.new_highs and not t.plateau and not t.drained
    assert not t.growing
    assert t.reason.startswith("sawtooth: 1 clear gave back most of the rise"), t.reason


def test_a_sawtooth_whose_floor_rises_over_two_clears_is_a_leak() -> None:
    # The same teeth, but each collection leaves 150 more behind: a leak under churn.
    tooth = [0.0, 110, 310, 380]
    ys = [300.0] * 2 + [1500 + v + 150 * k for k in range(3) for v in tooth]
    t = assess(times(len(ys), 0.5), ys)
    assert t.growing, t.reason


def test_one_big_release_then_a_long_leak_is_a_leak() -> None:
    # Freed a batch once (a clear), then leaks for long enough to be judged on its own.
    ys = [1000.0 + 20 * i for i in range(10)] + [1000.0 + 10 * i for i in range(20)]
    t = verdict(ys)
    assert t.growing, t.reason


def test_a_noisy_leak_has_no_clears() -> None:
    lost = [seed for seed in range(200)
            if verdict(noisy(seed, 40, 1000.0, 2.0, 3.0)).reason.startswith("sawtooth")]
    assert lost == []


def test_fill_then_plateau_is_not_growing() -> None:
    ys = [float(min(500, 25 * i)) for i in range(60)]  # bounded cache, full after 20
    t = verdict(ys)
    assert not t.growing
    assert not t.new_highs
    assert t.confidence == 0.0


def test_fill_then_plateau_with_noise_is_a_plateau() -> None:
    rng = random.Random(1)
    ys = [min(500.0, 25.0 * i) + rng.gauss(0.0, 5.0) for i in range(60)]
    t = verdict(ys)
    assert not t.growing
    assert t.plateau
    assert t.mk_p < 0.01  # significant upward trend, still no leak
    assert t.reason.startswith("plateau: flat over the last 34% after +2")
    assert t.confidence < 0.1


def test_single_step_up_then_flat_is_not_growing() -> None:
    ys = [100.0] * 30 + [400.0] * 30
    t = verdict(ys)
    assert not t.growing
    assert not t.new_highs
    assert t.mk_p < 0.01


def test_single_step_up_with_noise_is_not_growing() -> None:
    rng = random.Random(2)
    ys = [(100.0 if i < 30 else 400.0) + rng.gauss(0.0, 5.0) for i in range(60)]
    t = verdict(ys)
    assert not t.growing
    assert t.plateau
    assert not t.new_highs
    assert t.confidence < 0.1


def test_spike_and_drain_is_drained() -> None:
    up = [100.0 + 50.0 * k for k in range(1, 11)]
    down = [600.0 - 50.0 * k for k in range(1, 11)]
    ys = [100.0] * 20 + up + down + [100.0] * 20
    t = verdict(ys)
    assert not t.growing
    assert t.drained
    assert not t.new_highs
    assert t.confidence == 0.0


def test_long_climb_then_drain_is_not_a_leak_even_when_significant() -> None:
    ys = [10.0 * i for i in range(50)] + [490.0 - 100.0 * k for k in range(1, 5)] + [90.0] * 6
    t = verdict(ys)
    assert t.mk_s > 0
    assert t.mk_p < 0.01
    assert t.drained
    assert not t.growing
    assert t.reason.startswith("drained: fell from a peak of 4")


def test_too_short() -> None:
    t = verdict([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert not t.growing
    assert t.n == 6
    assert t.reason == "too short: 6 samples after warm-up (need 8)"
    assert t.confidence == 0.0


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_series_do_not_crash(n: int) -> None:
    t = verdict([float(i) for i in range(n)])
    assert not t.growing
    assert "too short" in t.reason


def test_warmup_growth_then_flat_is_not_growing() -> None:
    ys = [100.0 * i for i in range(9)] + [800.0 + (i % 3) for i in range(51)]
    t = verdict(ys)
    assert not t.growing
    assert t.n == 50
    assert t.first == 800.0 + (1 % 3)  # sample 10 is the first kept
    assert t.confidence < 0.1


def test_warmup_longer_than_the_cut_is_still_not_growing() -> None:
    ys = [40.0 * i for i in range(20)] + [800.0] * 40
    t = verdict(ys)
    assert not t.growing


def test_decreasing_is_not_growing() -> None:
    ys = [1000.0 - 7.0 * i for i in range(50)]
    t = verdict(ys)
    assert not t.growing
    assert t.mk_s < 0
    assert t.slope < 0
    assert t.reason.startswith("decreasing: -84/min")
    assert t.confidence == 0.0


def test_constant_series_has_no_division_by_zero() -> None:
    t = verdict([42.0] * 30)
    assert not t.growing
    assert t.slope == 0.0
    assert t.growth == 0.0
    assert (t.mk_s, t.mk_z, t.mk_p) == (0, 0.0, 1.0)
    assert (t.grew, t.intervals) == (0, 23)
    assert not t.plateau and not t.drained and not t.new_highs
    assert t.confidence == 0.0
    assert all(math.isfinite(v) for v in (t.slope, t.tail_slope, t.per_hour, t.growth))


# ---------------------------------------------------------------------------- time axis


def test_uneven_time_spacing_uses_real_times() -> None:
    rng = random.Random(3)
    xs: list[float] = []
    x = 0.0
    for _ in range(60):
        x += rng.choice([1.0, 2.0, 5.0, 30.0])
        xs.append(x)
    ys = [2.0 * x + 7.0 for x in xs]  # 2 per second, whatever the spacing
    t = assess(xs, ys)
    assert t.growing, t.reason
    assert t.slope == pytest.approx(2.0)
    assert t.growth == pytest.approx(2.0 * (xs[-1] - xs[10]))


def test_unsorted_times_are_put_in_order() -> None:
    xs = times(40)
    ys = [3.0 * i for i in range(40)]
    shuffled = list(zip(xs, ys, strict=True))
    random.Random(5).shuffle(shuffled)
    t = assess([x for x, _ in shuffled], [y for _, y in shuffled])
    assert t == assess(xs, ys)
    assert t.growing


def test_equal_times_do_not_crash() -> None:
    t = assess([0.0] * 20, [float(i) for i in range(20)])
    assert t.slope == 0.0
    assert not t.growing


# ---------------------------------------------------------------------------- gates


def test_min_growth_gate() -> None:
    ys = [100.0 + 10.0 * i for i in range(40)]  # fitted growth over the window: 310
    assert verdict(ys, TrendParams(min_growth=300.0)).growing
    t = verdict(ys, TrendParams(min_growth=320.0))
    assert not t.growing
    assert t.reason == "growth +310 below min_growth 320"
    assert t.confidence > 0.9  # a clear trend, just smaller than asked for


def test_min_per_hour_gate() -> None:
    ys = [100.0 + 10.0 * i for i in range(40)]  # 2/s = 7200/h
    assert verdict(ys, TrendParams(min_per_hour=7000.0)).growing
    t = verdict(ys, TrendParams(min_per_hour=8000.0))
    assert not t.growing
    assert t.reason == "+7.2k/h below min_per_hour 8k"


def test_min_grew_share_gate() -> None:
    ys = [float(10 * (i // 4)) for i in range(80)]  # a stair: rises in 1 interval of 4
    assert verdict(ys, TrendParams(min_grew_share=0.2)).growing
    t = verdict(ys)
    assert not t.growing
    assert t.reason.startswith("grew in only 17 of 69 intervals (need 40%)")


def test_alpha_gate() -> None:
    ys = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]  # 8 kept: p ~ 0.0008
    assert verdict(ys).growing
    t = verdict(ys, TrendParams(alpha=0.0005))
    assert not t.growing
    assert t.reason.startswith("no significant upward trend")


# ---------------------------------------------------------------------------- wording


def test_rate_wording_per_minute_compact() -> None:
    ys = [100.0 * i for i in range(40)]  # 20/s = 1200/min
    assert verdict(ys).reason == "grew in 31 of 31 intervals, +1.2k/min, no plateau"


def test_rate_wording_per_hour_when_slow() -> None:
    ys = [0.005 * x for x in times(40)]  # 18/h
    assert verdict(ys).reason == "grew in 31 of 31 intervals, +18/h, no plateau"


# ---------------------------------------------------------------------------- building blocks


def test_theil_sen_exact_on_a_line_with_an_outlier() -> None:
    xs = [float(x) for x in range(21)]
    ys = [3.0 * x + 5.0 for x in xs]
    ys[7] = 1000.0
    assert theil_sen(xs, ys) == (3.0, 5.0)


def test_theil_sen_uneven_x_and_degenerate_cases() -> None:
    xs = [0.0, 1.0, 3.0, 7.0, 15.0, 31.0]
    assert theil_sen(xs, [-0.5 * x + 2.0 for x in xs]) == (-0.5, 2.0)
    assert theil_sen([], []) == (0.0, 0.0)
    assert theil_sen([4.0], [9.0]) == (0.0, 9.0)
    assert theil_sen([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == (0.0, 2.0)
    with pytest.raises(ValueError, match="differ in length"):
        theil_sen([1.0, 2.0], [1.0])


def test_mann_kendall_known_values() -> None:
    s, z, p = mann_kendall([1, 2, 3, 4, 5])
    assert s == 10
    assert z == pytest.approx(9.0 / math.sqrt(5 * 4 * 15 / 18))  # (S - 1) / sqrt(var)
    assert z == pytest.approx(2.2045, abs=1e-4)
    assert p == pytest.approx(0.0275, abs=1e-4)
    s, z, p = mann_kendall([5, 4, 3, 2, 1])
    assert s == -10
    assert z == pytest.approx(-2.2045, abs=1e-4)
    assert p == pytest.approx(0.0275, abs=1e-4)


def test_mann_kendall_ties() -> None:
    # S = 5; var = (4*3*13 - 2*1*9) / 18 = 138 / 18 (one pair of tied 2s)
    s, z, p = mann_kendall([1, 2, 2, 3])
    assert s == 5
    assert z == pytest.approx(4.0 / math.sqrt(138.0 / 18.0))
    assert p == pytest.approx(math.erfc(z / math.sqrt(2.0)))
    assert mann_kendall([7, 7, 7, 7]) == (0, 0.0, 1.0)


def test_mann_kendall_short_series() -> None:
    assert mann_kendall([]) == (0, 0.0, 1.0)
    assert mann_kendall([1, 2]) == (0, 0.0, 1.0)
    assert mann_kendall([1, 2, 3])[0] == 3


def test_grew_share() -> None:
    assert grew_share([1, 2, 2, 3, 1]) == (2, 4)
    assert grew_share([]) == (0, 0)
    assert grew_share([5]) == (0, 0)
    assert grew_share([3, 2, 1]) == (0, 2)


def test_warmup_cut() -> None:
    assert warmup_cut(0, DEFAULT) == 0
    assert warmup_cut(7, DEFAULT) == 1
    assert warmup_cut(10, DEFAULT) == 2
    assert warmup_cut(15, DEFAULT) == 3
    assert warmup_cut(60, DEFAULT) == 10  # 20% would be 12: capped
    assert warmup_cut(5000, DEFAULT) == 10
    assert warmup_cut(60, TrendParams(warmup_fraction=0.0)) == 0
    assert warmup_cut(60, TrendParams(warmup_max_samples=3)) == 3


def test_plateau_function() -> None:
    xs = times(40)
    filled, tail = plateau(xs, [float(min(300, 15 * i)) for i in range(40)], DEFAULT)
    assert filled
    assert tail == 0.0
    steady, tail = plateau(xs, [3.0 * i for i in range(40)], DEFAULT)
    assert not steady
    assert tail == pytest.approx(3.0 / STEP)
    assert plateau([0.0, 1.0, 2.0], [0.0, 5.0, 5.0], DEFAULT) == (False, 2.5)  # under 6 points


def test_long_series_is_fast_and_right() -> None:
    rng = random.Random(4)
    n = 5000
    xs = [float(i) for i in range(n)]
    up = [0.5 * i + rng.gauss(0.0, 50.0) for i in range(n)]
    down = [-v for v in up]
    start = time.perf_counter()
    slope, _ = theil_sen(xs, up)
    s, _, p = mann_kendall(up)
    trend_up = assess(xs, up)
    trend_down = assess(xs, down)
    elapsed = time.perf_counter() - start
    # Every pair of 5000 points (12.5 million) would take seconds in pure Python.
    assert elapsed < 1.0
    assert slope == pytest.approx(0.5, rel=0.05)
    assert s > 0 and p < 1e-10
    assert trend_up.growing
    assert not trend_down.growing
    assert trend_down.slope < 0 and trend_down.mk_s < 0


# ---------------------------------------------------------------------------- params and input


def test_params_are_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.alpha = 0.5  # type: ignore[misc]
    with pytest.raises(ValueError, match="alpha"):
        TrendParams(alpha=0.0)
    with pytest.raises(ValueError, match="min_samples"):
        TrendParams(min_samples=2)
    with pytest.raises(ValueError, match="warmup_fraction"):
        TrendParams(warmup_fraction=1.0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        assess([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="not finite"):
        assess([0.0, 1.0, 2.0], [1.0, math.nan, 2.0])
