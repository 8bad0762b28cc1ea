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
