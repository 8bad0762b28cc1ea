from __future__ import annotations

import pytest

from heapwatch.durations import format_duration, parse_duration
from heapwatch.errors import UsageError


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("0.5", 0.5), ("3", 3.0),
    (" 1.5s ", 1.5), (2, 2.0),
])
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-1s", "0", "s", "1.2.3", "ten"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="duration"):
        parse_duration(text)


def test_format() -> None:
    assert [format_duration(s) for s in (0.25, 12.5, 200, 3900)] == ["250ms", "12.5s", "3m20s",
                                                                      "1h05m"]
