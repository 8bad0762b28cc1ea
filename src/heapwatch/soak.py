"""Soak verdicts: budgets, ignores, history and the checks CI sees (pure, no I/O but files)."""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass
from typing import Any

from heapwatch import history
from heapwatch.analysis import Analysis
from heapwatch.analysis.budgets import Budget, BudgetResult, check
from heapwatch.errors import UsageError
from heapwatch.report.junit import Case

FAIL_ON = ("leak", "budget", "new", "any")

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_TARGET, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def parse_fail_on(text: str) -> set[str]:
    got = {t.strip() for t in text.split(",") if t.strip()}
    bad = got - set(FAIL_ON)
    if not got or bad:
        raise UsageError(f"invalid --fail-on {text!r}: use a comma list of {', '.join(FAIL_ON)}")
    if "any" in got:
        got |= {"leak", "budget"}
    return got


def config_ignores(directory: str) -> list[str]:
    """``[tool.heapwatch] ignore = [...]`` from pyproject.toml in ``directory``."""
    path = os.path.join(directory, "pyproject.toml")
    if not os.path.exists(path) or sys.version_info < (3, 11):
        return []
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    ignore = data.get("tool", {}).get("heapwatch", {}).get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise UsageError(f"{path}: [tool.heapwatch] ignore must be a list of strings")
    return ignore


def ignored(f: dict[str, Any], patterns: list[str]) -> bool:
    fields = [f.get("path") or "", f.get("type") or "", f.get("site") or "", f.get("title", "")]
    return any(fnmatch.fnmatchcase(v, p) for p in patterns for v in fields if v)


@dataclass
class Outcome:
    passed: bool
    failures: list[str]
    budget_results: list[BudgetResult]
    cases: list[Case]


def judge(a: Analysis, budgets: list[Budget], fail_on: set[str], ignore: list[str],
          history_path: str | None, min_window: float, service: str = "") -> Outcome:
    """Apply ignores, history and budgets to ``a`` (filling its soak fields)."""
    findings = [f.as_dict() for f in a.findings]
    a.ignored = {f["fingerprint"] for f in findings if ignored(f, ignore)}
    if history_path:
        cmp = history.compare(history_path, findings, service)
        a.statuses = cmp.status
        a.history = {**cmp.as_dict(), "previous_rate": cmp.previous_rate}
    results = check(a, budgets, min_window)
    a.budgets = [r.as_dict() for r in results]
    serious = [f for f in a.findings
               if f.severity in ("high", "medium") and f.fingerprint not in a.ignored]
    failures: list[str] = []
    cases: list[Case] = []
    leak_case = Case("leak verdict", "heapwatch.leak")
    if "leak" in fail_on or "new" in fail_on:
        relevant = serious if "leak" in fail_on else [
            f for f in serious if a.statuses.get(f.fingerprint, "new") == "new"]
        if relevant:
            first = relevant[0]
            what = "new leak" if "leak" not in fail_on else "leak"
            failures.append(f"{what}: {first.title}")
            details = "\n\n".join(f"{f.id} {f.title}\n{f.evidence}"
                                  + (f"\nsite: {f.site}" if f.site else "") for f in relevant)
            leak_case = Case("leak verdict", "heapwatch.leak", failure=first.title,
                             details=details)
    else:
        leak_case = Case("leak verdict", "heapwatch.leak", skipped="not in --fail-on")
    if a.verdict == "inconclusive" and leak_case.failure is None:
        leak_case = Case("leak verdict", "heapwatch.leak",
                         skipped=f"inconclusive: {a.verdict_reason}")
    cases.append(leak_case)
    for r in results:
        name = f"{r.budget} ({r.scope})"
        if r.status == "fail" and "budget" in fail_on:
            failures.append(f"budget: {r.message} ({r.scope})")
            cases.append(Case(name, "heapwatch.budget", failure=r.message, details=r.message))
        elif r.status == "skipped":
            cases.append(Case(name, "heapwatch.budget", skipped=r.message))
        else:
            cases.append(Case(name, "heapwatch.budget"))
    return Outcome(not failures, failures, results, cases)
