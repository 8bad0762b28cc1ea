"""The attach guard: whatever happens to ``heapwatch attach``, the target is left running.

``heapwatch attach`` starts this small process first (``python -I -m
heapwatch.attach.guard``, in its own session, so that Ctrl-C or a kill of heapwatch's
process group does not reach it) and talks to it over a socket pair:

- ``debugger PID`` with two descriptors: lldb's stdin (write end) and stdout (read end).
  The guard only holds them while heapwatch lives: lldb never sees its input end or its
  output break because heapwatch died;
- ``released``: the debugger has detached and quit; ``remote``: a ``sys.remote_exec``
  request was made (the private directory must stay for it);
- ``done``: heapwatch finished cleanly; the guard exits and does nothing.

If the socket closes without ``done`` (heapwatch was killed, even by SIGKILL), the guard
cleans up in heapwatch's place. It drains lldb's output and tells it ``process detach``
and ``quit``: lldb runs them after the command in progress, so an expression running in
the target completes. Killing lldb instead would be worse than leaving it: a tracer
killed while the target runs an injected call leaves it with the debugger's registers,
and the target dies of SIGTRAP (measured: exit 133). Only a debugger that has not quit
within a minute is killed. Then the guard continues the target if it was left stopped
(``T``/``t``), takes the attach's claim so that an injected call that runs later does
nothing, or asks the agent to stop if it already started (its final snapshot is kept),
and removes the private directory. Every step is bounded.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable

from heapwatch.attach.diagnose import proc_state


def _tracer(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def resume(target: int, timeout: float = 10.0) -> None:
    """Once the debugger is gone: the target detached and running, each step bounded."""
    deadline = time.monotonic() + timeout
    while _tracer(target) and time.monotonic() < deadline:
        time.sleep(0.01)  # the kernel detaches a tracee when its tracer exits
    for _ in range(50):
        if proc_state(target) not in ("T", "t"):
            return
        try:
            os.kill(target, signal.SIGCONT)
        except OSError:
            return
        time.sleep(0.02)


class Guard:
    """heapwatch's side: start the guard, tell it what happens, dismiss it."""

    def __init__(self, target: int, workspace: str | None, control: str | None) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [sys.executable, "-I", "-m", "heapwatch.attach.guard", "--target", str(target),
                "--fd", str(theirs.fileno())]
        if workspace:
            args += ["--workspace", workspace]
        if control:
            args += ["--control", control]
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self.sock: socket.socket | None = mine

    def tell(self, line: str, fds: tuple[int, ...] = ()) -> None:
        if self.sock is None:
            return
        try:
            socket.send_fds(self.sock, [line.encode() + b"\n"], list(fds))
        except OSError:
            pass

    def debugger(self, proc: subprocess.Popen[str]) -> None:
        """lldb started: the guard keeps its pipes open and knows its pid."""
        if proc.stdin is not None and proc.stdout is not None:
            self.tell(f"debugger {proc.pid}", (proc.stdin.fileno(), proc.stdout.fileno()))

    def dismiss(self) -> None:
        """heapwatch is done and left everything in order: the guard exits doing nothing."""
        sock, self.sock = self.sock, None
        proc, self.proc = self.proc, None
        if sock is not None:
            try:
                sock.sendall(b"done\n")
            except OSError:
                pass
            sock.close()
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


def detach(debugger: int, stdin_w: int, stdout_r: int, timeout: float = 60.0) -> None:
    """Have an orphaned lldb detach and quit after the command it is running."""
    threading.Thread(target=_drain, args=(stdout_r,), daemon=True).start()
    try:
        os.write(stdin_w, b"process detach\nquit\n")
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    while _alive(debugger) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(debugger):  # stuck: only now, kill it and its server
        for child in _children(debugger):
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.kill(debugger, signal.SIGKILL)
        except OSError:
            pass


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="utf-8") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def _clean_up(target: int, debugger: tuple[int, int, int] | None, workspace: str | None,
              control: str | None, remote: bool) -> None:
    if debugger is not None:
        detach(*debugger)
    resume(target)
    if not workspace:
        return
    from heapwatch.attach.inject import Workspace
    from heapwatch.launch import send_command

    ws = Workspace(workspace)
    if not ws.cancel():  # the loader took the claim: the agent started, or is starting
        deadline = time.monotonic() + 30
        while ws.outcome().state == "starting" and time.monotonic() < deadline:
            time.sleep(0.05)
        if ws.outcome().state == "started" and control:
            try:
                send_command(control, "stop heapwatch-died", timeout=60.0)
            except Exception:
                pass
    ws.close(remote_pending=remote)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heapwatch.attach.guard")
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--workspace")
    parser.add_argument("--control")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # it ends when its work is done
    sock = socket.socket(fileno=args.fd)
    debugger: tuple[int, int, int] | None = None
    remote = False
    pending = b""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 4096, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            verb, _, rest = raw.decode("ascii", "replace").partition(" ")
            if verb == "done":
                return 0
            if verb == "debugger" and rest.isdigit() and len(fds) == 2:
                if debugger is not None:
                    _close(debugger[1:])
                debugger = (int(rest), fds[0], fds[1])
                fds = []
            elif verb == "released" and debugger is not None:
                _close(debugger[1:])
                debugger = None
            elif verb == "remote":
                remote = True
        _close(fds)
    _clean_up(args.target, debugger, args.workspace, args.control, remote)
    return 0


def _close(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
