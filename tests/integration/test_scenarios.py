"""Every scenario under heapwatch run, checked against its expected.json."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
from helpers import SCENARIOS, heapwatch, marker_line, report

NAMES = sorted(d for d in os.listdir(SCENARIOS)
               if os.path.exists(os.path.join(SCENARIOS, d, "expected.json")))


def test_there_are_scenarios() -> None:
    assert len(NAMES) >= 6
    verdicts = set()
    for n in NAMES:
        with open(os.path.join(SCENARIOS, n, "expected.json"), encoding="utf-8") as f:
            verdicts.add(json.load(f)["verdict"])
    assert verdicts == {"leak", "no-leak"}


def _diagnosis(out: str, rep: dict[str, Any]) -> str:
    """What the analysis saw, for a verdict that is not the expected one: the report's notes
    and the target's activity per interval, which decides an idle tail."""
    from heapwatch.analysis import findings
    from heapwatch.analysis.series import build, main_pid
    from heapwatch.store import open_run

    run = open_run(os.path.join(out, "run.sqlite"))
    ser = build(run, main_pid(run))
    xs, rates, unit = findings.activity(ser)
    acts = " ".join(f"{x:.1f}:{r:.3g}" for x, r in zip(xs, rates, strict=True))
    return (f"notes: {rep.get('notes')}\nidle tail: {findings.idle_tail(ser, run.marks)}\n"
            f"activity ({unit} per s): {acts}\nagent: {rep.get('agent')}\ntrace: {rep.get('trace')}")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_scenario(name: str, tmp_path: Any) -> None:
    here = os.path.join(SCENARIOS, name)
    with open(os.path.join(here, "expected.json"), encoding="utf-8") as f:
        expected = json.load(f)
    if expected.get("needs_native"):
        from heapwatch.agent import core

        mod, why = core.load_native()  # the target runs this interpreter, this environment
        if mod is None:
            pytest.skip(f"{expected['needs_native']}, and it cannot run here: {why}")
    cmd = [sys.executable if a == "python" else a for a in expected["command"]]
    out = str(tmp_path / "run")
    # 40 snapshots (a count, not 20 s of clock: a busy machine stretches the interval)
    proc = heapwatch("run", "--interval", "0.5", "--snapshots", "40", "--out", out, "--", *cmd,
                     cwd=here, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rep = report(out)
    serious = [f for f in rep["findings"] if f["severity"] in ("high", "medium")]
    summary = json.dumps([(f["kind"], f["title"], f["site"]) for f in rep["findings"][:5]],
                         indent=1)
    if rep["verdict"] != expected["verdict"]:
        summary += "\n" + _diagnosis(out, rep)
    assert rep["verdict"] == expected["verdict"], summary
    for tail in expected.get("not_flagged", []):
        assert not any((f.get("path") or "").endswith(tail) for f in serious), summary
    if expected["verdict"] != "leak":
        return
    first = rep["findings"][0]
    assert first["kind"] == expected["kind"], summary
    if "path_endswith" in expected:
        assert (first["path"] or "").endswith(expected["path_endswith"]), summary
    if "site_marker" not in expected:
        return
    site_file = os.path.normpath(os.path.join(here, expected["site_marker"]))
    line = marker_line(site_file, "# LEAK-SITE")
    assert first["site"] is not None, summary
    filename, _, lineno = first["site"].rpartition(":")
    assert filename.endswith(os.path.basename(site_file)), summary
    if not (sys.version_info[:2] == (3, 11) and expected.get("site_needs_instance_trace")):
        assert int(lineno) == line, summary
