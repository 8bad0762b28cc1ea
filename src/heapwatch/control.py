"""Talk to a running agent: find its control socket from a pid or a run directory.

Nothing found on the way is trusted by its name alone: the registry entry must be the
caller's own (see ``agent/registry.py``), the socket must belong to the user the agent's
process runs as, and the process serving it must be the agent's (``SO_PEERCRED``), so an
impostor's socket planted under /tmp never receives a command.
"""

from __future__ import annotations

import os
import re
import stat

from heapwatch.agent import registry
from heapwatch.errors import AgentError, UsageError
from heapwatch.launch import send_command
from heapwatch.rundir import shown
from heapwatch.store import STORE_NAME, LiveReader

PID_MAX_FALLBACK = 1 << 22  # Linux's PID_MAX_LIMIT on 64-bit systems


def pid_max() -> int:
    """The largest pid this system hands out."""
    try:
        with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return PID_MAX_FALLBACK


def looks_like_pid(text: str) -> bool:
    """True for anything a person meant as a process id (also ``-5``, ``١٢``, ``+7``)."""
    body = text.strip().lstrip("+-")
    return bool(body) and body.isdigit()


def parse_pid(text: str) -> int:
    """``text`` as a process id of this system; UsageError (or AgentError "no process",
    for a number beyond the largest pid) with a one-line reason otherwise."""
    if not re.fullmatch(r"[0-9]+", text):
        if looks_like_pid(text):
            raise UsageError(f"invalid pid {text!r}: write a process id with the digits 0-9, "
                             f"from 1 to {pid_max()}")
        raise UsageError(f"invalid pid {text!r}: a process id is a number, e.g. 4242")
    limit = pid_max()
    if len(text) > 12 or int(text) > limit:
        number = text if len(text) <= 20 else text[:19] + "…"
        raise AgentError(f"no process {number}: process ids on this system go up to {limit}")
    pid = int(text)
    if pid < 1:
        raise UsageError(f"invalid pid {text!r}: process ids start at 1")
    return pid


def _process_uid(pid: int) -> int | None:
    """The effective uid process ``pid`` runs as (None when /proc does not say)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_socket(path: str, pid: int) -> None:
    """The control socket must be a socket owned by the user process ``pid`` runs as."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise AgentError(f"cannot reach the agent of process {pid} at {shown(path)}: "
                         f"{exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise AgentError(f"refusing {shown(path)}: it is not a socket (planted by someone?)")
    uid = _process_uid(pid)
    if uid is not None and st.st_uid != uid:
        raise AgentError(f"refusing {shown(path)}: it belongs to uid {st.st_uid}, but process "
                         f"{pid} runs as uid {uid} (an impostor's socket?)")


def find_control(target: str) -> tuple[str, int]:
    """The control socket of the agent named by ``target`` (a pid or a run directory), and
    the pid of the process that must be serving it."""
    if re.fullmatch(r"[0-9]+", target) or (looks_like_pid(target)
                                            and not os.path.lexists(target)):
        pid = parse_pid(target)
        info = registry.lookup(pid)
        if info is None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise AgentError(f"no process {pid}") from None
            except PermissionError:
                pass
            why = registry.problem()
            raise AgentError(f"no heapwatch agent runs in process {pid} (none registered in "
                             f"{shown(registry.registry_dir())}"
                             + (f"; {why}" if why else "")
                             + "): start one with heapwatch run or attach, or name its run "
                               "directory instead")
        control = info.get("control")
        if not control or not isinstance(control, str):
            raise AgentError(f"the agent in process {pid} has no control socket")
        return control, pid
    store = os.path.join(target, STORE_NAME) if os.path.isdir(target) else target
    if not os.path.exists(store):
        raise AgentError(f"{shown(target)} is neither a pid nor a run directory")
    reader = LiveReader(store)
    try:
        agent = reader.meta("agent")
        stopped = reader.meta("agent_stopped")
    finally:
        reader.close()
    if agent is None:
        raise AgentError(f"no agent ever checked in to the run in {shown(target)}")
    control, agent_pid = agent.get("control"), agent.get("pid")
    if stopped is not None or not isinstance(control, str) or not control:
        raise AgentError(f"the run in {shown(target)} has ended: its agent is no longer running")
    if type(agent_pid) is not int:
        raise AgentError(f"the run in {shown(target)} does not say which process its agent is in")
    return control, agent_pid


def command(target: str, line: str, timeout: float = 30.0) -> str:
    control, pid = find_control(target)
    _check_socket(control, pid)
    reply = send_command(control, line, timeout=timeout, expect_pid=pid)
    if not reply.startswith("ok"):
        raise AgentError(f"the agent refused {line.split()[0]!r}: {reply or 'no reply'}")
    return reply
