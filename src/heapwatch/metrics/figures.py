"""What heapwatch's metrics show, computed from a run store and its analysis. Pure: no
prometheus_client here, no I/O beyond the store read by the caller.

One :class:`Figures` per refresh; the exporter only renders it. Labels are bounded: per
process role (the tree analysis' roles; ``main`` for a single process), the top
``TOP_FINDINGS`` findings (by severity, then importance) and the ``TOP_TYPES`` most
numerous types; a role's processes are aggregated (workers are summed, severity is the
worst), never labelled by pid; every label value goes through :func:`label`, which
applies the redaction rules.
"""

from __future__ import annotations

import importlib
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from heapwatch.agent.naming import key_part
from heapwatch.analysis import Analysis
from heapwatch.analysis.tree import analyze_tree
from heapwatch.model import SEVERITY_RANK, Finding
from heapwatch.store import RunData

TOP_FINDINGS = 20
TOP_TYPES = 20
MAIN_ROLE = "main"
SEVERITY_LEVEL = {"high": 3, "medium": 2, "low": 1}
PAUSE_QUANTILES = (0.5, 0.9, 0.99)
_KEY = re.compile(r"\['([^']*)'\]")
_MAX_LABEL = 200


def _fallback_redact(value: str) -> str:
    """The naming rules of the agent, applied again: keys in owner paths that look like
    secrets or data become ``[…]``; control characters go; long values are cut."""
    value = _KEY.sub(lambda m: key_part(m.group(1)), value)
    value = "".join(c if c.isprintable() else "?" for c in value)
    return value if len(value) <= _MAX_LABEL else value[: _MAX_LABEL - 1] + "…"


def _redactor() -> Callable[[str], str]:
    try:  # heapwatch.redact (the agent's secret rules) when this heapwatch has it
        text = importlib.import_module("heapwatch.redact").text
    except (ImportError, AttributeError):
        return _fallback_redact
    if not callable(text):
        return _fallback_redact
    return lambda value: _fallback_redact(str(text(value)))


_REDACT = _redactor()


def label(value: str | None) -> str:
    """A label value as it may leave the process: names only, redacted, bounded."""
    return _REDACT(value) if value else ""


@dataclass(frozen=True, slots=True)
class FindingFigure:
    role: str
    fingerprint: str
    path: str
    kind: str
    unit: str
    severity: int       # 3 high, 2 medium, 1 low (the worst of the role's processes)
    per_second: float   # growth rate in ``unit`` per second, summed over the role
    length: float | None  # a container's current number of items, summed over the role


@dataclass(frozen=True, slots=True)
class RoleFigures:
    role: str
    processes: int
    verdict: str
    snapshots: int
    last_snapshot_t: float | None
    errors: int
    pause_count: int
    pause_sum: float
    pause_quantiles: tuple[tuple[float, float], ...]
    heap: tuple[tuple[str, float], ...]      # (method: traced | sampled, bytes)
    objects: tuple[tuple[str, int], ...]     # (type, live objects), top types
    threads: int | None


@dataclass(frozen=True, slots=True)
class Figures:
    roles: tuple[RoleFigures, ...] = ()
    findings: tuple[FindingFigure, ...] = ()
    refreshed_t: float = 0.0
    analysis_s: float = 0.0


def per_process(data: RunData) -> list[tuple[int, str, Analysis]]:
    """(pid, role, analysis) of every watched process the analysis judged: the tree
    analysis' own per-process analyses and roles (``master``, ``worker``...) for a run of
    several processes, else the one process, ``main``."""
    a = analyze_tree(data)
    if not a.per_process:
        return [(int(a.run.get("pid") or 0), MAIN_ROLE, a)] if a.agent.get("checked_in") else []
    rows = {r["pid"]: r for r in a.processes}
    return [(pid, str(rows[pid]["role"]), pa) for pid, pa in a.per_process.items()
            if pid in rows and rows[pid]["judged"]]


def _current_length(a: Analysis, f: Finding) -> float | None:
    if f.kind != "container" or a.series is None or not f.series_key:
        return None
    points = a.series.containers.get(f.series_key)
    return points[1][-1] if points and points[1] else None


