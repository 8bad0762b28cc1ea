"""Pre-flight checks on a target process, read from ``/proc`` before any debugger runs.

Every function takes the ``/proc`` root as a parameter so the diagnosis can be tested on
a faked tree: the conditions it explains (another user's process, Yama's ptrace scope, a
process already being traced) cannot all be produced for real on a test machine.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass

from heapwatch.attach.errors import AttachError, AttachPermissionError

MIN_VERSION = (3, 10)
CAP_SYS_PTRACE = 19

# libpython3.11.so.1.0, libpython3.13t.so.1.0, python3.14, python3.11-dbg
_LIBPYTHON = re.compile(r"^libpython(\d+)\.(\d+)([a-z]*)\.so")
_PYTHON_EXE = re.compile(r"^python(\d+)\.(\d+)([a-z]*)(?:-[a-z]+)?$")
_PYTHON_ANY = re.compile(r"^(?:python[\d.]*[a-z]*|libpython[\d.]+[a-z]*\.so.*)$")
_RUNTIME_SYMBOL = b"Py_IsInitialized\x00"


@dataclass(frozen=True, slots=True)
class Me:
    """Who heapwatch runs as."""

    uid: int
    pid: int
    cap_sys_ptrace: bool

    @classmethod
    def current(cls, proc: str = "/proc") -> Me:
        return cls(uid=os.geteuid(), pid=os.getpid(),
                   cap_sys_ptrace=has_cap_sys_ptrace(_read(f"{proc}/self/status") or ""))


@dataclass(frozen=True, slots=True)
class Target:
    """What /proc says about the process to attach to."""

    pid: int
    name: str
    state: str
    uids: tuple[int, ...]
    gid: int
    tracer_pid: int
    exe: str | None
    cmdline: tuple[str, ...]
    cwd: str | None
    runtime: str | None  # the mapped file holding the Python runtime, None when not found
    version: tuple[int, int] | None
    free_threaded: bool
    dumpable: bool

    @property
    def uid(self) -> int:
        return self.uids[0] if self.uids else -1

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}" if self.version else "unknown"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _status_fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def has_cap_sys_ptrace(status_text: str) -> bool:
    value = _status_fields(status_text).get("CapEff", "0")
    try:
        return bool(int(value, 16) >> CAP_SYS_PTRACE & 1)
    except ValueError:
        return False


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def yama_scope(proc: str = "/proc") -> int | None:
    """Yama's ``kernel.yama.ptrace_scope`` (None when Yama is not in the kernel)."""
    text = _read(f"{proc}/sys/kernel/yama/ptrace_scope")
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def python_in_maps(maps_text: str) -> tuple[str | None, tuple[int, int] | None, bool]:
    """(file holding the runtime, (major, minor), free-threaded) from /proc/PID/maps.

    A ``libpython3.X`` wins over the executable; an executable named ``python`` or
    ``python3`` has no minor version in its name: (path, None, False)."""
    exe_hit: tuple[str | None, tuple[int, int] | None, bool] = (None, None, False)
    seen: set[str] = set()
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        path = parts[5].removesuffix(" (deleted)")
        if path in seen:
            continue
        seen.add(path)
        base = os.path.basename(path)
        m = _LIBPYTHON.match(base)
        if m:
            return path, (int(m[1]), int(m[2])), "t" in m[3]
        m = _PYTHON_EXE.match(base)
        if m and exe_hit[1] is None:
            exe_hit = (path, (int(m[1]), int(m[2])), "t" in m[3])
        elif _PYTHON_ANY.match(base) and exe_hit[0] is None:
            exe_hit = (path, None, False)
    return exe_hit


def _has_runtime_symbols(path: str) -> bool:
    """True when the file's bytes name the Python C API (a statically linked interpreter
    under another name, or an application embedding Python)."""
    try:
        with open(path, "rb") as f:
            tail = b""
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    return False
                if _RUNTIME_SYMBOL in tail + chunk:
                    return True
                tail = chunk[-len(_RUNTIME_SYMBOL):]
    except OSError:
        return False


def inspect(pid: int, proc: str = "/proc") -> Target:
    """Read what /proc tells about ``pid``; raise AttachError when there is no such
    process (or only a zombie)."""
    base = f"{proc}/{pid}"
    status = _read(f"{base}/status")
    if pid <= 0 or status is None:
        raise AttachError(f"no process {pid}: check the pid (ps -e or pgrep)")
    fields = _status_fields(status)
    state = fields.get("State", "?").split()[0] if fields.get("State") else "?"
    if state in ("Z", "X"):
        raise AttachError(f"process {pid} has exited (it is a zombie waiting for its parent)")
    try:
        uids = tuple(int(x) for x in fields.get("Uid", "").split())
    except ValueError:
        uids = ()
    try:
        gid = int(fields.get("Gid", "-1").split()[0])
    except (ValueError, IndexError):
        gid = -1
    try:
        tracer = int(fields.get("TracerPid", "0"))
    except ValueError:
        tracer = 0
    try:
        exe: str | None = os.readlink(f"{base}/exe")
    except OSError:
        exe = None
    cmdline = tuple(a for a in (_read(f"{base}/cmdline") or "").split("\x00") if a)
    try:
        cwd: str | None = os.readlink(f"{base}/cwd")
    except OSError:
        cwd = None
    # A process that is not dumpable (setuid, prctl) has its /proc files owned by root.
    try:
        owner = os.stat(base).st_uid
        euid = uids[1] if len(uids) > 1 else (uids[0] if uids else 0)
        dumpable = owner == euid or euid == 0
    except OSError:
        dumpable = True
    runtime, version, free_threaded = None, None, False
    maps = _read(f"{base}/maps")
    if maps is not None:
        runtime, version, free_threaded = python_in_maps(maps)
        if runtime is None and exe is not None:
            exe_file = f"{base}/root{exe}" if os.path.exists(f"{base}/root") else exe
            if _has_runtime_symbols(exe_file.removesuffix(" (deleted)")):
                runtime = exe
    return Target(pid=pid, name=fields.get("Name", "?"), state=state, uids=uids, gid=gid,
                  tracer_pid=tracer, exe=exe, cmdline=cmdline, cwd=cwd, runtime=runtime,
                  version=version, free_threaded=free_threaded, dumpable=dumpable)


