"""report.json: the machine interface (DESIGN.md). Keys are added, never renamed."""

from __future__ import annotations

import json
from typing import Any

from heapwatch.analysis import Analysis
from heapwatch.analysis.projection import projection, projection_dict
from heapwatch.model import REPORT_SCHEMA
from heapwatch.rundir import write_file


def _finding(a: Analysis, f: Any) -> dict[str, Any]:
    d: dict[str, Any] = f.as_dict()
    d["status"] = a.statuses.get(f.fingerprint)
    d["ignored"] = f.fingerprint in a.ignored
    spread = a.spread.get(f.fingerprint)
    d["in_processes"] = ({k: v for k, v in spread.items() if k != "sentence"} if spread
                         else None)
    return d


def to_dict(a: Analysis, memory_limit: int | None = None) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "verdict": a.verdict,
        "verdict_reason": a.verdict_reason,
        "run": a.run,
        "findings": [_finding(a, f) for f in a.findings],
        "phases": a.phases,
        "phases_derived": a.phases_derived,
        "phase_comparison": a.phase_comparison,
        "trace": a.trace,
        "agent": a.agent,
        "notes": a.notes,
        "budgets": a.budgets,
        "history": a.history,
        "projection": projection_dict(projection(a, memory_limit)),
        "processes": a.processes,
        "tree": a.tree,
        "target_exit": a.target_exit,
    }


def write_json(a: Analysis, path: str, memory_limit: int | None = None) -> str:
    return write_file(path, json.dumps(to_dict(a, memory_limit), indent=2, sort_keys=False)
                      + "\n")
