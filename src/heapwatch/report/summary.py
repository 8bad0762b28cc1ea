"""The few lines printed at the end of a run (one fact a line, where to look first), and
short texts every renderer shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heapwatch.analysis import Analysis
from heapwatch.analysis.lifecycle import death_note

# Which report a person should open first, then the others.
_ORDER = ("html", "md", "json")


def core_text(agent: Mapping[str, Any]) -> str | None:
    """Which census core ran in the target, and why not the native one: ``native`` or
    ``python (HEAPWATCH_NO_NATIVE is set)``; None for runs recorded before cores existed."""
    core = agent.get("core")
    if not core:
        return None
    why = agent.get("core_fallback")
    return f"{core} ({why})" if why else str(core)



def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _wall(a: Analysis) -> float:
    """How long the target ran (the launcher's clock), else the snapshots' span."""
    data = getattr(a, "data", None)
    launch = (data.meta.get("launch") or {}) if data is not None else {}
    wall = launch.get("wall_s")
    return float(wall) if isinstance(wall, (int, float)) else float(
        a.run.get("duration_s") or 0.0)


def died(a: Analysis) -> str | None:
    """"the target died 0.6s into the run (killed by SIGKILL)" when it did; else None."""
    return death_note(a.target_exit) if a.target_exit else None


def early_exit(a: Analysis) -> str | None:
    """How the target ended, when it ended by itself, failing, before the run could be
    judged: how it died, or "the target exited with 2 after 0.1 s"; None otherwise."""
    code = a.run.get("exit_code")
    note = died(a)
    if a.verdict == "inconclusive" and a.agent.get("checked_in") and (
            note or code not in (None, 0)):
        return note or f"the target exited with {code} after {_seconds(_wall(a))}"
    return None


def reason(a: Analysis) -> str:
    """Why the verdict, as the reports say it."""
    early = early_exit(a)
    if early:
        return f"{early[0].upper()}{early[1:]}: too short to judge; fix the target and run it again."
    return a.verdict_reason


def headline(a: Analysis) -> str:
    """The verdict and why, in one line; a target that ended early says so first."""
    r = a.run
    n = int(r.get("snapshots") or 0)
    took = f"{_plural(n, 'snapshot')}; the target ran {_seconds(_wall(a))}"
    early = early_exit(a)
    if early:
        return (f"heapwatch: INCONCLUSIVE - {early} ({_plural(n, 'snapshot')}): too short to "
                f"judge; fix the target and run it again")
    if a.verdict == "leak":
        serious = sum(1 for f in a.findings if f.severity in ("high", "medium"))
        return (f"heapwatch: LEAK - {_plural(serious, 'finding')} of high or medium severity "
                f"({took})")
    if a.verdict == "inconclusive" and a.agent.get("checked_in") is False:
        return f"heapwatch: INCONCLUSIVE - only process figures were recorded ({took})"
    return f"heapwatch: {a.verdict.upper()} - {a.verdict_reason} ({took})"


def summary_lines(a: Analysis, reports: str | Mapping[str, str]) -> list[str]:
    """``reports``: {format: path} as written (or the path of the one report)."""
    paths = {"report": reports} if isinstance(reports, str) else dict(reports)
    first = a.findings[0] if a.findings else None
    lines = [headline(a)]
    note = died(a)
    if note and not early_exit(a):
        lines.append(f"  {note}")
    if first is not None and a.verdict == "leak":
        where = f", allocated at {first.site}" if first.site else ""
        lines.append(f"  top finding ({first.severity}): {first.title}{where}")
    elif a.notes:
        lines.append(f"  note: {a.notes[0]}")
    ordered = [paths[k] for k in _ORDER if k in paths] + [
        v for k, v in paths.items() if k not in _ORDER]
    if ordered:
        lines.append(f"  report: {ordered[0]}")
    if len(ordered) > 1:
        lines.append(f"  also: {', '.join(ordered[1:])}")
    return lines
