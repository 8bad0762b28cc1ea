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
