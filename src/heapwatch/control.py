"""Talk to a running agent: find its control socket from a pid or a run directory.

A run is a tree of processes, each with its own agent and control socket (listed in the
store's ``processes``). A phase mark goes to every agent of the run; ``stop`` given a run
directory or the run's root pid stops them all (the root first, so that its fork hook
starts no new agent), given another pid only that one.

Nothing found on the way is trusted by its name alone: the registry entry must be the
caller's own (see ``agent/registry.py``), a socket must belong to the user the agent's
process runs as, and the process serving it must be that agent's (``SO_PEERCRED``), so an
impostor's socket planted under /tmp never receives a command.
"""

from __future__ import annotations

import os
import re
import stat

from heapwatch.agent import registry
from heapwatch.errors import AgentError, UsageError
from heapwatch.launch import send_command
from heapwatch.model import ProcessInfo
from heapwatch.observe import alive
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


def send_checked(control: str, pid: int | None, line: str, timeout: float = 30.0) -> str:
    """Send ``line`` to the socket ``control`` only when process ``pid``'s own agent serves
    it (``pid`` None: a socket heapwatch made itself, in its private directory)."""
    if pid is None:
        return send_command(control, line, timeout=timeout)
    _check_socket(control, pid)
    return send_command(control, line, timeout=timeout, expect_pid=pid)


def find_control(target: str) -> str:
    """The control socket of the agent named by ``target``: a pid or a run directory."""
    return _resolve(target)[0]


def _resolve(target: str) -> tuple[str, int | None, str | None, bool]:
    """(control socket, pid of the agent serving it, run store, whether the agent is the
    run's root)."""
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
        store = str(info["store"]) if info.get("store") else None
        root = True
        if store and os.path.exists(store):
            reader = LiveReader(store)
            try:
                agent = reader.meta("agent")
            finally:
                reader.close()
            root = not agent or agent.get("pid") == pid
        return control, pid, store, root
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
        if _others(store, None):
            return "", None, store, True  # the root's agent ended, its children's go on
        raise AgentError(f"the run in {shown(target)} has ended: its agent is no longer running")
    if type(agent_pid) is not int:
        raise AgentError(f"the run in {shown(target)} does not say which process its agent is in")
    return control, agent_pid, store, True


def _others(store: str, exclude: str | None) -> list[ProcessInfo]:
    """The run's agents that still run, other than the one at ``exclude``."""
    reader = LiveReader(store)
    try:
        rows = reader.processes()
    finally:
        reader.close()
    return [p for p in rows if p.how != "external" and p.t_end is None and p.control
            and p.control != exclude and alive(p.pid)]


def broadcast(store: str, line: str, first: str | None = None, first_pid: int | None = None,
              timeout: float = 30.0) -> list[tuple[int | None, str]]:
    """Send ``line`` to every live agent of the run in ``store`` (``first``, served by
    ``first_pid``, before the others); return (pid, reply or error) for each. An agent that
    ended meanwhile is skipped."""
    out: list[tuple[int | None, str]] = []
    if first:
        try:
            out.append((None, send_checked(first, first_pid, line, timeout=timeout)))
        except AgentError as exc:
            out.append((None, f"error {exc}"))
    for p in _others(store, first):
        assert p.control is not None
        try:
            out.append((p.pid, send_checked(p.control, p.pid, line, timeout=timeout)))
        except AgentError as exc:
            if alive(p.pid) and os.path.exists(p.control):
                out.append((p.pid, f"error {exc}"))
    return out


def command(target: str, line: str, timeout: float = 30.0) -> str:
    """Send ``line`` to the agent of ``target``; a mark, or a stop of the run, to all its
    agents. Returns the reply of the first agent (the one ``target`` names)."""
    control, pid, store, root = _resolve(target)
    verb = line.split(" ", 1)[0]
    if store and (verb == "mark" or (verb == "stop" and root)):
        replies = broadcast(store, line, first=control or None, first_pid=pid,
                            timeout=timeout)
        if not replies:
            raise AgentError(f"no agent of the run in {shown(target)} is running")
        reply = replies[0][1]
    else:
        reply = send_checked(control, pid, line, timeout=timeout)
    if not reply.startswith("ok"):
        raise AgentError(f"the agent refused {line.split()[0]!r}: {reply or 'no reply'}")
    return reply
