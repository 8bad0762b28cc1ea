"""Which census core ran: the agent records it, report.json's agent says it (core,
core_fallback), report.md and report.html show it beside the agent's cost."""

from __future__ import annotations

import os
from typing import Any

from heapwatch.agent import core
from heapwatch.agent.sampler import Agent, AgentConfig
from heapwatch.analysis import analyze
from heapwatch.model import ProcessStat, Snapshot
from heapwatch.report.html import render_html
from heapwatch.report.json_report import to_dict
from heapwatch.report.markdown import render_markdown
from heapwatch.store import RunData, open_run


def run_with(agent_meta: dict[str, Any]) -> RunData:
    snaps = [Snapshot(seq=i + 1, pid=7, t=1000.0 + i, mono=float(i), reason="interval",
                      duration_s=0.01, phase=None, traced=False,
                      process=ProcessStat(rss=50_000_000, fds=8, threads=2),
                      types={"dict": 500}, containers=(), items=())
             for i in range(12)]
    meta = {"run": {"command": ["python", "app.py"], "interval_s": 1.0},
            "agent": {"pid": 7, "trace": "off", "python": "3.11.7", **agent_meta}}
    return RunData(path="/tmp/x/run.sqlite", meta=meta, snapshots=snaps, marks=[])


def test_every_report_says_which_core_ran_and_why() -> None:
    a = analyze(run_with({"core": "python", "core_fallback": "HEAPWATCH_NO_NATIVE is set"}))
    agent = to_dict(a)["agent"]
    assert (agent["core"], agent["core_fallback"]) == ("python", "HEAPWATCH_NO_NATIVE is set")
    assert "- agent core: python (HEAPWATCH_NO_NATIVE is set)" in render_markdown(a)
    assert "python (HEAPWATCH_NO_NATIVE is set)" in render_html(a)
    native = analyze(run_with({"core": "native", "core_fallback": None}))
    assert "- agent core: native\n" in render_markdown(native)


def test_a_run_recorded_before_cores_existed_says_nothing_about_it() -> None:
    a = analyze(run_with({}))
    assert (to_dict(a)["agent"]["core"], to_dict(a)["agent"]["core_fallback"]) == (None, None)
    assert "agent core" not in render_markdown(a)


def test_the_agent_records_the_core_it_ran_on(census_core: str, tmp_path: Any) -> None:
    agent = Agent(AgentConfig(store=os.path.join(str(tmp_path), "run.sqlite"), interval=3600,
                              trace="off"))
    agent.start()
    agent.snapshot()
    agent.stop()
    meta = open_run(str(tmp_path)).meta["agent"]
    assert (meta["core"], meta["core_fallback"]) == (census_core, core.info().fallback)
