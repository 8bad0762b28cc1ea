from __future__ import annotations

import pytest
from test_findings import MB, run_of

from heapwatch.analysis import analyze
from heapwatch.analysis.budgets import check, parse_budget
from heapwatch.errors import UsageError
from heapwatch.soak import ignored, parse_fail_on


@pytest.mark.parametrize(("spec", "limit"), [
    ("rss-growth=5MB/h", 5 * MB), ("heap-growth=2MB/h", 2 * MB), ("fds-growth=0/h", 0.0),
    ("threads-max=64", 64.0), ("rss-growth=1MB/min", 60 * MB), ("rss-max=1GB", 1024 * MB),
])
def test_parse(spec: str, limit: float) -> None:
    assert parse_budget(spec).limit == limit


@pytest.mark.parametrize("spec", ["rss", "rss=5MB/h", "rss-growth=5MB", "threads-max=64/h",
                                  "fds-growth=5MB/h", "rss-growth=lots/h", "threads-max=-1"])
def test_parse_rejects(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_budget(spec)


def test_rates_only_over_long_windows_and_max_everywhere() -> None:
    a = analyze(run_of(40, rss=lambda i: 50 * MB + 0.1 * MB * i))  # 40 s at 1 s: +360 MB/h
    results = check(a, [parse_budget("rss-growth=5MB/h"), parse_budget("threads-max=1")],
                    min_window=30)
    by = {(r.budget, r.scope): r for r in results}
    assert by[("rss-growth", "run")].status == "fail"
    assert by[("rss-growth", "run")].value == pytest.approx(360 * MB, rel=0.01)
    assert by[("rss-growth", "baseline")].status == "skipped"  # a few seconds: no rate
    assert by[("threads-max", "run")].status == "fail"  # 2 threads > 1
    assert all(r.status == "pass" for r in check(a, [parse_budget("rss-growth=1GB/h")], 30)
               if r.scope == "run")


def test_fail_on_and_ignore_patterns() -> None:
    assert parse_fail_on("any") == {"any", "leak", "budget"}
    with pytest.raises(UsageError):
        parse_fail_on("leaks")
    f = {"path": "app.CACHE._data", "type": "dict", "site": "app.py:3", "title": "x"}
    assert ignored(f, ["*.CACHE.*"]) and not ignored(f, ["other.*"])
