"""The gdb method: kept behind the same interface, and refused until it is validated.

gdb 13 (Debian 12's) cannot call functions in a process on CPUs with AMX: the kernel's
extended register state is larger than what gdb writes back, the call fails, and a
failed call can damage the target (an interrupted sleep raising ``OSError: [Errno
514]``, a deadlock in ``take_gil``; shared/notes/attach.md). A newer gdb handles it, but
none could be installed where heapwatch is tested, so heapwatch does not ship an
untested gdb driver: it says why and points to lldb.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from heapwatch.attach.base import Injection
from heapwatch.attach.errors import NoDebuggerError
from heapwatch.attach.lldb import INSTALL_HINT

# gdb up to 13 writes at most this much XSAVE state (an AVX-512 layout); AMX needs more.
GDB13_XSAVE_BYTES = 2696


def gdb_version(exe: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"(\d+)\.(\d+)", out.splitlines()[0] if out else "")
    return (int(m[1]), int(m[2])) if m else None


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False


def refusal(exe: str | None, version: tuple[int, int] | None, amx: bool) -> str:
    """Why the gdb method will not run here (one line)."""
    if exe is None:
        head = "gdb is not installed"
    elif version is not None and version <= (13, 99) and amx:
        head = (f"gdb {version[0]}.{version[1]} cannot call functions in a process on this CPU "
                f"(its AMX register state exceeds the {GDB13_XSAVE_BYTES} bytes gdb 13 handles, "
                f"and a failed call can hang or corrupt the target)")
    else:
        ver = f" {version[0]}.{version[1]}" if version else ""
        head = f"heapwatch's gdb method is not validated (gdb{ver} found)"
    return f"{head}: use --method lldb ({INSTALL_HINT})"


class GDBInjector:
    """Same interface as the other methods; refuses in its constructor."""

    name = "gdb"

    def __init__(self) -> None:
        exe = shutil.which("gdb")
        version = gdb_version(exe) if exe else None
        raise NoDebuggerError(refusal(exe, version, cpu_has_amx()))

    def inject(self) -> Injection:  # pragma: no cover - never constructed
        raise NoDebuggerError(refusal(None, None, False))
