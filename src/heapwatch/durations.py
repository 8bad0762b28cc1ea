"""Durations as people write them: ``500ms``, ``5s``, ``2m``, ``1h``, or a bare number of seconds."""

from __future__ import annotations

import math
import re

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h)?\s*$", re.ASCII)
MAX_SECONDS = 366 * 24 * 3600.0  # a year: longer than any run, short enough for every timer


def parse_duration(text: str | float | int) -> float:
    """Return ``text`` as seconds: more than zero, at most a year (``MAX_SECONDS``).

    >>> parse_duration("500ms"), parse_duration("2m"), parse_duration("1.5")
    (0.5, 120.0, 1.5)
    """
    try:
        shown = repr(text)
    except ValueError:  # an int with more digits than Python prints
        shown = "(a number too large to print)"
    if len(shown) > 40:
        shown = shown[:39] + "…"
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        try:
            value = float(text)
        except OverflowError:  # an int too large for a float
            value = math.inf
    else:
        match = _PATTERN.match(str(text))
        if match is None:
            raise UsageError(
                f"invalid duration {shown}: use a number with ms, s, m or h (e.g. 500ms, 5s, 2m, 1h)"
            )
        value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return check_seconds(value, shown)


def check_seconds(value: float, shown: str | None = None) -> float:
    """``value`` when it is a usable number of seconds; UsageError otherwise."""
    what = f"invalid duration {repr(value)[:40] if shown is None else shown}"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        raise UsageError(f"{what}: not a number")
    if value <= 0:
        raise UsageError(f"{what}: it must be greater than zero")
    if value > MAX_SECONDS:
        raise UsageError(f"{what}: at most {MAX_SECONDS / 3600:.0f}h (a year) is allowed")
    return value


DEFAULT_INTERVAL = 5.0
# A verdict needs snapshots: 8 after warm-up at the least, and a plateau test on the last
# third wants more. 40 per run leaves room for stretched snapshots and still gives 30.
SNAPSHOTS_PER_RUN = 40
MIN_AUTO_INTERVAL = 0.2


def default_interval(planned: float | None) -> float:
    """The interval when none is given: 5 s for an open-ended run; for a run of known
    length (``--duration``, a phase schedule), at most a 40th of it (at least 30 snapshots
    even when some are stretched), and not below 0.2 s.

    >>> default_interval(None), default_interval(20.0), default_interval(3600.0)
    (5.0, 0.5, 5.0)
    """
    if planned is None or planned <= 0:
        return DEFAULT_INTERVAL
    return max(MIN_AUTO_INTERVAL, min(DEFAULT_INTERVAL, planned / SNAPSHOTS_PER_RUN))


def format_duration(seconds: float) -> str:
    """Short human form: ``850ms``, ``12.5s``, ``3m20s``, ``1h05m``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes}m{secs:02d}s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"
