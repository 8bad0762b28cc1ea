"""heapwatch attach on real processes, on every CPython installed here.

Each target prints ``ready`` (a handshake, never a sleep), then parks its main thread in
one of four states: sleeping, a busy Python loop, accept() on a loopback socket, joining
24 threads. heapwatch attaches, records, stops the agent; then the test lets the target
finish its own work and checks that it exits 0 with exactly its own output.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ROOT, SCENARIOS, heapwatch, report

from heapwatch.store import open_run

PYENV = os.path.expanduser("~/.pyenv/versions")
PY314_TOOL = os.path.join(os.path.dirname(ROOT), "shared", "tools", "python3.14")
MINORS = (10, 11, 12, 13, 14)
MODES = ("sleep", "busy", "accept", "join")

TARGET = textwrap.dedent("""
    import os, signal, socket, sys, threading, time

    mode, side = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else os.devnull)

    def on_stdin(event):
        sys.stdin.readline()
        event.set()

    def released():
        go = threading.Event()
        threading.Thread(target=on_stdin, args=(go,), name="stdin", daemon=True).start()
        return go

    class Wake(Exception):
        pass

    def wake(signum, frame):
        raise Wake

    def timer(go):
        worst, last = 0.0, time.perf_counter()
        while not go.is_set():
            now = time.perf_counter()
            if now - last > worst:
                worst = now - last
            last = now
        with open(side, "w") as f:
            f.write(repr(worst))

    if mode == "sleep":
        signal.signal(signal.SIGUSR1, wake)
        print("ready", flush=True)
        try:
            time.sleep(600)
        except Wake:
            pass
        print("woke", flush=True)
    elif mode == "busy":  # a tight loop on the main thread, which measures its longest gap
        go = released()
        print("ready", flush=True)
        timer(go)
        print("busy done", flush=True)
    elif mode == "accept":
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        print("ready", srv.getsockname()[1], flush=True)
        conn, _ = srv.accept()
        data = conn.recv(64).decode()
        conn.close()
        srv.close()
        print("accepted", data, flush=True)
    elif mode == "join":
        go = released()
        threads = [threading.Thread(target=go.wait) for _ in range(24)]
        for t in threads:
            t.start()
        print("ready", flush=True)
        for t in threads:
            t.join()
        print("joined", len(threads), flush=True)
    elif mode == "native":  # the main thread hashes without the GIL, outside any syscall
        import hashlib
        go = released()
        big = b"x" * (128 << 20)
        print("ready", flush=True)
        while not go.is_set():
            hashlib.sha256(big).digest()
        print("hashed", flush=True)
    elif mode == "gil":  # the main thread blocks in read() and keeps the GIL
        import ctypes
        buf = ctypes.create_string_buffer(8)
        print("ready", flush=True)
        ctypes.PyDLL(None).read(0, buf, 1)
        print("read", buf.value.decode(), flush=True)
    elif mode == "state":  # what heapwatch left behind, in the target's own words
        import tracemalloc
        go = released()
        print("ready", flush=True)
        while not go.wait(0.05):
            pass
        names = sorted(t.name for t in threading.enumerate() if t.name != "stdin")
        print("tracing", tracemalloc.is_tracing(), "threads", names, flush=True)
    elif mode == "timer-sleep":  # the main thread sleeps; another thread measures
        signal.signal(signal.SIGUSR1, wake)
        go = threading.Event()
        t = threading.Thread(target=timer, args=(go,))
        t.start()
        print("ready", flush=True)
        try:
            time.sleep(600)
        except Wake:
            pass
        go.set()
        t.join()
        print("timer done", flush=True)
