"""Talk to a running agent: find its control socket from a pid or a run directory.

A run is a tree of processes, each with its own agent and control socket (listed in the
store's ``processes``). A phase mark goes to every agent of the run; ``stop`` given a run
directory or the run's root pid stops them all (the root first, so that its fork hook
starts no new agent), given another pid only that one.
"""

from __future__ import annotations

import os

from heapwatch.agent import registry
from heapwatch.errors import AgentError
from heapwatch.launch import send_command
from heapwatch.model import ProcessInfo
from heapwatch.observe import alive
from heapwatch.store import STORE_NAME, LiveReader


def find_control(target: str) -> str:
    """The control socket of the agent named by ``target``: a pid or a run directory."""
    return _resolve(target)[0]


def _resolve(target: str) -> tuple[str, str | None, bool]:
    """(control socket, run store, whether the agent is the run's root)."""
    if target.isdigit():
        pid = int(target)
        info = registry.lookup(pid)
        if info is None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise AgentError(f"no process {pid}") from None
            except PermissionError:
                pass
            raise AgentError(f"no heapwatch agent runs in process {pid} (none registered in "
                             f"{registry.registry_dir()}): start one with heapwatch run or "
                             f"attach")
        control = info.get("control")
        if not control:
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
        return str(control), store, root
    store = os.path.join(target, STORE_NAME) if os.path.isdir(target) else target
    if not os.path.exists(store):
        raise AgentError(f"{target} is neither a pid nor a run directory")
    reader = LiveReader(store)
    try:
        agent = reader.meta("agent")
        stopped = reader.meta("agent_stopped")
    finally:
        reader.close()
    if agent is None:
        raise AgentError(f"no agent ever checked in to the run in {target}")
    if stopped is not None or not agent.get("control"):
        if _others(store, None):
            return "", store, True  # the root's agent ended, its children's go on
        raise AgentError(f"the run in {target} has ended: its agent is no longer running")
    return str(agent["control"]), store, True


def _others(store: str, exclude: str | None) -> list[ProcessInfo]:
    """The run's agents that still run, other than the one at ``exclude``."""
    reader = LiveReader(store)
    try:
        rows = reader.processes()
    finally:
        reader.close()
    return [p for p in rows if p.how != "external" and p.t_end is None and p.control
            and p.control != exclude and alive(p.pid)]


def broadcast(store: str, line: str, first: str | None = None, timeout: float = 30.0
              ) -> list[tuple[int | None, str]]:
    """Send ``line`` to every live agent of the run in ``store`` (``first`` before the
    others); return (pid, reply or error) for each. An agent that ended meanwhile is
    skipped."""
    out: list[tuple[int | None, str]] = []
    if first:
        try:
            out.append((None, send_command(first, line, timeout=timeout)))
        except AgentError as exc:
            out.append((None, f"error {exc}"))
    for p in _others(store, first):
        assert p.control is not None
        try:
            out.append((p.pid, send_command(p.control, line, timeout=timeout)))
        except AgentError as exc:
            if alive(p.pid) and os.path.exists(p.control):
                out.append((p.pid, f"error {exc}"))
    return out


def command(target: str, line: str, timeout: float = 30.0) -> str:
    """Send ``line`` to the agent of ``target``; a mark, or a stop of the run, to all its
    agents. Returns the reply of the first agent (the one ``target`` names)."""
    control, store, root = _resolve(target)
    verb = line.split(" ", 1)[0]
    if store and (verb == "mark" or (verb == "stop" and root)):
        replies = broadcast(store, line, first=control or None, timeout=timeout)
        if not replies:
            raise AgentError(f"no agent of the run in {target} is running")
        reply = replies[0][1]
    else:
        reply = send_command(control, line, timeout=timeout)
    if not reply.startswith("ok"):
        raise AgentError(f"the agent refused {line.split()[0]!r}: {reply or 'no reply'}")
    return reply
