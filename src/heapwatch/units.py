"""Numbers as people read them, shared by the analysis (titles, evidence) and the reports."""

from __future__ import annotations


def fmt_bytes(v: float, signed: bool = False) -> str:
    """``1.5 MiB``, ``320 B``; with ``signed``, a ``+`` before growth."""
    sign = "+" if signed and v > 0 else ("−" if v < 0 else "")
    a = abs(v)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if a >= size:
            return f"{sign}{a / size:.1f} {unit}"
    return f"{sign}{a:.0f} B"


# Size suffixes, binary: what budgets, --limit and the reports mean by MB.
SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "K": 1024, "MB": 1024**2, "M": 1024**2,
              "GB": 1024**3, "G": 1024**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_bytes(text: str) -> float:
    """``512MB``, ``2GB``, ``1.5GiB``, ``4096``; ValueError when it is none of these."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if m is None or m.group(2).upper() not in SIZE_UNITS:
        raise ValueError(text)
    return float(m.group(1)) * SIZE_UNITS[m.group(2).upper()]
