"""Inject through ``sys.remote_exec`` (PEP 768, CPython 3.14+): no debugger, no stop.

It must be called from an interpreter of the target's minor version: the target's own
executable when it is one, heapwatch's interpreter when it matches, or ``--python``. It
returns at once; the target's main thread runs the script at its next eval-breaker
check, so a main thread blocked in ``sleep``/``accept``/``join`` runs it only when it
wakes (the caller waits for that and may fall back to the debugger).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from heapwatch.attach.base import Injection
from heapwatch.attach.diagnose import Target
from heapwatch.attach.errors import AttachError, AttachPermissionError

MIN_REMOTE_EXEC = (3, 14)

# Runs in the chosen interpreter (-S: no site, nothing of its environment is needed).
_HELPER = r"""
import sys
pid, path, want = int(sys.argv[1]), sys.argv[2], sys.argv[3]
have = "%d.%d" % sys.version_info[:2]
if want != "any" and have != want:
    print("version " + have)
    sys.exit(3)
if not hasattr(sys, "remote_exec"):
    print("missing " + have)
    sys.exit(4)
try:
    sys.remote_exec(pid, path)
except BaseException as exc:
    print("error " + type(exc).__name__ + ": " + " ".join(str(exc).split()))
    sys.exit(5)
print("ok " + have)
"""

_PY_NAME = re.compile(r"^python\d+(\.\d+)?[a-z]*$")


def interpreter_for(target: Target, python: str | None) -> str | None:
    """The interpreter to call ``sys.remote_exec`` from, or None when none is known."""
    if python:
        return python
    exe = target.exe.removesuffix(" (deleted)") if target.exe else None
    if exe and _PY_NAME.match(os.path.basename(exe)):
        if os.path.exists(exe):
            return exe
        return f"/proc/{target.pid}/exe"  # another mount namespace: the kernel opens it
    if target.version is not None and sys.version_info[:2] == target.version:
        return sys.executable
    return None


def _env() -> dict[str, str]:
    """The interpreter's environment without what could run code or redirect imports."""
    drop = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONUSERBASE")
    return {k: v for k, v in os.environ.items() if k not in drop}


class RemoteExecInjector:
    """Ask the target to run ``script`` through ``sys.remote_exec``."""

    name = "remote-exec"

    def __init__(self, target: Target, script: str, python: str, timeout: float = 30.0) -> None:
        self.target = target
        self.script = script
        self.python = python
        self.timeout = timeout

    def inject(self) -> Injection:
        pid = self.target.pid
        want = self.target.version_text if self.target.version else "any"
        try:
            proc = subprocess.run(
                [self.python, "-S", "-c", _HELPER, str(pid), self.script, want],
                capture_output=True, text=True, timeout=self.timeout, env=_env(),
                stdin=subprocess.DEVNULL, errors="replace")
        except FileNotFoundError:
            raise AttachError(f"--python {self.python}: no such interpreter") from None
        except OSError as exc:
            raise AttachError(f"cannot run {self.python}: {exc.strerror}") from None
        except subprocess.TimeoutExpired:
            raise AttachError(f"{self.python} did not return from sys.remote_exec within "
                              f"{self.timeout:.0f}s") from None
        lines = proc.stdout.strip().splitlines()
        last = lines[-1] if lines else ""
        verb, _, rest = last.partition(" ")
        if proc.returncode == 0 and verb == "ok":
            return Injection("remote-exec", rest, 0.0)
        if verb == "version":
            raise AttachError(
                f"{self.python} is Python {rest} but process {pid} runs Python "
                f"{self.target.version_text}: sys.remote_exec needs an interpreter of the same "
                f"minor version (give one with --python)")
        if verb == "missing":
            raise AttachError(f"{self.python} is Python {rest}, which has no sys.remote_exec "
                              f"(3.14+): give a Python {self.target.version_text} with --python")
        if verb == "error":
            raise classify(rest, pid)
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise AttachError(f"{self.python} failed to call sys.remote_exec (exit "
                          f"{proc.returncode}): {tail}")


