"""docs/fleet: the alerting rules pass promtool, and the rules and the dashboard use only
series heapwatch exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from test_findings import run_of
from test_metrics import exposition

from heapwatch.metrics.figures import compute

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "docs", "fleet")
RULES = os.path.join(DOCS, "heapwatch-rules.yml")
DASHBOARD = os.path.join(DOCS, "heapwatch-dashboard.json")
SERIES = re.compile(r"\b(heapwatch_[a-z_]+|process_thread_count)\b")


def exported() -> set[str]:
    run = run_of(40, containers=[("app.TRACKER._pending", "dict", lambda i: 200 + 50 * i)],
                 traced=lambda i: 1_000_000 + 1000 * i)
    names = set()
    for line in exposition(compute(run)).splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_rules_and_dashboard_use_exported_series_only() -> None:
    names = exported()
    assert {"heapwatch_suspect_container_items", "heapwatch_finding_growth_rate",
            "heapwatch_finding_severity", "heapwatch_heap_bytes"} <= names
    with open(RULES, encoding="utf-8") as f:
        rules = f.read()
    with open(DASHBOARD, encoding="utf-8") as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    used = set(SERIES.findall(rules)) | {s for e in exprs for s in SERIES.findall(e)}
    assert used and used <= names, sorted(used - names)


def test_promtool_checks_and_tests_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found (apt-get install prometheus)")
    check = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", "heapwatch-rules.test.yml"], cwd=DOCS,
                          capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0, unit.stdout + unit.stderr