def _quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def compute(data: RunData, dropped: dict[int, tuple[int, float, int]] | None = None,
            now: float = 0.0, analysis_s: float = 0.0) -> Figures:
    """The figures of every watched process of ``data``, by role. ``dropped`` is what
    retention removed per pid (snapshots, their pause sum, their errors), so that the
    counters keep counting."""
    dropped = dropped or {}
    by_role: dict[str, list[tuple[int, Analysis]]] = {}
    for pid, role, a in per_process(data):
        by_role.setdefault(role, []).append((pid, a))
    role_figs: list[RoleFigures] = []
    finding_figs: list[FindingFigure] = []
    for role, analyses in sorted(by_role.items()):
        role_figs.append(_role(role, analyses, dropped))
        finding_figs.extend(_findings(role, analyses))
    if not by_role:  # no agent checked in (yet), nothing judged: the verdict says so
        role_figs.append(RoleFigures(MAIN_ROLE, 0, "inconclusive", 0, None, 0, 0, 0.0, (), (),
                                     (), None))
    return Figures(tuple(role_figs), tuple(finding_figs), now, analysis_s)


def _role(role: str, analyses: list[tuple[int, Analysis]],
          dropped: dict[int, tuple[int, float, int]]) -> RoleFigures:
    verdicts = [a.verdict for _, a in analyses]
    verdict = ("leak" if "leak" in verdicts else
               "no-leak" if verdicts and all(v == "no-leak" for v in verdicts) else
               "inconclusive")
    pauses: list[float] = []
    errors = snapshots = 0
    pause_sum = 0.0
    last_t: float | None = None
    heap: dict[str, float] = {}
    objects: dict[str, int] = {}
    threads: int | None = None
    for pid, a in analyses:
        snaps = a.series.snapshots if a.series is not None else []
        d_count, d_sum, d_errors = dropped.get(pid, (0, 0.0, 0))
        pauses.extend(s.duration_s for s in snaps)
        snapshots += len(snaps) + d_count
        pause_sum += sum(s.duration_s for s in snaps) + d_sum
        errors += sum(len(s.errors) for s in snaps) + d_errors
        if a.data is not None:
            errors += sum(1 for e in a.data.events if e[2] == "error")
        if not snaps:
            continue
        last = snaps[-1]
        last_t = max(last_t or 0.0, last.t)
        p = last.process
        if last.traced and p.traced_current is not None:
            heap["traced"] = heap.get("traced", 0.0) + p.traced_current
        sampled = getattr(p, "sampled_heap", None)  # the sampling hook's estimate, when any
        if isinstance(sampled, (int, float)):
            heap["sampled"] = heap.get("sampled", 0.0) + float(sampled)
        for name, n in last.types.items():
            objects[name] = objects.get(name, 0) + n
        if p.threads is not None:
            threads = (threads or 0) + p.threads
    top = sorted(objects.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TYPES]
    return RoleFigures(
        role=label(role), processes=len(analyses), verdict=verdict, snapshots=snapshots,
        last_snapshot_t=last_t, errors=errors, pause_count=snapshots, pause_sum=pause_sum,
        pause_quantiles=tuple((q, _quantile(pauses, q)) for q in PAUSE_QUANTILES) if pauses
        else (),
        heap=tuple(sorted(heap.items())),
        objects=tuple((label(name), n) for name, n in top),
        threads=threads,
    )


def _findings(role: str, analyses: list[tuple[int, Analysis]]) -> list[FindingFigure]:
    """The role's findings, one per fingerprint (its processes summed), top first."""
    merged: dict[str, list[tuple[Analysis, Finding]]] = {}
    for _, a in analyses:
        for f in a.findings:
            merged.setdefault(f.fingerprint, []).append((a, f))
    ranked = sorted(merged.values(), key=lambda fs: min(
        (SEVERITY_RANK.get(f.severity, 9), -f.score) for _, f in fs))
    out = []
    for group in ranked[:TOP_FINDINGS]:
        first = group[0][1]
        lengths = [v for v in (_current_length(a, f) for a, f in group) if v is not None]
        out.append(FindingFigure(
            role=label(role), fingerprint=first.fingerprint, path=label(first.path),
            kind=first.kind, unit=first.growth.unit,
            severity=max(SEVERITY_LEVEL.get(f.severity, 1) for _, f in group),
            per_second=sum(f.growth.per_hour for _, f in group) / 3600.0,
            length=sum(lengths) if lengths else None,
        ))
    return out
