"""Cases 21 and 22: attach under stress.

21. Two attaches to one process at the same instant: one wins, the other is refused
    with a one-line reason that names the other attach (a lock per target, held until the
    agent checked in; then the agent's registry entry answers).
22. ``heapwatch attach`` killed with SIGKILL while it injects, or while it records: its
    guard process has lldb detach and quit after the command in progress (killing the
    tracer mid-call would kill the target), continues the target if it was left stopped,
    stops an agent that already started, and removes the private directory. No stopped
    target, no orphaned lldb, no agent left behind.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from faultkit import proc_state, proc_status, spawn, wait_for, write

from heapwatch.store import open_run
from procs import reap

PYENV = os.path.expanduser("~/.pyenv/versions")
TARGET = """
    import signal, sys, threading, time

    class Wake(Exception):
        pass

    def wake(signum, frame):
        raise Wake

    signal.signal(signal.SIGUSR1, wake)
    print("ready", flush=True)
    try:
        time.sleep(600)
    except Wake:
        pass
    # An agent told to stop replies, then its thread ends: give a thread that is ending
    # time to end (a join, not a sleep); one that was never stopped is still listed.
    for t in threading.enumerate():
        if t is not threading.main_thread():
            t.join(10)
    print("woke", sorted(t.name for t in threading.enumerate()), flush=True)
"""


def python311() -> str:
    found = sorted(glob.glob(os.path.join(PYENV, "3.11.*", "bin", "python")))
    if not found or shutil.which("lldb") is None:
        pytest.skip("needs CPython 3.11 from pyenv and lldb")
    return found[-1]


@pytest.fixture
def target(workdir: str) -> Iterator[subprocess.Popen[str]]:
    script = write(os.path.join(workdir, "target.py"), TARGET)
    proc = subprocess.Popen([python311(), script], env=env_for(workdir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.communicate()


def env_for(workdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XDG_RUNTIME_DIR")}
    return dict(env, TMPDIR=workdir)


def finish(target: subprocess.Popen[str]) -> tuple[int, str, str]:
    os.kill(target.pid, signal.SIGUSR1)
    out, err = target.communicate(timeout=60)
    return target.returncode, out, err


def tracer(pid: int) -> int:
    return int(proc_status(pid, "TracerPid") or 0)


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def leftovers(workdir: str) -> list[str]:
    return [n for n in os.listdir(workdir) if n.startswith("heapwatch-attach-")]


def attach(pid: int, out: str, workdir: str, *extra: str) -> subprocess.Popen[str]:
    return spawn("attach", str(pid), "--interval", "0.2", "--out", out, *extra,
                 env=env_for(workdir))


def test_case21_two_attaches_at_the_same_instant(target: subprocess.Popen[str],
                                                 workdir: str) -> None:
    runs = [os.path.join(workdir, name) for name in ("a", "b")]
    procs = [attach(target.pid, run, workdir) for run in runs]
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs), 120, "one attach to end")
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        _, err = loser.communicate(timeout=10)
        assert loser.returncode == 2, err
        lines = err.strip().splitlines()
        assert "Traceback" not in err and lines[-1].startswith("heapwatch: error: "), err
        reason = lines[-1].removeprefix("heapwatch: error: ")
        print(f"attach race: the loser was told {reason!r}")
        assert reason.startswith((
            f"another heapwatch attach (heapwatch process {winner.pid}) is attaching to process "
            f"{target.pid} right now",
            f"a heapwatch agent already runs in process {target.pid} (recording to ")), reason
        assert winner.stderr is not None
        started = [winner.stderr.readline() for _ in range(2)]
        assert any("agent started" in line for line in started), started
        stop = subprocess.run([sys.executable, "-m", "heapwatch", "stop", str(target.pid)],
                              env=env_for(workdir), capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr
        _, rest = winner.communicate(timeout=120)
        assert winner.returncode == 0, rest
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert finish(target) == (0, "woke ['MainThread']\n", "")


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.3])
def test_case22_sigkill_of_attach_while_injecting(delay: float, target: subprocess.Popen[str],
                                                  workdir: str) -> None:
    hw = attach(target.pid, os.path.join(workdir, "run"), workdir)
    try:
        wait_for(lambda: tracer(target.pid) != 0 or hw.poll() is not None, 120,
                 "lldb to attach to the target")
        server = tracer(target.pid)
        client = int(proc_status(server, "PPid") or 0) if server else 0
        time.sleep(delay)  # not a handshake: the point is to land anywhere in the injection
        hw.kill()
        hw.communicate()
    finally:
        reap(hw)
    wait_for(lambda: tracer(target.pid) == 0 and proc_state(target.pid) not in ("T", "t"), 120,
             "the target to be detached and running")
    wait_for(lambda: not (server and alive(server)) and not (client and alive(client)), 120,
             "lldb to quit")
    wait_for(lambda: leftovers(workdir) == [], 120, "the guard to clean up")
    assert finish(target) == (0, "woke ['MainThread']\n", "")


def test_case22_sigkill_of_attach_while_recording(target: subprocess.Popen[str],
                                                  workdir: str) -> None:
    out = os.path.join(workdir, "run")
    hw = attach(target.pid, out, workdir)
    try:
        assert hw.stderr is not None
        lines = [hw.stderr.readline() for _ in range(2)]
        assert any("agent started" in line for line in lines), lines
        hw.kill()
        hw.communicate()
    finally:
        reap(hw)
    wait_for(lambda: leftovers(workdir) == [], 120, "the guard to stop the agent")
    stopped = open_run(out).meta["agent_stopped"]
    assert stopped["reason"] == "heapwatch-died"
    assert finish(target) == (0, "woke ['MainThread']\n", "")
