"""Does a time series grow without bound? Robust trend tests, stdlib only, no I/O.

The agent samples a process every interval; each thing it watches (a container's
length, the count of one type, the bytes held by one allocation site, the RSS) becomes a
series of ``(time in seconds, value)``. :func:`assess` turns one series into a
:class:`Trend`, whose ``growing`` field is the verdict.

A leak is not "the value went up". Each of these goes up and is *not* a leak:

* warm-up: imports, first requests and caches filling at start -> the first samples
  are dropped (:func:`warmup_cut`);
* a bounded cache that fills then plateaus -> the tail is flat (:func:`plateau`);
* a sawtooth (a dict cleared now and then) -> the tail sets no new highs;
* a spike that drains -> the series ends far below its peak (``drained``);
* a single step up then flat -> the tail is flat, and sets no new highs;
* a sawtooth seen for a tooth or two (gc-tracked objects between collections, a buffer
  between flushes) -> judged by its floors, the lowest value of each tooth, which must
  rise over two clears at least, or by its last tooth alone when that is long enough.

The statistics are rank based so that one wild sample cannot decide anything:
Theil-Sen for the slope (:func:`theil_sen`), Mann-Kendall for significance
(:func:`mann_kendall`), running medians for levels. Both pairwise methods are O(n^2),
so a series longer than 400 points is thinned to 400 evenly spaced points for them.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = [
    "DEFAULT",
    "Trend",
    "TrendParams",
    "assess",
    "grew_share",
    "mann_kendall",
    "plateau",
    "theil_sen",
    "warmup_cut",
]

# Pairwise statistics look at every pair of points: above this many points they work on
# this many evenly spaced points instead (79,800 pairs, a few milliseconds).
_MAX_POINTS = 400
# "Drained": the series ends having given back at least this share of its climb to the peak.
_DRAIN_SHARE = 0.5
# ...and by more than this many noise scales (so flat noise does not "drain").
_DRAIN_NOISE = 2.0
# "New highs": the tail's high must beat the earlier high by this share of the rise that the
# overall slope predicts across the tail...
_NEW_HIGH_SHARE = 0.25
# ...and by this many noise scales (sample-to-sample noise, see _noise).
_NEW_HIGH_NOISE = 0.5
# Confidence: new highs reaching this share of the predicted tail rise count in full.
_NEW_HIGH_FULL = 0.5
# Highs are k-th largest values, k = max(3, tail length / 10): robust to k - 1 outliers.
_HIGH_RANK = 3
# A "clear" (a sawtooth's fall: a collection, a flush, a drain) is a fall that gives back at
# least this share of its tooth's rise (the tooth: the samples since the previous clear)...
_CLEAR_GIVEBACK = 0.5
# ...and this share of the window's whole range, lands at or below the tooth's median...
_CLEAR_RANGE = 0.5
# ...and is bigger than this many noise scales of the other steps, and than this many
# times the biggest other fall (noise falls about as often and as far as it rises).
_CLEAR_NOISE = 2.5
_CLEAR_OVER_FALLS = 2.0
# Running median windows (odd; the window at the last point holds at least 3 samples).
_SMOOTH_MIN = 5
_SMOOTH_MAX = 11
# Noise: steps of independent normal noise have sigma * sqrt(2); their absolute values,
# less the top 10%, average 0.6573 of that.
_STEP_TO_SIGMA = 1.0 / (0.6573 * math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class TrendParams:
    """Thresholds of :func:`assess`. The defaults suit a sample every few seconds.

    ``warmup_fraction`` (0.2)
        Share of the samples dropped at the start as warm-up (imports, first requests,
        caches filling): growth there says nothing about a leak.
    ``warmup_max_samples`` (10)
        Never drop more than this many samples as warm-up. Warm-up lasts a fixed while,
        not a share of the run, so on a long run 20% would throw away real evidence; a
        warm-up longer than this is still caught by the plateau and new-highs checks.
    ``min_samples`` (8)
        Samples needed after warm-up; fewer gives ``growing=False``, reason "too short".
        At least 3 (Mann-Kendall needs 3; at n=8 a perfectly monotone series has p~0.001).
    ``alpha`` (0.01)
        Two-sided Mann-Kendall significance level: the upward trend needs ``p < alpha``.
    ``min_grew_share`` (0.4)
        Share of intervals in which the value strictly rose. A steady leak under noise
        rises in a bit over half of them; a step or a rare burst in very few.
    ``plateau_tail_fraction`` (0.34)
        The tail (last third) examined for a plateau and for new highs.
    ``plateau_ratio`` (0.25)
        A tail whose Theil-Sen slope is below this share of the whole window's slope is a
        plateau (the growth stopped): a bounded cache, or a step up then flat.
    ``min_growth`` (0.0)
        Minimum fitted net growth over the analysed window (slope times its duration), in
        the series' unit (e.g. 1_000_000 for bytes to ignore leaks under a megabyte).
    ``min_per_hour`` (0.0)
        Minimum Theil-Sen slope per hour, in the series' unit.
    """

    warmup_fraction: float = 0.2
    warmup_max_samples: int = 10
    min_samples: int = 8
    alpha: float = 0.01
    min_grew_share: float = 0.4
    plateau_tail_fraction: float = 0.34
    plateau_ratio: float = 0.25
    min_growth: float = 0.0
    min_per_hour: float = 0.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0.0 <= self.warmup_fraction < 1.0:
            problems.append("warmup_fraction must be in [0, 1)")
        if self.warmup_max_samples < 0:
            problems.append("warmup_max_samples must be >= 0")
        if self.min_samples < 3:
            problems.append("min_samples must be >= 3")
        if not 0.0 < self.alpha < 1.0:
            problems.append("alpha must be in (0, 1)")
        if not 0.0 <= self.min_grew_share <= 1.0:
            problems.append("min_grew_share must be in [0, 1]")
        if not 0.0 < self.plateau_tail_fraction < 1.0:
            problems.append("plateau_tail_fraction must be in (0, 1)")
        if not 0.0 <= self.plateau_ratio <= 1.0:
            problems.append("plateau_ratio must be in [0, 1]")
        if not math.isfinite(self.min_growth):
            problems.append("min_growth must be finite")
        if not math.isfinite(self.min_per_hour):
            problems.append("min_per_hour must be finite")
        if problems:
            raise ValueError("invalid TrendParams: " + "; ".join(problems))


DEFAULT = TrendParams()


@dataclass(frozen=True, slots=True)
class Trend:
    """What :func:`assess` found in one series (the analysed window is after warm-up).

    ``drained``
        The series gave back a long way from its peak by the end. Levels come from a
        running median (5 to 11 samples), so a lone sample can neither make nor hide a
        peak: drained when the end level is below the peak level by at least half of the
        climb to that peak (peak minus the lowest level before it) and by more than twice
        the noise (sample-to-sample noise from a trimmed mean of the absolute steps, which
        a plateau, a step or a regular sawtooth hardly inflate). Spike and
        drain, a sawtooth caught just after a clear, a burst of requests that finished.
    ``new_highs``
        The tail (the last ``plateau_tail_fraction``, a third) rose above everything
        before it. A "high" is the k-th largest value (k = 3, or a tenth of the tail
        when longer), so k - 1 outliers cannot set one. The tail's high must beat the
        head's by more than a quarter of the rise the overall slope predicts across the
        tail, and by more than half the noise. A sawtooth, a plateau or an old step reach
        their old highs again but do not go beyond them.
    ``confidence``
        ``sqrt(rose) * (significance * tail * shape) ** (1/3)``, each score in [0, 1]:

        * ``rose``: share of intervals in which the value rose (a leak buried in noise
          rises in about half of them, which caps it at 0.71);
        * ``significance``: 0 at Mann-Kendall ``p >= sqrt(alpha)`` or unless S > 0, 1/3
          at ``p = alpha``, 1 at ``p <= alpha**2``, log-linear in between;
        * ``tail``: tail slope over the overall slope, capped at 1;
        * ``shape``: the tail's new high over half the rise the slope predicts across
          the tail (capped at 1), times the share of the climb not given back from the
          peak.

        About 1 for a clean monotone leak, 0.5-0.8 for a noisy real one, 0 for flat
        noise, a plateau, a sawtooth or a drain. ``min_growth`` and ``min_per_hour`` do
        not lower it; too short gives 0. Rounded to 3 decimals.
    """

    n: int
    first: float
    last: float
    slope: float
    per_hour: float
    growth: float
    mk_s: int
    mk_z: float
    mk_p: float
    grew: int
    intervals: int
    plateau: bool
    tail_slope: float
    drained: bool
    new_highs: bool
    growing: bool
    confidence: float
    reason: str


# ---------------------------------------------------------------------------- statistics


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """``(slope, intercept)`` of the Theil-Sen line through the points.

    The slope is the median of the slopes of all pairs of points with different x (pairs
    with equal x are skipped), the intercept the median of ``y - slope * x``. Above 400
    points the slope uses 400 evenly spaced points (the intercept uses all of them).
    Fewer than two distinct x give slope 0; no points give ``(0.0, 0.0)``.
    """
    px = _floats(xs, "xs")
    py = _floats(ys, "ys")
    _same_length(px, py)
    if not py:
        return 0.0, 0.0
    sx = _thin(px)
    sy = _thin(py)
    slopes: list[float] = []
    for i in range(len(sx) - 1):
        xi, yi = sx[i], sy[i]
        slopes.extend(
            [
                (yj - yi) / (xj - xi)
                for xj, yj in zip(sx[i + 1 :], sy[i + 1 :], strict=True)
                if xj != xi
            ]
        )
    slope = _median(slopes) if slopes else 0.0
    intercept = _median([y - slope * x for x, y in zip(px, py, strict=True)])
    return slope, intercept


def mann_kendall(ys: Sequence[float]) -> tuple[int, float, float]:
    """``(S, z, p)`` of the Mann-Kendall trend test, p two-sided.

    S counts, over all pairs i < j, +1 when ``ys[j] > ys[i]`` and -1 when lower. Its
    variance is ``(n(n-1)(2n+5) - sum t(t-1)(2t+5)) / 18`` over groups of t tied values;
    ``z = (S - sign(S)) / sqrt(var)`` (continuity correction) and p comes from the normal
    distribution. Fewer than 3 values, or all equal, give ``(0 or S, 0.0, 1.0)``. Above
    400 values the test runs on 400 evenly spaced ones (S and p are those of that subset).
    """
    values = _floats(ys, "ys")
    if len(values) < 3:
        return 0, 0.0, 1.0
    vals = _thin(values)
    n = len(vals)
    s = 0
    seen: list[float] = []
    for v in vals:
        below = bisect.bisect_left(seen, v)
        not_above = bisect.bisect_right(seen, v)
        s += below - (len(seen) - not_above)
        seen.insert(not_above, v)
    tie_term = sum(t * (t - 1) * (2 * t + 5) for t in Counter(vals).values() if t > 1)
    var = (n * (n - 1) * (2 * n + 5) - tie_term) / 18.0
    if var <= 0.0:
        return s, 0.0, 1.0
    if s > 0:
        z = (s - 1) / math.sqrt(var)
    elif s < 0:
        z = (s + 1) / math.sqrt(var)
    else:
        z = 0.0
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return s, z, min(1.0, p)


def grew_share(ys: Sequence[float]) -> tuple[int, int]:
    """``(intervals in which the value strictly rose, number of intervals)``."""
    values = _floats(ys, "ys")
    rose = sum(1 for a, b in itertools.pairwise(values) if b > a)
    return rose, max(0, len(values) - 1)


def warmup_cut(n: int, params: TrendParams = DEFAULT) -> int:
    """Index of the first sample kept: ``floor(n * warmup_fraction)``, at most
    ``warmup_max_samples`` (and within ``[0, n]``)."""
    if n <= 0:
        return 0
    cut = math.floor(n * params.warmup_fraction + 1e-9)
    return max(0, min(cut, params.warmup_max_samples, n))


def plateau(
    xs: Sequence[float], ys: Sequence[float], params: TrendParams = DEFAULT
) -> tuple[bool, float]:
    """``(is plateau, tail slope per second)``.

    The tail is the last ``plateau_tail_fraction`` of the points (at least 3). It is a
    plateau when the whole series slopes up (Theil-Sen) but the tail's Theil-Sen slope is
    below ``plateau_ratio`` of that: the growth stopped. Needs 6 points; with fewer, or
    when the whole series does not slope up, it is not a plateau and the tail slope
    reported is the whole series' slope (fewer than 6) or the tail's own.
    """
    px = _floats(xs, "xs")
    py = _floats(ys, "ys")
    _same_length(px, py)
    slope, _ = theil_sen(px, py)
    return _plateau(px, py, slope, params)


# ---------------------------------------------------------------------------- verdict


def assess(xs: Sequence[float], ys: Sequence[float], params: TrendParams = DEFAULT) -> Trend:
    """Decide whether ``ys`` (sampled at times ``xs``, in seconds) grows without bound.

    Times need not be evenly spaced; points are taken in time order. After dropping the
    warm-up (:func:`warmup_cut`), ``growing`` requires: at least ``min_samples`` samples;
    Mann-Kendall S > 0 with ``p < alpha``; a positive Theil-Sen slope; not drained; no
    plateau; new highs in the tail; a share of rising intervals ``>= min_grew_share``;
    fitted growth ``>= min_growth``; slope per hour ``>= min_per_hour``. ``reason`` names
    the first requirement that failed, or summarises the growth.

    Raises ValueError when the lengths differ or a value is not finite.
    """
    all_x = _floats(xs, "xs")
    all_y = _floats(ys, "ys")
    _same_length(all_x, all_y)
    pairs = sorted(zip(all_x, all_y, strict=True), key=lambda pair: pair[0])
    cut = warmup_cut(len(pairs), params)
    kept = pairs[cut:]
    n = len(kept)
    x0 = kept[0][0] if kept else 0.0
    px = [x - x0 for x, _ in kept]  # relative times keep the intercept well conditioned
    py = [y for _, y in kept]

    slope, _ = theil_sen(px, py)
    span = px[-1] - px[0] if n else 0.0
    growth = slope * span
    per_hour = slope * 3600.0
    mk_s, mk_z, mk_p = mann_kendall(py)
    grew, intervals = grew_share(py)
    is_plateau, tail_slope = _plateau(px, py, slope, params)
    noise = _noise(py)
    shape = _shape(px, py, slope, noise, params)

    c_mk = _significance_score(mk_s, mk_p, params.alpha)
    c_grew = grew / intervals if intervals else 0.0
    c_tail = _clamp(tail_slope / slope) if slope > 0.0 else 0.0
    c_shape = shape.high_score * shape.kept_share
    confidence = math.sqrt(c_grew) * (c_mk * c_tail * c_shape) ** (1.0 / 3.0)

    rate = _rate(slope)
    tail_pct = f"{_tail_len(n, params.plateau_tail_fraction) / n:.0%}" if n else "0%"
    reason = ""
    if n < params.min_samples:
        samples = "sample" if n == 1 else "samples"
        reason = f"too short: {n} {samples} after warm-up (need {params.min_samples})"
        confidence = 0.0
    elif mk_s <= 0 or mk_p >= params.alpha:
        if mk_s < 0 and mk_p < params.alpha:
            reason = f"decreasing: {rate} (Mann-Kendall p={mk_p:.2g})"
        else:
            reason = f"no significant upward trend (Mann-Kendall p={mk_p:.2g}, {rate})"
    elif slope <= 0.0:
        reason = f"no upward slope: Theil-Sen {rate} (Mann-Kendall p={mk_p:.2g})"
    elif shape.drained:
        reason = (
            f"drained: fell from a peak of {_compact(shape.peak)} to {_compact(shape.end)}"
            f" by the end (gave back {shape.drop / shape.rise:.0%} of the rise)"
        )
    elif is_plateau:
        level_rise = _signed(shape.level_rise)
        if tail_slope <= 0.05 * slope:
            reason = f"plateau: flat over the last {tail_pct} after {level_rise}"
        else:
            reason = (
                f"plateau: slowed to {tail_slope / slope:.0%} of the overall rate"
                f" over the last {tail_pct} after {level_rise}"
            )
    elif not shape.new_highs:
        if shape.excess <= 0.0:
            reason = (
                f"no new highs: the last {tail_pct} never exceeded"
                f" the earlier high {_compact(shape.head_max)}"
            )
        else:
            reason = (
                f"no new highs: the last {tail_pct} rose only {_signed(shape.excess)} above"
                f" the earlier high {_compact(shape.head_max)} (need {_signed(shape.margin)})"
            )
    elif intervals == 0 or c_grew < params.min_grew_share:
        reason = (
            f"grew in only {grew} of {intervals} intervals"
            f" (need {params.min_grew_share:.0%}), {rate}"
        )
    elif growth < params.min_growth:
        reason = f"growth {_signed(growth)} below min_growth {_compact(params.min_growth)}"
    elif per_hour < params.min_per_hour:
        reason = f"{_signed(per_hour)}/h below min_per_hour {_compact(params.min_per_hour)}"
    else:
        reason = _sawtooth(px, py, params)
    growing = not reason
    if growing:
        reason = f"grew in {grew} of {intervals} intervals, {rate}, no plateau"

    return Trend(
        n=n,
        first=py[0] if py else 0.0,
        last=py[-1] if py else 0.0,
        slope=slope,
        per_hour=per_hour,
        growth=growth,
        mk_s=mk_s,
        mk_z=mk_z,
        mk_p=mk_p,
        grew=grew,
        intervals=intervals,
        plateau=is_plateau,
        tail_slope=tail_slope,
        drained=shape.drained,
        new_highs=shape.new_highs,
        growing=growing,
        confidence=round(_clamp(confidence), 3),
        reason=reason,
    )


# ---------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class _Shape:
    """Levels from the running median of the analysed window (see :class:`Trend`)."""

    peak: float  # highest running-median level
    rise: float  # peak minus the lowest level before it
    end: float  # level at the end
    drop: float  # peak minus end
    drained: bool
    kept_share: float  # 1 - drop / rise, in [0, 1]: how much of the climb is still held
    head_max: float  # the head's k-th largest value (k >= 3), a high no lone sample sets
    excess: float  # the tail's k-th largest value minus head_max
    margin: float  # what excess must beat
    new_highs: bool
    high_score: float  # excess against the tail rise the slope predicts, in [0, 1]
    level_rise: float  # end level minus start level


def _shape(
    px: list[float], py: list[float], slope: float, noise: float, params: TrendParams
) -> _Shape:
    n = len(py)
    if n == 0:
        return _Shape(0.0, 0.0, 0.0, 0.0, False, 1.0, 0.0, 0.0, 0.0, False, 0.0, 0.0)
    level = _running_median(py, _smooth_window(n))
    peak_at = max(range(n), key=level.__getitem__)  # first index of the maximum
    peak = level[peak_at]
    rise = peak - min(level[: peak_at + 1])
    end = level[-1]
    drop = peak - end
    drained = rise > 0.0 and drop >= _DRAIN_SHARE * rise and drop > _DRAIN_NOISE * noise
    kept_share = _clamp(1.0 - drop / rise) if rise > 0.0 else 1.0

    t = _tail_len(n, params.plateau_tail_fraction)
    if n - t < 1:
        return _Shape(
            peak, rise, end, drop, drained, kept_share, peak, 0.0, 0.0, False, 0.0, end - level[0]
        )
    k = max(_HIGH_RANK, math.ceil(t / 10))
    head_max = _kth_largest(py[: n - t], k)
    excess = _kth_largest(py[n - t :], k) - head_max
    expected = slope * (px[-1] - px[n - t - 1])
    margin = max(_NEW_HIGH_SHARE * max(expected, 0.0), _NEW_HIGH_NOISE * noise)
    new_highs = excess > 0.0 and excess > margin
    high_score = _clamp(excess / (_NEW_HIGH_FULL * expected)) if expected > 0.0 else 0.0
    return _Shape(
        peak=peak,
        rise=rise,
        end=end,
        drop=drop,
        drained=drained,
        kept_share=kept_share,
        head_max=head_max,
        excess=excess,
        margin=margin,
        new_highs=new_highs,
        high_score=high_score,
        level_rise=end - level[0],
    )


def _plateau(
    px: list[float], py: list[float], slope: float, params: TrendParams
) -> tuple[bool, float]:
    n = len(py)
    if n < 6:
        return False, slope
    t = _tail_len(n, params.plateau_tail_fraction)
    tail_slope, _ = theil_sen(px[n - t :], py[n - t :])
    return slope > 0.0 and tail_slope < params.plateau_ratio * slope, tail_slope


def _clears(py: list[float]) -> list[int]:
    """Indices ``i`` where the fall ``py[i] -> py[i+1]`` is a clear (see ``_CLEAR_*``)."""
    n = len(py)
    span = max(py) - min(py) if n else 0.0
    if n < 3 or span <= 0.0:
        return []
    found: list[int] = []
    start = 0
    low = py[0]  # the tooth's lowest value so far: one pass, not a min() per fall
    for i in range(n - 1):
        low = min(low, py[i])
        fall = py[i] - py[i + 1]
        if fall <= 0.0:
            continue
        rise = py[i] - low
        if (rise > 0.0 and fall >= _CLEAR_GIVEBACK * rise and fall >= _CLEAR_RANGE * span
                and py[i + 1] <= _median(py[start : i + 1])):
            found.append(i)
            start = i + 1
            low = py[i + 1]
    if not found:
        return []
    falls = set(found)
    others = [b - a for j, (a, b) in enumerate(itertools.pairwise(py)) if j not in falls]
    floor = max(_CLEAR_NOISE * _step_noise(others),
                _CLEAR_OVER_FALLS * max((-d for d in others if d < 0), default=0.0))
    return [i for i in found if py[i] - py[i + 1] > floor]


def _sawtooth(px: list[float], py: list[float], params: TrendParams) -> str:
    """Why a series that passed every other test is still not growing: it has clears, and
    neither its floors (the lowest value of each tooth after a clear) rose over two clears
    or more (the last above the first, and up more often than down, pair by pair), nor
    is its last tooth a leak on its own. A tooth or two of a sawtooth (gc-tracked tuples
    between two collections) rises in most intervals and sets a new high by chance, so
    they alone never make a leak. Empty when growing."""
    clears = _clears(py)
    if not clears:
        return ""
    # The teeth that follow a clear: the window may start anywhere in the first one.
    bounds = [*(i + 1 for i in clears), len(py)]
    floors = [min(py[a:b]) for a, b in itertools.pairwise(bounds)]
    rises = sum((b > a) - (b < a) for a, b in itertools.combinations(floors, 2))
    if len(floors) >= 2 and floors[-1] > floors[0] and rises > 0:
        return ""  # every clear leaves more behind: a leak under a sawtooth
    last = clears[-1] + 1
    if len(py) - last >= params.min_samples and assess(
            px[last:], py[last:], replace(params, warmup_fraction=0.0)).growing:
        return ""  # the last tooth alone is a leak
    teeth = "clear" if len(clears) == 1 else "clears"
    seen = (f"the floor went {_compact(floors[0])} → {_compact(floors[-1])}"
            if len(floors) > 1 else f"the floor after it is {_compact(floors[0])}")
    return (f"sawtooth: {len(clears)} {teeth} gave back most of the rise, {seen}; a "
            f"sawtooth is a leak when its floor rises from clear to clear")


def _tail_len(n: int, fraction: float) -> int:
    return min(n, max(3, math.ceil(n * fraction - 1e-9)))


def _noise(py: list[float]) -> float:
    """Sample-to-sample noise, estimating sigma for independent normal noise.

    Built on the steps (differences between neighbours) rather than residuals around a
    line, so that structure (a plateau, a step, a sawtooth) is not counted as noise: the
    mean absolute deviation of the steps from their median, after dropping the largest
    10% (a wild sample, the clears of a sawtooth), scaled by ``_STEP_TO_SIGMA``. A steady
    ramp has no noise; a tiny repeating jitter (800, 801, 802, 800, ...) has some."""
    if len(py) < 3:
        return 0.0
    return _step_noise([b - a for a, b in itertools.pairwise(py)])


def _step_noise(steps: list[float]) -> float:
    """:func:`_noise` from the steps themselves."""
    if len(steps) < 2:
        return 0.0
    centre = _median(steps)
    spread = sorted(abs(d - centre) for d in steps)
    kept = spread[: max(1, len(spread) - len(spread) // 10)]
    return _STEP_TO_SIGMA * sum(kept) / len(kept)


def _smooth_window(n: int) -> int:
    return max(_SMOOTH_MIN, min(2 * (n // 20) + 1, _SMOOTH_MAX))


def _running_median(values: list[float], window: int) -> list[float]:
    """Centred running median; the windows shrink at both ends."""
    half = window // 2
    n = len(values)
    return [_median(values[max(0, i - half) : i + half + 1]) for i in range(n)]


def _significance_score(s: int, p: float, alpha: float) -> float:
    """0 at ``p >= sqrt(alpha)``, 1/3 at ``p = alpha``, 1 at ``p <= alpha**2``, log-linear
    in between (alpha 0.01: 0 at p=0.1, 1 at p=0.0001); 0 unless S > 0."""
    if s <= 0:
        return 0.0
    if p <= 0.0:
        return 1.0
    p0 = math.sqrt(alpha)
    return _clamp(math.log(p / p0) / math.log(alpha * alpha / p0))


def _thin(values: list[float]) -> list[float]:
    """At most ``_MAX_POINTS`` evenly spaced values, always keeping the first and last."""
    n = len(values)
    if n <= _MAX_POINTS:
        return values
    m = _MAX_POINTS
    return [values[(i * (n - 1) + (m - 1) // 2) // (m - 1)] for i in range(m)]


def _kth_largest(values: list[float], k: int) -> float:
    ordered = sorted(values, reverse=True)
    return ordered[min(k, len(ordered)) - 1]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    if n % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def _clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


def _floats(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    for v in out:
        if not math.isfinite(v):
            raise ValueError(f"{name} holds a value that is not finite: {v!r}")
    return out


def _same_length(xs: list[float], ys: list[float]) -> None:
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} != {len(ys)}")


def _rate(slope: float) -> str:
    """``+310/min`` when at least 1 a minute, else ``+12/h``."""
    per_minute = slope * 60.0
    if abs(per_minute) >= 1.0:
        return f"{_signed(per_minute)}/min"
    return f"{_signed(slope * 3600.0)}/h"


def _signed(value: float) -> str:
    text = _compact(value)
    return text if text.startswith("-") or text == "0" else "+" + text


def _compact(value: float) -> str:
    """``1.2k``, ``310``, ``4.5``, ``0.25``, ``3.1M``: about two significant figures."""
    if value == 0.0:
        return "0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    units = (("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12))
    for index, (suffix, scale) in enumerate(units):
        text = _digits(magnitude / scale)
        if float(text) < 1000.0 or index == len(units) - 1:
            return sign + text + suffix
    raise AssertionError("unreachable")


def _digits(scaled: float) -> str:
    if scaled >= 10.0:
        text = f"{scaled:.0f}"
    elif scaled >= 1.0:
        text = f"{scaled:.1f}"
    else:
        text = f"{scaled:.2g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return text
