"""The few lines printed at the end of a run, and short texts every renderer shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heapwatch.analysis import Analysis


def core_text(agent: Mapping[str, Any]) -> str | None:
    """Which census core ran in the target, and why not the native one: ``native`` or
    ``python (HEAPWATCH_NO_NATIVE is set)``; None for runs recorded before cores existed."""
    core = agent.get("core")
    if not core:
        return None
    why = agent.get("core_fallback")
    return f"{core} ({why})" if why else str(core)


def summary_lines(a: Analysis, report_path: str) -> list[str]:
    first = a.findings[0] if a.findings else None
    lines = [f"heapwatch: {a.verdict.upper()} ({a.run['snapshots']} snapshots over "
             f"{a.run['duration_s']:.1f}s) - {a.verdict_reason}"]
    if first is not None:
        where = f" [allocated at {first.site}]" if first.site else ""
        lines.append(f"  top finding ({first.severity}): {first.title}{where}")
    elif a.notes:
        lines.append(f"  {a.notes[0]}")
    else:
        lines.append("  no growing container, type, site or process figure")
    lines.append(f"  report: {report_path}")
    return lines
