"""Wrap a command: start it with the agent's bootstrap, follow it, end it gracefully.

The agent gets into the target through ``sitecustomize`` on ``PYTHONPATH`` (see
``heapwatch/_bootstrap``); the target's children get theirs from the fork hook or the
same bootstrap (``children``), and what has no agent is followed from outside
(``heapwatch.observe``). Ending a run asks every agent for its final snapshot over its
private control socket first, then ends the target with SIGINT, SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import heapwatch
from heapwatch.agent.sampler import AgentConfig
from heapwatch.agent.sites import DEFAULT_SAMPLE_INTERVAL
from heapwatch.api import run_meta
from heapwatch.errors import AgentError, LaunchError, StoreError
from heapwatch.model import Mark
from heapwatch.observe import TreeObserver
from heapwatch.schedule import Phase, start_load, stop_load
from heapwatch.store import STORE_NAME, LiveReader, Writer

RESERVE_BYTES = 1 << 20  # room kept for the last metadata and the reports on a full disk
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(heapwatch.__file__)))


class Interrupted(BaseException):
    """heapwatch itself was asked to stop (Ctrl-C or SIGTERM). Raised by the SIGTERM
    handler wherever the follow loop happens to be: a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way (a psutil call of the
    tree observer) swallows it and leaves the run going."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class LaunchResult:
    run_dir: str
    exit_code: int | None
    ended_by: str  # "exit" | "duration" | "interrupt" | "error"
    checked_in: bool
    no_agent_reason: str | None
    error: str | None = None  # what ended the run early (ended_by "error"): heapwatch exits 2
    store_errors: list[str] = field(default_factory=list)  # heapwatch's own failed writes


def looks_like_python(cmd: list[str]) -> bool:
    """True when the command starts a Python interpreter, directly or by a shebang."""
    exe = shutil.which(cmd[0]) or cmd[0]
    base = os.path.basename(exe)
    if base.startswith(("python", "pypy")):
        return True
    try:
        with open(exe, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def _isolating_flag(cmd: list[str]) -> str | None:
    if not os.path.basename(cmd[0]).startswith(("python", "pypy")):
        return None
    for arg in cmd[1:]:
        if not arg.startswith("-") or arg in ("-m", "-c"):
            break
        for flag in ("I", "E", "S"):
            if arg.startswith("-") and not arg.startswith("--") and flag in arg[1:]:
                return f"-{flag}"
    return None


def check_command(cmd: list[str]) -> None:
    if not cmd:
        raise LaunchError("no command given: put it after --, e.g. heapwatch run -- python app.py")
    if shutil.which(cmd[0]) is None and not os.path.exists(cmd[0]):
        raise LaunchError(f"command not found: {cmd[0]}")


def child_env(config_path: str, children: str = "all") -> dict[str, str]:
    env = dict(os.environ)
    env["HEAPWATCH_CHILDREN"] = children
    orig = env.get("PYTHONPATH")
    env["HEAPWATCH_HAD_PYTHONPATH"] = "1" if orig is not None else "0"
    if orig is not None:
        env["HEAPWATCH_ORIG_PYTHONPATH"] = orig
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + orig if orig else "")
    env["HEAPWATCH_AGENT_CONFIG"] = config_path
    env["HEAPWATCH_PKG_DIR"] = PKG_PARENT
    return env


