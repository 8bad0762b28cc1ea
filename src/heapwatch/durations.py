"""Durations as people write them: ``500ms``, ``5s``, ``2m``, ``1h``, or a bare number of seconds."""

from __future__ import annotations

import re

from heapwatch.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str | float | int) -> float:
    """Return ``text`` as seconds.

    >>> parse_duration("500ms"), parse_duration("2m"), parse_duration("1.5")
    (0.5, 120.0, 1.5)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _PATTERN.match(str(text))
        if match is None:
            raise UsageError(
                f"invalid duration {text!r}: use a number with ms, s, m or h (e.g. 500ms, 5s, 2m, 1h)"
            )
        value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if value <= 0:
        raise UsageError(f"invalid duration {text!r}: it must be greater than zero")
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