""")

EXPECTED = {
    "sleep": ["ready", "woke"],
    "busy": ["ready", "busy done"],
    "accept": ["ready PORT", "accepted hello"],
    "join": ["ready", "joined 24"],
    "native": ["ready", "hashed"],
    "gil": ["ready", "read g"],
    "state": ["ready", "tracing False threads ['MainThread']"],
    "timer-sleep": ["ready", "timer done"],
}


@functools.cache
def python(minor: int) -> str | None:
    """The interpreter for 3.<minor>, or None; 3.14 runs through the shared tool."""
    if minor == 14:
        if not os.path.exists(PY314_TOOL):
            return None
        try:
            out = subprocess.run([PY314_TOOL, "-c", "import sys; print(sys.version_info[1])"],
                                 capture_output=True, text=True, timeout=600).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        return PY314_TOOL if out.strip() == "14" else None
    found = sorted(glob.glob(os.path.join(PYENV, f"3.{minor}.*", "bin", "python")))
    return found[-1] if found else None


def need(minor: int) -> str:
    exe = python(minor)
    if exe is None:
        where = PY314_TOOL if minor == 14 else f"{PYENV}/3.{minor}.*"
        pytest.skip(f"no CPython 3.{minor} here ({where})")
    if minor < 14 and shutil.which("lldb") is None:
        pytest.skip("lldb is not installed (apt-get install -y lldb)")
    return exe


class Target:
    """A target process and the way to let it finish."""

    def __init__(self, exe: str, mode: str, cwd: str, env: dict[str, str],
                 side: str | None = None) -> None:
        script = os.path.join(cwd, "target.py")
        if not os.path.exists(script):
            with open(script, "w", encoding="utf-8") as f:
                f.write(TARGET)
        self.mode = mode
        self.proc = subprocess.Popen([exe, script, mode, *([side] if side else [])], cwd=cwd,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.ready = self.proc.stdout.readline().strip()
        assert self.ready.startswith("ready"), self.proc.stderr.read() if self.proc.stderr else ""
        self.pid = self.proc.pid

    def threads(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="utf-8") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))

    def release(self) -> None:
        if self.mode in ("sleep", "timer-sleep"):
            os.kill(self.pid, signal.SIGUSR1)
        elif self.mode == "accept":
            port = int(self.ready.split()[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"hello")
        else:
            assert self.proc.stdin is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()

    def finish(self) -> tuple[int, list[str], str]:
        self.release()
        out, err = self.proc.communicate(timeout=60)
        lines = [self.ready.split()[0] + (" PORT" if self.mode == "accept" else "")]
        return self.proc.returncode, lines + out.splitlines(), err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def workdir() -> Iterator[str]:
    """A short private directory (a Unix socket path inside it must stay < 108 bytes),
    used as TMPDIR by heapwatch and the target alike."""
    path = tempfile.mkdtemp(prefix="hwat-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def env_for(workdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TMPDIR"] = workdir
    env["XDG_RUNTIME_DIR"] = workdir  # where the registry goes (/run for root otherwise)
    return env


def attach(pid: int, out: str, env: dict[str, str], *extra: str, duration: str = "1",
           interval: str = "0.2") -> subprocess.CompletedProcess[str]:
    args = ["attach", str(pid), "--out", out, "--interval", interval]
    if duration:
        args += ["--duration", duration]
    return heapwatch(*args, *extra, env=env, timeout=180)


def py_args(minor: int) -> tuple[str, ...]:
    return ("--python", PY314_TOOL) if minor == 14 else ()


def wait_threads(target: Target, want: int) -> int:
    deadline = time.monotonic() + 10
    n = target.threads()
    while n != want and time.monotonic() < deadline:
        time.sleep(0.05)
        n = target.threads()
    return n


def leftovers(workdir: str) -> list[str]:
    return sorted(n for n in os.listdir(workdir) if n.startswith("heapwatch-attach-"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("minor", MINORS)
def test_attach_records_and_leaves_the_target_as_it_was(minor: int, mode: str,
                                                        workdir: str) -> None:
    exe = need(minor)
    env = env_for(workdir)
    side = os.path.join(workdir, "gap")
    target = Target(exe, mode, workdir, env, side=side)
    try:
        before = target.threads()
        out = os.path.join(workdir, "run")
        proc = attach(target.pid, out, env, *py_args(minor))
        assert proc.returncode == 0, proc.stderr
        assert "agent started" in proc.stderr and "keeps running" in proc.stderr, proc.stderr
        assert wait_threads(target, before) == before, "a heapwatch thread is still running"
        code, lines, err = target.finish()
    finally:
        target.kill()
    assert (code, lines, err) == (0, EXPECTED[mode], "")
    run = open_run(out)
    # the first and the final snapshot at least: a slow snapshot stretches the interval
    reasons = [s.reason for s in run.agent_snapshots]
    assert len(reasons) >= 2 and (reasons[0], reasons[-1]) == ("start", "stop"), reasons
    assert {s.pid for s in run.agent_snapshots} == {target.pid}
    assert run.meta["agent_stopped"]["reason"] == "cli"
    log = run.meta["attach"]
    assert log["state"] == "ended" and log["pid"] == target.pid and log["user"]
    assert log["method"] in ("lldb", "remote-exec") and log["time"]
    assert run.meta["agent"]["python"].startswith(f"3.{minor}.")
    if minor < 14:
        assert log["method"] == "lldb"
        assert log["how"] == ("pending-call" if mode == "busy" else "new-thread")
    elif mode == "busy":
        assert log["method"] == "remote-exec" and "falling back" not in proc.stderr
    else:  # blocked main thread: sys.remote_exec waits, lldb takes over and says so
        assert log["method"] == "lldb" and "falling back to lldb" in proc.stderr
        assert log["attempts"][0]["withdrawn"] is True  # no script left pending
    assert report(out)["agent"]["checked_in"] is True
    assert leftovers(workdir) == []
    if mode == "busy":
        with open(side, encoding="utf-8") as f:
            log_pause(minor, "busy", log, float(f.read()))


@pytest.mark.slow
def test_mark_stop_and_a_second_attach_against_an_attached_agent(workdir: str) -> None:
    exe = need(11)
    env = env_for(workdir)
    target = Target(exe, "sleep", workdir, env)
    out = os.path.join(workdir, "run")
    first = subprocess.Popen([sys.executable, "-m", "heapwatch", "attach", str(target.pid),
                              "--interval", "0.2", "--out", out], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        lines = []
        for line in first.stderr:
            lines.append(line)
            if "agent started" in line:
                break
        assert "agent started" in lines[-1], "".join(lines)
        second = attach(target.pid, os.path.join(workdir, "run2"), env)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"heapwatch: error: a heapwatch agent already runs in process {target.pid} "
            f"(recording to {out}): follow it with 'heapwatch report {out}', end it with "
            f"'heapwatch stop {target.pid}'"]
        assert not os.path.exists(os.path.join(workdir, "run2"))
        mark = heapwatch("mark", str(target.pid), "load", env=env)
        assert mark.returncode == 0, mark.stderr
        stop = heapwatch("stop", str(target.pid), env=env)
        assert stop.returncode == 0, stop.stderr
        _, rest = first.communicate(timeout=120)
        assert first.returncode == 0, "".join(lines) + rest
        assert "agent stopped by 'heapwatch stop'" in rest
        code, got, err = target.finish()
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
        target.kill()
    assert (code, got, err) == (0, EXPECTED["sleep"], "")
    run = open_run(out)
    assert [m.phase for m in run.marks] == ["load"]
    assert run.meta["agent_stopped"]["reason"] == "cli"


@pytest.mark.slow
def test_an_agent_started_in_process_is_found_by_the_loader(workdir: str) -> None:
    """The target's agent registered where heapwatch does not look (another TMPDIR): the
    loader itself finds the running agent and refuses to start a second one."""
    exe = need(12)
    elsewhere = os.path.join(workdir, "elsewhere")
    os.mkdir(elsewhere)
    env = dict(env_for(workdir), PYTHONPATH=os.path.join(ROOT, "src"), TMPDIR=elsewhere,
               XDG_RUNTIME_DIR=elsewhere)
    own = os.path.join(workdir, "own")
    script = os.path.join(workdir, "api_target.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(f"""
            import sys, heapwatch
            heapwatch.start(out={own!r}, interval=0.5)
            print("ready", flush=True)
            sys.stdin.readline()
            heapwatch.stop()
            print("bye", flush=True)
        """))
    with subprocess.Popen([exe, script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=workdir) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            got = attach(proc.pid, os.path.join(workdir, "run"), env_for(workdir))
            out, err = proc.communicate("go\n", timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert one_line_error(got) == (
        f"a heapwatch agent already runs in process {proc.pid} (recording to {own}): end it "
        f"with 'heapwatch stop {proc.pid}' before attaching again")
    assert (proc.returncode, out, err) == (0, "bye\n", "")


@pytest.mark.slow
@pytest.mark.parametrize("minor", [11, 14])
def test_after_stop_no_thread_and_no_tracing_is_left(minor: int, workdir: str) -> None:
    """--trace on: the agent starts tracemalloc, and stops it at the end; its thread ends
    (and no _DummyThread stays behind for the debugger's thread)."""
    exe = need(minor)
    env = env_for(workdir)
    target = Target(exe, "state", workdir, env)
    try:
        proc = attach(target.pid, os.path.join(workdir, "run"), env, "--trace", "on",
                      *py_args(minor))
        assert proc.returncode == 0, proc.stderr
        code, lines, err = target.finish()
    finally:
        target.kill()
    assert (code, lines, err) == (0, EXPECTED["state"], "")
    assert open_run(os.path.join(workdir, "run")).meta["agent"]["trace"] == "on"


@pytest.mark.slow
def test_a_main_thread_in_native_code_gets_the_agent_deferred(workdir: str) -> None:
    exe = need(12)
    env = env_for(workdir)
    target = Target(exe, "native", workdir, env)
    try:
        proc = attach(target.pid, os.path.join(workdir, "run"), env)
        assert proc.returncode == 0, proc.stderr
        code, lines, err = target.finish()
    finally:
        target.kill()
    assert "the agent starts when it next runs Python code" in proc.stderr
    assert open_run(os.path.join(workdir, "run")).meta["attach"]["how"] == "deferred"
    assert (code, lines, err) == (0, EXPECTED["native"], "")


@pytest.mark.slow
def test_an_agent_that_cannot_start_in_time_is_called_off(workdir: str) -> None:
    """The main thread holds the GIL in a blocking C call: the pending call waits. After
    --start-timeout heapwatch takes the claim, so the call is a no-op when it runs."""
    exe = need(11)
    env = env_for(workdir)
    target = Target(exe, "gil", workdir, env)
    out = os.path.join(workdir, "run")
    try:
        proc = attach(target.pid, out, env, "--start-timeout", "1s")
        code, lines, err = target.finish()
    finally:
        target.kill()
    assert one_line_error(proc) == (
        f"the agent did not start in process {target.pid} within 1s (its main thread did not "
        f"reach Python code); nothing was left running in it: try again, or with a longer "
        f"--start-timeout")
    log = open_run(out).meta["attach"]
    assert log["state"] == "failed" and "did not start" in log["error"]
    assert (code, lines, err) == (0, EXPECTED["gil"], "")
    assert leftovers(workdir) == []


@pytest.mark.slow
def test_3_14_without_an_interpreter_for_remote_exec_uses_lldb(workdir: str) -> None:
    """The shared 3.14 runs as 'ld.so python3.14': its /proc/PID/exe is the dynamic loader,
    not an interpreter heapwatch could call sys.remote_exec from."""
    exe = need(14)
    if shutil.which("lldb") is None:
        pytest.skip("lldb is not installed (apt-get install -y lldb)")
    env = env_for(workdir)
    target = Target(exe, "busy", workdir, env, side=os.path.join(workdir, "gap"))
    try:
        proc = attach(target.pid, os.path.join(workdir, "run"), env)
        assert proc.returncode == 0, proc.stderr
        code, lines, err = target.finish()
    finally:
        target.kill()
    assert ("no Python 3.14 interpreter to call sys.remote_exec with (the target's executable "
            "is ld-linux-x86-64.so.2): give one with --python: using lldb instead") in proc.stderr
    log = open_run(os.path.join(workdir, "run")).meta["attach"]
    assert (log["method"], log["how"]) == ("lldb", "pending-call")
    assert (code, lines, err) == (0, EXPECTED["busy"], "")


@pytest.mark.slow
def test_remote_exec_alone_withdraws_a_request_the_main_thread_never_ran(workdir: str) -> None:
    exe = need(14)
    env = env_for(workdir)
    target = Target(exe, "sleep", workdir, env)
    out = os.path.join(workdir, "run")
    try:
        proc = attach(target.pid, out, env, "--method", "remote-exec", "--python", PY314_TOOL,
                      "--start-timeout", "1s")
        code, lines, err = target.finish()  # the signal wakes it: nothing of ours runs
    finally:
        target.kill()
    assert one_line_error(proc).startswith(
        f"the agent did not start in process {target.pid} within 1s")
    assert open_run(out).meta["attach"]["attempts"][0]["withdrawn"] is True
    assert (code, lines, err) == (0, EXPECTED["sleep"], "")
    assert leftovers(workdir) == []


def follow(pid: int, out: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """Start 'heapwatch attach' without --duration; return once the agent started."""
    proc = subprocess.Popen([sys.executable, "-m", "heapwatch", "attach", str(pid), "--interval",
                             "0.15", "--out", out], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "agent started" in line or "error" in line:
            break
    assert "agent started" in lines[-1], "".join(lines)
    return proc, lines


@pytest.mark.slow
def test_ctrl_c_ends_the_recording_and_the_process_keeps_running(workdir: str) -> None:
    exe = need(13)
    env = env_for(workdir)
    target = Target(exe, "sleep", workdir, env)
    before = target.threads()
    proc, lines = follow(target.pid, os.path.join(workdir, "run"), env)
    try:
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
        assert proc.returncode == 130, "".join(lines) + rest
        assert f"agent stopped on Ctrl-C; process {target.pid} keeps running" in rest
        assert wait_threads(target, before) == before
        code, got, err = target.finish()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        target.kill()
    assert (code, got, err) == (0, EXPECTED["sleep"], "")
    assert report(os.path.join(workdir, "run"))["agent"]["stopped"] == "cli"


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.3, 0.6])
def test_ctrl_c_while_attaching_leaves_nothing_behind(delay: float, workdir: str) -> None:
    """Ctrl-C at any moment of the attach (lldb running, code placed, agent starting):
    the process is detached and continued, and any agent that did start is stopped."""
    exe = need(12)
    env = env_for(workdir)
    target = Target(exe, "sleep", workdir, env)
    before = target.threads()
    proc = subprocess.Popen([sys.executable, "-m", "heapwatch", "attach", str(target.pid),
                             "--interval", "0.15", "--out", os.path.join(workdir, "run")],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and "attaching to" in proc.stderr.readline()
        time.sleep(delay)  # not a handshake: the point is to land anywhere in the attach
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
        assert proc.returncode == 130, rest
        assert "Traceback" not in rest
        assert wait_threads(target, before) == before
        code, got, err = target.finish()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        target.kill()
    assert (code, got, err) == (0, EXPECTED["sleep"], "")
    assert leftovers(workdir) == []


@pytest.mark.slow
def test_a_process_that_exits_while_recorded_still_gets_its_report(workdir: str) -> None:
    exe = need(10)
    env = env_for(workdir)
    target = Target(exe, "join", workdir, env)
    proc, lines = follow(target.pid, os.path.join(workdir, "run"), env)
    try:
        code, got, err = target.finish()
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        target.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "agent stopped because the process exited" in rest
    assert (code, got, err) == (0, EXPECTED["join"], "")
    rep = report(os.path.join(workdir, "run"))
    assert rep["agent"]["stopped"] == "exit" and rep["run"]["snapshots"] >= 2


# -- errors: one line, exit 2, no traceback -------------------------------------------------

def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The error line; before it at most heapwatch's own 'attaching to' notice."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith("heapwatch: error: "), \
        proc.stderr
    assert all(line.startswith("heapwatch: attaching to") for line in lines[:-1]), proc.stderr
    return lines[-1].removeprefix("heapwatch: error: ")


def test_no_such_pid(workdir: str) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    msg = one_line_error(attach(dead.pid, os.path.join(workdir, "r"), env_for(workdir)))
    assert msg == f"no process {dead.pid}: check the pid (ps -e or pgrep)"
    assert not os.path.exists(os.path.join(workdir, "r"))


def test_not_a_python_process(workdir: str) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        msg = one_line_error(attach(proc.pid, os.path.join(workdir, "r"), env_for(workdir)))
    finally:
        proc.kill()
        proc.wait()
    assert msg == f"process {proc.pid} (sleep) is not a Python process: no Python runtime is " \
                  f"loaded in it"


@pytest.mark.parametrize("version", ["3.6", "3.8", "3.9"])
def test_python_too_old(version: str, workdir: str) -> None:
    found = sorted(glob.glob(os.path.join(PYENV, f"{version}.*", "bin", "python")))
    if not found:
        pytest.skip(f"no CPython {version} in {PYENV}")
    with subprocess.Popen([found[-1], "-c", "import time; print('ready', flush=True); "
                           "time.sleep(60)"], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            msg = one_line_error(attach(proc.pid, os.path.join(workdir, "r"), env_for(workdir)))
        finally:
            proc.kill()
    assert msg == (f"process {proc.pid} runs Python {version}, which is too old: heapwatch's "
                   f"agent needs Python 3.10 or newer")


def test_no_usable_debugger(workdir: str) -> None:
    exe = python(11)
    if exe is None:
        pytest.skip("no CPython 3.11 here")
    target = Target(exe, "sleep", workdir, env_for(workdir))
    empty = os.path.join(workdir, "bin")
    os.mkdir(empty)
    try:
        no_lldb = attach(target.pid, os.path.join(workdir, "r"),
                         dict(env_for(workdir), PATH=empty))
        gdb = attach(target.pid, os.path.join(workdir, "r"), env_for(workdir), "--method", "gdb")
        code, lines, err = target.finish()
    finally:
        target.kill()
    assert one_line_error(no_lldb) == ("no debugger to attach with: install lldb "
                                       "(Debian/Ubuntu: apt-get install -y lldb)")
    msg = one_line_error(gdb)
    assert "gdb" in msg and msg.endswith("use --method lldb (install lldb (Debian/Ubuntu: "
                                         "apt-get install -y lldb))")
    assert (code, lines, err) == (0, EXPECTED["sleep"], "")


def test_remote_debugging_disabled(workdir: str) -> None:
    exe = python(14)
    if exe is None:
        pytest.skip(f"no CPython 3.14 ({PY314_TOOL} cannot run)")
    env = dict(env_for(workdir), PYTHON_DISABLE_REMOTE_DEBUG="1")
    target = Target(exe, "busy", workdir, env)
    try:
        msg = one_line_error(attach(target.pid, os.path.join(workdir, "r"), env_for(workdir),
                                    "--python", PY314_TOOL))
        explicit = one_line_error(attach(target.pid, os.path.join(workdir, "r"),
                                         env_for(workdir), "--method", "remote-exec",
                                         "--python", PY314_TOOL))
        code, lines, err = target.finish()
    finally:
        target.kill()
    assert msg == (f"remote debugging is disabled in process {target.pid} "
                   f"(PYTHON_DISABLE_REMOTE_DEBUG is set in its environment): heapwatch respects "
                   f"that; --method lldb injects through the debugger instead")
    assert "remote debugging is disabled" in explicit
    assert (code, lines, err) == (0, EXPECTED["busy"], "")


def test_as_root_another_users_process_needs_force(workdir: str) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root, setpriv and /usr/bin/python3")
    with subprocess.Popen([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                           "/usr/bin/python3", "-c",
                           "import time; print('ready', flush=True); time.sleep(60)"],
                          stdout=subprocess.PIPE, text=True, cwd="/") as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            msg = one_line_error(attach(proc.pid, os.path.join(workdir, "r"), env_for(workdir)))
        finally:
            proc.kill()
    assert msg.startswith(f"process {proc.pid} belongs to user ") and msg.endswith(
        "as root, heapwatch will not inject code into another user's process unless you add "
        "--force")


# -- the leaking scenario: attach finds what run finds ----------------------------------------

@pytest.mark.slow
def test_attach_and_run_agree_on_a_leaking_scenario(workdir: str) -> None:
    exe = need(11)
    here = os.path.join(SCENARIOS, "pending_tracker")
    env = env_for(workdir)
    wrapped: dict[str, Any] = {}

    def wrap() -> None:
        wrapped["proc"] = heapwatch("run", "--interval", "0.5", "--snapshots", "40", "--out",
                                    os.path.join(workdir, "run"), "--", exe,
                                    "pending_tracker.py", cwd=here, env=env)

    runner = threading.Thread(target=wrap)
    runner.start()
    target = subprocess.Popen([exe, "pending_tracker.py", "--duration", "60"], cwd=here, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline() == "ready\n"
        got = attach(target.pid, os.path.join(workdir, "att"), env, duration="20s",
                     interval="0.5")
        assert got.returncode == 0, got.stderr
        target.terminate()
        _, err = target.communicate(timeout=60)
    finally:
        runner.join()
        if target.poll() is None:
            target.kill()
    assert wrapped["proc"].returncode == 0, wrapped["proc"].stderr
    assert err == ""
    by_run, by_attach = report(os.path.join(workdir, "run")), report(os.path.join(workdir, "att"))
    assert by_attach["verdict"] == by_run["verdict"] == "leak"
    assert by_attach["findings"][0]["path"] == by_run["findings"][0]["path"] \
        == "pending_tracker.TRACKER._pending"


# -- the pause imposed at attach ---------------------------------------------------------------

PAUSE_RUNS = int(os.environ.get("HEAPWATCH_PAUSE_RUNS", "1"))
PAUSE_LOG = os.environ.get("HEAPWATCH_PAUSE_LOG")  # JSON lines, one per attach


def log_pause(minor: int, mode: str, log: dict[str, Any], gap: float) -> None:
    """Print (and with HEAPWATCH_PAUSE_LOG, append) the pause one attach imposed: the
    target's longest gap in a tight timer loop, and how long lldb had it stopped."""
    line = json.dumps({"python": f"3.{minor}", "mode": mode, "method": log["method"],
                       "how": log["how"], "gap_s": round(gap, 4),
                       "stopped_s": log["stopped_s"]})
    print(f"attach pause: {line}")
    if PAUSE_LOG:
        with open(PAUSE_LOG, "a", encoding="utf-8") as f:
            f.write(line + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("minor", MINORS)
def test_pause_at_attach_with_a_sleeping_main_thread(minor: int, workdir: str) -> None:
    """The main thread sleeps (lldb's new-thread method); another thread of the target
    runs a tight timer loop and records its longest gap across the attach. The busy-main
    case is measured by the matrix above (pending call / remote_exec)."""
    exe = need(minor)
    env = env_for(workdir)
    gaps = []
    for i in range(PAUSE_RUNS):
        side = os.path.join(workdir, f"gap{i}")
        target = Target(exe, "timer-sleep", workdir, env, side=side)
        try:
            out = os.path.join(workdir, f"run{i}")
            proc = attach(target.pid, out, env, *py_args(minor), duration="0.5",
                          interval="10s")
            assert proc.returncode == 0, proc.stderr
            code, lines, err = target.finish()
        finally:
            target.kill()
        assert (code, lines, err) == (0, EXPECTED["timer-sleep"], "")
        with open(side, encoding="utf-8") as f:
            gaps.append(float(f.read()))
        log_pause(minor, "sleep", open_run(out).meta["attach"], gaps[-1])
    assert statistics.median(gaps) < 5.0