def classify(message: str, pid: int) -> AttachError:
    """A one-line error for what ``sys.remote_exec`` raised."""
    low = message.lower()
    if "remote debugging is not enabled" in low:
        return AttachError(
            f"remote debugging is disabled in process {pid} (PYTHON_DISABLE_REMOTE_DEBUG, "
            f"-X disable-remote-debug, or a build without it): heapwatch will not use "
            f"sys.remote_exec; --method lldb injects through the debugger instead")
    if "can't send commands from a python" in low:
        return AttachError(f"{message.split(': ', 1)[-1]}: give an interpreter of the target's "
                           f"version with --python")
    if "permission" in low or "not permitted" in low:
        return AttachPermissionError(f"permission denied: sys.remote_exec could not open "
                                     f"process {pid}")
    if "no such file" in low or "no such process" in low or "processlookup" in low:
        return AttachError(f"no process {pid}: check the pid (ps -e or pgrep)")
    if "too long" in low:
        return AttachError("the attach script path is too long for sys.remote_exec: set "
                           "TMPDIR to a shorter directory")
    return AttachError(f"sys.remote_exec failed for process {pid}: {message}")


def _pyruntime_sections(pid: int, proc: str = "/proc") -> list[tuple[int, int]]:
    """(address, size) of the ``.PyRuntime`` section of each mapped ELF file that has
    one: where ``_PyRuntime`` lives, and with it the main thread's state."""
    from heapwatch.attach.lldb import mapped_elf_files

    out: list[tuple[int, int]] = []
    for path, slide in mapped_elf_files(pid, proc).items():
        section = _elf_section(path, b".PyRuntime")
        if section is not None:
            out.append((slide + section[0], section[1]))
    return out


def _elf_section(path: str, name: bytes) -> tuple[int, int] | None:
    """(sh_addr, sh_size) of a section of a 64-bit little-endian ELF file."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            shoff = int.from_bytes(head[40:48], "little")
            shentsize = int.from_bytes(head[58:60], "little")
            shnum = int.from_bytes(head[60:62], "little")
            shstrndx = int.from_bytes(head[62:64], "little")
            if not shoff or shentsize < 64 or shstrndx >= shnum:
                return None
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            strtab = table[shstrndx * shentsize:(shstrndx + 1) * shentsize]
            f.seek(int.from_bytes(strtab[24:32], "little"))
            names = f.read(int.from_bytes(strtab[32:40], "little"))
    except OSError:
        return None
    for i in range(shnum):
        entry = table[i * shentsize:(i + 1) * shentsize]
        at = int.from_bytes(entry[0:4], "little")
        if names[at:at + len(name) + 1] == name + b"\0":
            return int.from_bytes(entry[16:24], "little"), int.from_bytes(entry[32:40], "little")
    return None


def cancel_pending(pid: int, script: str, proc: str = "/proc") -> bool:
    """Withdraw a ``sys.remote_exec`` request the main thread has not run yet; call it
    only while the target is stopped (under the debugger).

    PEP 768 keeps the request in the thread state as ``{int32 pending; char path[]}``; the
    main thread's state lives inside ``_PyRuntime`` (the ``.PyRuntime`` section). The
    flag is found by our unique script path and cleared only if it is set. A request left
    behind would run when the main thread next wakes, typically for a signal, and a
    signal handler's exception raised inside the script is lost to the target."""
    want = script.encode() + b"\0"
    try:
        with open(f"{proc}/{pid}/mem", "r+b", buffering=0) as mem:
            for addr, size in _pyruntime_sections(pid, proc):
                mem.seek(addr)
                data = mem.read(size)
                at = data.find(want)
                while at >= 4:
                    if int.from_bytes(data[at - 4:at], "little") == 1:
                        mem.seek(addr + at - 4)
                        mem.write((0).to_bytes(4, "little"))
                        return True
                    at = data.find(want, at + 1)
    except OSError:
        return False
    return False