def send_command(sock_path: str, line: str, timeout: float = 30.0,
                 expect_pid: int | None = None) -> str:
    """Send one command to an agent's control socket; return its reply line. With
    ``expect_pid``, nothing is sent unless that process is the one serving the socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(sock_path)
            if expect_pid is not None:
                _check_peer(s, sock_path, expect_pid)
            s.sendall(line.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise AgentError(f"cannot reach the agent at {sock_path}: {exc.strerror or exc}"
                             ) from None
    return data.decode("utf-8", "replace").strip()


def _check_peer(s: socket.socket, sock_path: str, pid: int) -> None:
    if not hasattr(socket, "SO_PEERCRED"):  # pragma: no cover - Linux has it
        return
    creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    peer_pid, peer_uid, _ = struct.unpack("3i", creds)
    if peer_pid != pid:
        raise AgentError(f"refusing the socket {sock_path}: it is served by process {peer_pid} "
                         f"(uid {peer_uid}), not by the agent in process {pid} (an impostor?)")


def run(
    cmd: list[str],
    run_dir: str,
    interval: float,
    duration: float | None,
    trace: str,
    trace_depth: int,
    status: Callable[[str], None] | None = None,
    notice: Callable[[str], None] | None = None,
    phases: list[Phase] | None = None,
    children: str = "all",
    show_names: bool = False,
    max_snapshots: int | None = None,
    sample_interval: int | None = None,
) -> LaunchResult:
    """Run ``cmd`` under the agent until it exits, ``duration`` passes, the agent has taken
    ``max_snapshots`` snapshots, or the last of ``phases`` ends (their clock starts when
    the agent checks in). ``children``: which child processes get an agent too: ``all``
    (forked and exec'd Python children), ``fork`` (forked ones), ``none``; the others are
    recorded from outside. ``sample_interval``: the sampler's mean bytes between samples
    (None: the agent's default)."""
    check_command(cmd)
    store_path = os.path.join(run_dir, STORE_NAME)
    meta = run_meta(list(cmd), interval, trace, trace_depth, "run", show_names)
    meta["cwd"] = os.getcwd()
    meta["children"] = children
    writer = Writer(store_path, meta={"run": meta}, reserve=RESERVE_BYTES)
    # The run's private files live in a fresh 0700 directory of their own (mkdtemp: made
    # exclusively, never reused): the control sockets, the agent's config, the claim the
    # first Python process takes, and the agents' start errors. A stale one cannot exist.
    sock_dir = tempfile.mkdtemp(prefix="heapwatch-")
    sock_path = os.path.join(sock_dir, "agent.sock")
    config = AgentConfig(store=store_path, interval=interval, trace=trace,
                         trace_depth=trace_depth, control=sock_path, children=children,
                         show_names=show_names,
                         sample_interval=sample_interval or DEFAULT_SAMPLE_INTERVAL)
    config_path = os.path.join(sock_dir, "agent-config.json")
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({k: v for k, v in asdict(config).items() if k != "run_meta"}, f)
    store_errors: list[str] = []

    def store(write: Callable[[], object]) -> None:
        """A failed write of heapwatch's own (a full disk) costs only itself."""
        try:
            write()
        except StoreError as exc:
            if str(exc) not in store_errors:
                store_errors.append(str(exc))

    isolating = _isolating_flag(cmd)
    if notice is not None:
        if isolating:
            notice(f"python {isolating} ignores PYTHONPATH or site: the agent cannot start, "
                   f"only process figures (RSS, fds, threads) will be recorded")
        elif not looks_like_python(cmd):
            notice(f"{cmd[0]} does not look like a Python program: unless it starts Python, "
                   f"only process figures (RSS, fds, threads) will be recorded")
    try:
        proc = subprocess.Popen(cmd, env=child_env(config_path, children))
    except OSError as exc:
        writer.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
        raise LaunchError(f"cannot start {cmd[0]}: {exc.strerror or exc}") from None

    reader = LiveReader(store_path)
    observer = TreeObserver(writer, reader, proc.pid, interval, follow=children != "none")
    started = time.monotonic()
    next_status = started + 1.0
    next_count = started
    checked_in = False
    ended_by = "exit"
    ended_t: float | None = None  # when the target ended by itself
    old_term = signal.getsignal(signal.SIGTERM)

    def _on_term(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, _on_term)
    plan = list(phases or [])
    error: str | None = None
    phase_i = -1
    phase_end = 0.0
    load: subprocess.Popen[bytes] | None = None
    load_env = dict(os.environ)  # heapwatch's own environment: no agent bootstrap in it

    def next_phase(now: float) -> bool:
        nonlocal phase_i, phase_end, load
        stop_load(load)
        load = None
        phase_i += 1
        if phase_i >= len(plan):
            return False
        ph = plan[phase_i]
        phase_end = now + ph.seconds
        if notice is not None:
            notice(f"phase {ph.name} for {ph.seconds:g}s"
                   + (f": {' '.join(ph.command)}" if ph.command else ""))
        load = start_load(ph, load_env)  # first: a phase whose load cannot start is not marked
        from heapwatch.control import broadcast

        replies = broadcast(store_path, f"mark {ph.name}", first=sock_path, timeout=10.0)
        if not any(r.startswith("ok") for _, r in replies):
            # no agent: the mark still goes into the store
            store(lambda: writer.write_mark(Mark(t=time.time(), phase=ph.name, pid=proc.pid,
                                                 source="schedule")))
        return True

    exits = _ExitWatch(proc)
    try:
        try:
            while True:
                if exits.wait(0.1):
                    ended_t = time.time()
                    break
                now = time.monotonic()
                if not checked_in:
                    checked_in = reader.meta("agent") is not None
                store(functools.partial(observer.poll, now))
                if status is not None and now >= next_status:
                    n, rss, top = reader.progress()
                    rss_s = f"{rss / 1048576:.1f} MiB" if rss else "–"
                    status(f"{now - started:6.1f}s  snapshots {n}  RSS {rss_s}"
                           + (f"  top grower {top}" if top else ""))
                    next_status = now + 1.0
                if duration is not None and now - started >= duration:
                    ended_by = "duration"
                    break
                if max_snapshots is not None and checked_in and now >= next_count:
                    next_count = now + 0.2
                    if reader.progress()[0] >= max_snapshots:
                        ended_by = "duration"  # a planned end, as by --duration
                        break
                if plan and phase_i < 0 and (checked_in or now - started >= 10.0):
                    next_phase(now)
                elif plan and phase_i >= 0 and now >= phase_end and not next_phase(now):
                    ended_by = "duration"
                    break
        except (KeyboardInterrupt, Interrupted):
            ended_by = "interrupt"  # the notice is printed where a second one is caught
        except LaunchError as exc:  # a phase's load command could not start: end the run
            ended_by, error = "error", str(exc)
        try:
            if ended_by == "interrupt" and notice is not None:
                notice("stopping: final snapshot, then the reports (Ctrl-C again to leave "
                       "the run as it is)")
            stop_load(load)
            if proc.poll() is None:
                _stop_target(proc, sock_path, store_path, reader.meta("agent") is not None)
        except (KeyboardInterrupt, Interrupted):
            # Asked again (even while the notice above was printed): end the target now;
            # the store keeps every finished snapshot.
            for sig in (signal.SIGINT, signal.SIGTERM):  # a third must not cut this short
                signal.signal(sig, signal.SIG_IGN)
            _end_now(proc, exits)
            writer.set_meta({"launch": {"exit_code": proc.returncode,
                                        "ended_by": "interrupt", "checked_in": checked_in,
                                        "no_agent_reason": None, "abandoned": True,
                                        "wall_s": round(time.monotonic() - started, 3)}})
            writer.close()
            raise KeyboardInterrupt from None
        checked_in = checked_in or reader.meta("agent") is not None
        try:
            observer.poll(force=True)  # the ends nobody reported
        except Exception:
            pass
        reason = None if checked_in else _no_agent_reason(sock_dir, cmd, isolating)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        exits.close()
        reader.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
    code = proc.returncode
    if code is not None:
        store(lambda: writer.end_process(proc.pid, time.time(), "exit",
                                         exit_code=code if code >= 0 else None,
                                         exit_signal=-code if code < 0 else None))
    disk_full = writer.full or disk_is_full(run_dir)  # before the reserve makes room again
    writer.release_reserve()
    store(lambda: writer.set_meta({"launch": {
        "exit_code": code, "ended_by": ended_by, "checked_in": checked_in,
        "no_agent_reason": reason, "error": error, "disk_full": disk_full,
        "ended_t": ended_t if ended_by == "exit" else None, "pid": proc.pid,
        "wall_s": round(time.monotonic() - started, 3)}}))
    writer.close()
    return LaunchResult(run_dir, code, ended_by, checked_in, reason, error, store_errors)


def disk_is_full(directory: str) -> bool:
    """True when the filesystem of ``directory`` has no room left for us."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < 64 * 1024


class _ExitWatch:
    """Waits for the target to exit without polling. ``Popen.wait(timeout)`` sleeps in
    steps of 0.5-50 ms (~80 wake-ups a second); on a small machine each wake-up can preempt
    a busy target (measured on a 2-core box serving HTTP: 3x the server's involuntary
    context switches). A pidfd (Linux 5.3+) polled with the timeout wakes heapwatch once
    per turn of its loop; elsewhere, ``Popen.wait``."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.fd = -1
        self.poller: Any = None
        try:
            self.fd = os.pidfd_open(proc.pid)
            self.poller = select.poll()
            self.poller.register(self.fd, select.POLLIN)
        except (AttributeError, OSError):
            self.close()

    def wait(self, timeout: float) -> bool:
        """True once the target has exited (and is reaped), else False after ``timeout``."""
        if self.poller is not None:
            if not self.poller.poll(max(0, int(timeout * 1000))):
                return self.proc.poll() is not None
            self.proc.wait()  # readable: it has exited, so this returns at once
            return True
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.poller = -1, None


def _end_now(proc: subprocess.Popen[bytes], exits: _ExitWatch, timeout: float = 10.0) -> None:
    """SIGKILL the target and reap it (``proc.returncode`` set), within ``timeout``, without
    going through ``Popen.wait``: the interrupt that brought heapwatch here may have landed
    inside ``Popen.wait`` between its internal lock's acquire and the ``try`` that releases
    it, and ``Popen.wait()`` then blocks for ever (3 in 73,000 interrupts measured on 3.13).
    The signal goes through the pidfd when there is one, so it cannot reach another process
    that took the pid of a target Popen reaped but had no time to record."""
    if proc.returncode is not None:
        return
    try:
        if exits.fd >= 0:
            signal.pidfd_send_signal(exits.fd, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
    except OSError:  # gone already
        pass
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already, its status lost with the interrupt
            return
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def _stop_target(proc: subprocess.Popen[bytes], sock_path: str, store: str, agent: bool
                 ) -> None:
    """Final snapshots first (every agent of the run, the root's first so that its fork
    hook starts no new one), then SIGINT, SIGTERM, SIGKILL, each given time to work."""
    from heapwatch.control import broadcast

    try:
        broadcast(store, "stop", first=sock_path if agent and os.path.exists(sock_path)
                  else None, timeout=30.0)
    except Exception:
        pass
    for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
        except OSError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _no_agent_reason(private_dir: str, cmd: list[str], isolating: str | None) -> str:
    err = os.path.join(private_dir, "agent-error.txt")
    if os.path.exists(err):
        with open(err, encoding="utf-8", errors="replace") as f:
            return "the agent failed to start in the target: " + f.read().strip()[:300]
    if isolating:
        return f"the target runs python {isolating}, which skips PYTHONPATH or site"
    if not looks_like_python(cmd):
        return f"{cmd[0]} is not a Python program (no Python process took the agent)"
    return "no Python process of the command took the agent (it exited before site ran?)"


def exit_status(result: LaunchResult) -> int:
    """heapwatch run's exit code: the target's own when it ended by itself."""
    if result.error is not None:
        return 2
    if result.ended_by == "interrupt":
        return 130
    if result.ended_by == "duration":
        return 0
    code = result.exit_code or 0
    return 128 - code if code < 0 else code


if sys.platform == "win32":  # pragma: no cover
    raise ImportError("heapwatch run needs a POSIX system")