def _comm(pid: int, proc: str) -> str:
    text = _read(f"{proc}/{pid}/comm")
    return text.strip() if text else "?"


def _ancestors(pid: int, proc: str) -> list[int]:
    out: list[int] = []
    while pid > 1 and len(out) < 256:
        text = _read(f"{proc}/{pid}/status")
        if text is None:
            break
        try:
            pid = int(_status_fields(text).get("PPid", "0"))
        except ValueError:
            break
        out.append(pid)
    return out


def check_access(target: Target, me: Me, force: bool = False, proc: str = "/proc") -> None:
    """Raise AttachPermissionError saying why ptrace would be refused, before trying it."""
    pid = target.pid
    if target.tracer_pid:
        tracer = target.tracer_pid
        raise AttachPermissionError(
            f"process {pid} is already being traced by process {tracer} "
            f"({_comm(tracer, proc)}): a debugger or another attach holds it; detach that "
            f"first (only one tracer at a time)")
    scope = yama_scope(proc)
    if scope == 3:
        raise AttachPermissionError(
            "attaching is disabled on this machine: kernel.yama.ptrace_scope is 3 (no "
            "process may be traced until reboot)")
    other = any(u != me.uid for u in target.uids)
    owner = user_name(target.uid)
    if other and not me.cap_sys_ptrace:
        raise AttachPermissionError(
            f"permission denied: process {pid} belongs to user {owner} and heapwatch runs as "
            f"{user_name(me.uid)}: run heapwatch as {owner} (or as root)")
    if not target.dumpable and not me.cap_sys_ptrace:
        raise AttachPermissionError(
            f"permission denied: process {pid} is not dumpable (setuid or "
            f"prctl(PR_SET_DUMPABLE, 0)), so only root may trace it")
    if scope == 2 and not me.cap_sys_ptrace:
        raise AttachPermissionError(
            "permission denied: kernel.yama.ptrace_scope is 2 (only root, or a process with "
            "CAP_SYS_PTRACE, may attach): run heapwatch as root")
    if scope == 1 and not me.cap_sys_ptrace and me.pid not in _ancestors(pid, proc):
        raise AttachPermissionError(
            f"permission denied: kernel.yama.ptrace_scope is 1, so only a parent process may "
            f"attach to process {pid}: run heapwatch as root, or allow it with "
            f"'sysctl kernel.yama.ptrace_scope=0'")
    if other and me.uid == 0 and not force:
        raise AttachPermissionError(
            f"process {pid} belongs to user {owner}: as root, heapwatch will not inject code "
            f"into another user's process unless you add --force")


def explain_refusal(target: Target, me: Me, proc: str = "/proc") -> str:
    """Why the kernel refused ptrace although the pre-flight checks passed."""
    try:
        fresh = inspect(target.pid, proc)
    except AttachError as exc:
        return str(exc)
    try:
        check_access(fresh, me, force=True, proc=proc)
    except AttachPermissionError as exc:
        return str(exc)
    return (f"permission denied: the kernel refused to let heapwatch trace process "
            f"{target.pid} (a container without CAP_SYS_PTRACE, a seccomp or LSM policy?)")


def check_python(target: Target) -> None:
    """Raise AttachError when the target is not a Python heapwatch can attach to."""
    pid = target.pid
    if target.runtime is None:
        what = os.path.basename(target.exe) if target.exe else target.name
        raise AttachError(f"process {pid} ({what}) is not a Python process: no Python runtime "
                          f"is loaded in it")
    if target.version is not None and target.version < MIN_VERSION:
        raise AttachError(
            f"process {pid} runs Python {target.version_text}, which is too old: heapwatch's "
            f"agent needs Python {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer")


def remote_debug_disabled(pid: int, proc: str = "/proc") -> str | None:
    """How remote debugging (PEP 768) was turned off in the target, if it visibly was."""
    environ = _read(f"{proc}/{pid}/environ") or ""
    for entry in environ.split("\x00"):
        if entry.startswith("PYTHON_DISABLE_REMOTE_DEBUG=") and entry.split("=", 1)[1]:
            return "PYTHON_DISABLE_REMOTE_DEBUG is set in its environment"
    args = (_read(f"{proc}/{pid}/cmdline") or "").split("\x00")
    for i, arg in enumerate(args):
        if arg in ("-Xdisable-remote-debug", "-Xdisable_remote_debug") or (
            arg == "-X" and i + 1 < len(args)
            and args[i + 1] in ("disable-remote-debug", "disable_remote_debug")
        ):
            return "it was started with -X disable-remote-debug"
    return None


def same_mount_namespace(pid: int, proc: str = "/proc") -> bool:
    """False when the target sees another file system than we do (a container)."""
    try:
        return os.readlink(f"{proc}/{pid}/ns/mnt") == os.readlink(f"{proc}/self/ns/mnt")
    except OSError:
        return True  # cannot tell (no permission, no namespaces): assume the same


def proc_state(pid: int, proc: str = "/proc") -> str | None:
    """The one-letter state from /proc/PID/stat (``T`` when stopped)."""
    text = _read(f"{proc}/{pid}/stat")
    if not text or ")" not in text:
        return None
    rest = text.rsplit(")", 1)[1].split()
    return rest[0] if rest else None
