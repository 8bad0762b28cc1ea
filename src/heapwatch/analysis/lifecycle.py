"""How the target's run ended: when, and how it died if it did.

From the run's metadata only: ``launch`` (``heapwatch run`` saw the exit code and the
moment of the exit), ``agent_stopped`` (the agent's goodbye; at exit it names the
exception the interpreter printed: type and place, never the message) and ``attach``
(an attached process that vanished without the agent's goodbye).
"""

from __future__ import annotations

import signal
from typing import Any


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def target_exit(meta: dict[str, Any], first_t: float | None,
                pid: int | None = None) -> dict[str, Any]:
    """report.json's ``target_exit``: ``ended`` is ``running`` (heapwatch left it
    running), ``stopped`` (heapwatch ended it), ``exited`` (by itself) or ``died``;
    ``died`` is None when it cannot be known (an attached process that vanished). Empty
    for a process of the tree other than the one heapwatch started or attached to."""
    launch = meta.get("launch") or {}
    stopped = meta.get("agent_stopped") or {}
    attach = meta.get("attach") or {}
    target = launch.get("pid") or attach.get("pid")
    if pid is not None and target is not None and pid != target:
        return {}
    exception = stopped.get("exception") if stopped.get("reason") == "exit" else None
    code = launch.get("exit_code")
    sig = _signal_name(-code) if isinstance(code, int) and code < 0 else None
    out: dict[str, Any] = {"ended": "running", "died": False, "exit_code": code,
                           "signal": sig, "exception": exception, "at_s": None, "how": ""}
    by_itself = launch.get("ended_by") == "exit" if launch else (
        stopped.get("reason") == "exit" or attach.get("target_gone_t") is not None)
    if launch and not by_itself:
        out["ended"] = "stopped"
        out["how"] = f"heapwatch ended it ({launch.get('ended_by')})"
        return out
    if not by_itself:
        return out  # attached, and still running when heapwatch left
    t = launch.get("ended_t") or attach.get("target_gone_t") or (
        stopped.get("t") if stopped.get("reason") == "exit" else None)
    if t is not None and first_t is not None:
        out["at_s"] = round(max(0.0, t - first_t), 1)
    parts = []
    if exception:
        parts.append(f"uncaught {exception.get('type')} at {exception.get('at')}")
    if sig:
        parts.append(f"killed by {sig}")
    elif code not in (None, 0):
        parts.append(f"exit code {code}")
    if parts:
        out.update(ended="died", died=True, how=", ".join(parts))
    elif not launch and stopped.get("reason") != "exit":
        out.update(ended="died", died=None,
                   how="it ended without running its exit handlers (killed by a signal, or "
                       "os._exit)")
    else:
        out.update(ended="exited", how="exit code 0" if code == 0 else "it exited")
    return out


def death_note(te: dict[str, Any]) -> str | None:
    """One line for the verdict reason and the reports, when the target died."""
    if te.get("ended") != "died":
        return None
    when = f" {te['at_s']:g}s into the run" if te.get("at_s") is not None else ""
    verb = "died" if te.get("died") else "vanished"
    return f"the target {verb}{when} ({te['how']})"


def end_line(te: dict[str, Any]) -> str:
    """How the run ended, for report.md and report.html."""
    when = f" at {te['at_s']:g}s" if te.get("at_s") is not None else ""
    if te.get("ended") == "died":
        return f"the target {'died' if te.get('died') else 'vanished'}{when}: {te['how']}"
    if te.get("ended") == "exited":
        return f"the target exited by itself{when} ({te['how']})"
    if te.get("ended") == "stopped":
        return f"the target ran until {te['how']}"
    return "the target was still running when the recording ended"
