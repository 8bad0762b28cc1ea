"""Talk to a running agent: find its control socket from a pid or a run directory."""

from __future__ import annotations

import os

from heapwatch.agent import registry
from heapwatch.errors import AgentError
from heapwatch.launch import send_command
from heapwatch.store import STORE_NAME, LiveReader


def find_control(target: str) -> str:
    """The control socket of the agent named by ``target``: a pid or a run directory."""
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
        return str(control)
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
        raise AgentError(f"the run in {target} has ended: its agent is no longer running")
    return str(agent["control"])


def command(target: str, line: str, timeout: float = 30.0) -> str:
    reply = send_command(find_control(target), line, timeout=timeout)
    if not reply.startswith("ok"):
        raise AgentError(f"the agent refused {line.split()[0]!r}: {reply or 'no reply'}")
    return reply
