"""Case 4: a target with more than 1024 open descriptors.

The agent waits on its wake pipe and control socket with poll(), never select() (which
cannot take a descriptor >= FD_SETSIZE): it keeps sampling, ``heapwatch stop PID`` and
``--duration`` work. An agent whose thread died anyway finishes: no control socket, no
registry entry, the error in the report, and no attach is refused because of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from faultkit import SRC, agent_errors, heapwatch, report, write

from heapwatch.agent import current, registry
from heapwatch.agent.sampler import Agent, AgentConfig
from heapwatch.attach import session
from heapwatch.store import open_run

MANY_FDS = """
    import os
    _HELD = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
"""


def env_for(workdir: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XDG_RUNTIME_DIR")}
    return dict(env, TMPDIR=workdir, **extra)


def test_case04_stop_pid_reaches_an_agent_whose_descriptors_are_past_1024(workdir: str) -> None:
    out = os.path.join(workdir, "run")
    script = write(os.path.join(workdir, "api_target.py"), MANY_FDS + f"""
    import sys, heapwatch
    heapwatch.start(out={out!r}, interval=0.05, trace="off")
    print("ready", flush=True)
    sys.stdin.readline()
    print("agent running:", heapwatch.agent.current() is not None, flush=True)
    """)
    with subprocess.Popen([sys.executable, script], env=env_for(workdir, PYTHONPATH=SRC),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            stop = heapwatch("stop", str(proc.pid), env=env_for(workdir), timeout=60)
            rest, err = proc.communicate("go\n", timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert stop.returncode == 0, stop.stderr
    assert (proc.returncode, rest, err) == (0, "agent running: False\n", "")
    run = open_run(out)
    assert run.meta["agent_stopped"]["reason"] == "cli"
    assert len(run.snapshots) >= 2
    assert [e for e in run.events if e[2] == "error"] == []


def test_case04_duration_ends_a_run_whose_target_holds_1100_descriptors(workdir: str) -> None:
    site = os.path.join(workdir, "site")
    os.mkdir(site)
    write(os.path.join(site, "sitecustomize.py"), MANY_FDS)  # runs before the agent starts
    script = write(os.path.join(workdir, "svc.py"), """
        import time
        while True:
            time.sleep(0.05)
    """)
    out = os.path.join(workdir, "run")
    proc = heapwatch("run", "--interval", "0.1", "--duration", "1.5", "--out", out, "--",
                     sys.executable, script, env=env_for(workdir, PYTHONPATH=site), timeout=90)
    assert proc.returncode == 0, proc.stderr
    rep = report(out)
    assert rep["run"]["snapshots"] >= 3 and agent_errors(rep) == []
    assert rep["agent"]["stopped"] == "cli"


def test_case04_an_agent_whose_thread_died_is_gone_for_everyone(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    control = os.path.join(str(tmp_path), "agent.sock")
    died = threading.Event()
    agent = Agent(AgentConfig(store=os.path.join(str(tmp_path), "run.sqlite"), interval=3600.0,
                              trace="off", control=control))

    def broken_loop(resumed: bool = False) -> None:
        died.set()
        raise OSError("the loop failed")

    monkeypatch.setattr(agent, "_loop", broken_loop)
    agent.start()
    assert died.wait(10)
    agent._thread.join(10)  # type: ignore[union-attr]
    assert not agent.running and current() is None
    assert registry.lookup(os.getpid()) is None and not os.path.exists(control)
    rep_errors = [m for _, _, kind, m in open_run(str(tmp_path)).events if kind == "error"]
    assert rep_errors and rep_errors[0].startswith("sampler: OSError at ")
    from heapwatch.analysis import analyze_run

    assert set(rep_errors) <= set(analyze_run(str(tmp_path)).agent["errors"])


def test_case04_a_leftover_registry_entry_does_not_refuse_an_attach(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    registry.register(dead.pid, {"store": "/nowhere/run.sqlite",
                                 "control": os.path.join(str(tmp_path), "gone.sock")})
    session._refuse_second_agent(dead.pid)  # no agent answers: not refused
