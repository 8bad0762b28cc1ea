"""Where a watched process sits in its run's tree: how it came to be watched, its program
and a guess at its role. Stdlib only: it runs inside the target.

Privacy: a process's arguments can carry secrets (``--password``, tokens in URLs), so
nothing here returns them. The role is guessed from the command line and then only the
guess (``worker``, ``resource tracker``...) and the program's name leave this module.
"""

from __future__ import annotations

import os

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent.naming import clean

HOWS = ("root", "fork", "exec", "attach", "external")
CHILDREN_MODES = ("all", "fork", "none")

# Helpers of the multiprocessing module, recognised by what their command line runs.
_HELPERS = (
    ("multiprocessing.resource_tracker", "resource tracker"),
    ("multiprocessing.semaphore_tracker", "resource tracker"),
    ("multiprocessing.forkserver", "forkserver"),
)


def read_cmdline(pid: int | str = "self") -> list[str]:
    """The command line of ``pid`` as the kernel shows it now (a process title set with
    setproctitle shows here too); [] when it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(8192)
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def program_name(cmdline: list[str]) -> str:
    """``gunicorn``, ``app`` (for ``python app.py``), ``mysvc`` (for ``python -m mysvc``),
    ``python`` (for ``python -c ...``): a name, never an argument."""
    if not cmdline:
        return "?"
    first = cmdline[0]
    if " " in first and ":" in first:  # a process title ("gunicorn: worker [app]")
        return first.split(":", 1)[0].strip() or "?"
    base = os.path.basename(first.split(" ", 1)[0])
    if not base.startswith(("python", "pypy")):
        return base or "?"
    args = cmdline[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-m" and i + 1 < len(args):
            return args[i + 1].split(".")[-1] if args[i + 1] else base
        if a.startswith("-m") and len(a) > 2:
            return a[2:].split(".")[-1]
        if a == "-c" or a.startswith("-c"):
            return base
        if a in ("-W", "-X", "-Q") and i + 1 < len(args):
            i += 2
            continue
        if not a.startswith("-"):
            stem = os.path.splitext(os.path.basename(a))[0]
            return stem or base
        i += 1
    return base


def guess_role(how: str, cmdline: list[str], parent_cmdline: list[str] | None = None) -> str:
    """``main`` (the run's first process), ``worker`` (a forked child, a multiprocessing
    child, or one whose command line is its parent's: forked, entered by attach),
    a helper's name (``resource tracker``, ``forkserver``), or ``child``."""
    text = " ".join(cmdline)
    for marker, role in _HELPERS:
        if marker in text:
            return role
    lowered = text.lower()
    if how == "root":
        return "main"
    if "master" in lowered.split(" ", 2)[:2] or ": master" in lowered:
        return "master"
    if "multiprocessing.spawn" in text or "--multiprocessing-fork" in text:
        return "worker"
    if how == "fork" or "worker" in lowered[:80] or (cmdline and cmdline == parent_cmdline):
        return "worker"
    return "child"


def describe(how: str, pid: int | str = "self", ppid: int | None = None) -> tuple[str, str]:
    """(program, role) of a process, read from its command line (and its parent's)."""
    cmdline = read_cmdline(pid)
    parent = read_cmdline(ppid) if ppid else None
    # a process title can carry anything: the name passes the secret filter too
    return clean(program_name(cmdline)), guess_role(how, cmdline, parent)


def child_control(control: str | None, pid: int) -> str | None:
    """The control socket of a child's agent: beside the run's own, in the same private
    directory, named by the child's pid."""
    if not control:
        return None
    return os.path.join(os.path.dirname(control), f"agent-{pid}.sock")
