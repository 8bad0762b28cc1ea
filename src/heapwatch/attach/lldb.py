"""Inject through lldb, driven as a program over pipes (its Python module is not
importable on Debian 12).

One command at a time, each followed by ``version`` as an end marker; a reader thread
drains everything lldb prints until it exits (a full pipe once left lldb spinning with
the target stopped). Where the code runs follows what was verified on these machines
(shared/notes/attach.md):

1. the main thread holds the GIL: ``Py_AddPendingCall(PyRun_SimpleString, code)``; the
   code runs at its next eval-breaker check, like a signal handler;
2. it is parked in a system call with the GIL released, outside allocator, loader and
   GIL frames: a new native thread runs Ensure -> PyRun_SimpleString -> Release;
3. otherwise the pending call is queued anyway and the start is deferred.

The code lives in a page lldb maps in the target (``mmap`` + ``memory write``): no
quoting, and it outlives the session. Without debug symbols every symbol is cast to a
function type, even to take its address.
"""

from __future__ import annotations

import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from heapwatch.attach.base import Injection
from heapwatch.attach.diagnose import MIN_VERSION, proc_state
from heapwatch.attach.errors import AttachError, AttachPermissionError, NoDebuggerError
from heapwatch.attach.guard import Guard

PAGE = 4096
ARGS_AT = 0  # Ensure, PyRun_SimpleString, Release, code: the new thread's argument
TID_AT = 64  # pthread_t written by pthread_create
CODE_AT = 128

# Frames in which a new thread could deadlock against the stopped main thread.
UNSAFE_FRAMES = re.compile(
    r"take_gil|PyEval_RestoreThread|PyGILState_Ensure|malloc|calloc|realloc|free|_int_|_dl_"
    r"|dlopen|pthread_create|_IO_|fork|PyImport")
_MARK = re.compile(r"^lldb version \S+")
_VALUE = re.compile(r"^\(([^)]*)\) \$\d+ = (.*)$")
_FRAME = re.compile(r"frame #\d+: 0x[0-9a-fA-F]+ [^`]*`([^\s(]+)")
_THREAD = re.compile(r"thread #(\d+): tid = (\d+)")

INSTALL_HINT = "install lldb (Debian/Ubuntu: apt-get install -y lldb)"


def find_lldb() -> str:
    for name in ("lldb", *(f"lldb-{v}" for v in range(20, 13, -1))):
        path = shutil.which(name)
        if path is not None:
            return path
    raise NoDebuggerError(f"no debugger to attach with: {INSTALL_HINT}")


class LLDBError(AttachError):
    """lldb said something we did not expect."""


class Session:
    """An lldb process driven one command at a time. It runs in its own session (a
    Ctrl-C or a kill of heapwatch's process group does not reach it mid-command); if
    heapwatch dies, the ``guard`` (which holds lldb's pipes) has it detach and quit."""

    def __init__(self, exe: str, timeout: float = 30.0, guard: Guard | None = None) -> None:
        self.timeout = timeout
        self.guard = guard
        self.transcript: list[str] = []
        try:
            self.proc = subprocess.Popen(
                [exe, "--no-lldbinit", "--no-use-colors"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                errors="replace", start_new_session=True)
        except OSError as exc:
            raise NoDebuggerError(f"cannot start {exe}: {exc.strerror}; {INSTALL_HINT}"
                                  ) from None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._drain, name="heapwatch-lldb", daemon=True)
        try:
            if guard is not None:
                guard.debugger(self.proc)
            self._reader.start()
            self.run("settings set interpreter.prompt-on-quit false")
            self.run("settings set auto-confirm true")
        except BaseException:  # Ctrl-C, a dead lldb: no lldb is left behind
            self.close()
            raise

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def run(self, command: str, timeout: float | None = None) -> list[str]:
        """Send one command; return what it printed (without the echoed prompt lines)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command + "\nversion\n")
            self.proc.stdin.flush()
        except OSError:
            raise LLDBError(f"lldb exited unexpectedly while running {command!r}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        out: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise LLDBError(f"lldb did not answer {command.split(' --')[0]!r} within "
                                f"{timeout or self.timeout:.0f}s") from None
            if line is None:
                raise LLDBError(f"lldb exited while running {command!r}: "
                                + " | ".join(out[-3:]))
            self.transcript.append(line)
            if _MARK.match(line):
                return out
            if not line.startswith("(lldb) "):
                out.append(line)

    def value(self, expression: str, timeout: float | None = None) -> str:
        """Evaluate a C expression in the target; return the printed value."""
        out = self.run(f"expression -- {expression}", timeout)
        for line in out:
            m = _VALUE.match(line.strip())
            if m:
                return m.group(2).strip()
        raise LLDBError(" ".join(x.strip() for x in out if x.strip()) or "no value")

    def int_value(self, expression: str, timeout: float | None = None) -> int:
        text = self.value(expression, timeout).split()[0]
        try:
            return int(text, 0)
        except ValueError:
            raise LLDBError(f"unexpected value {text!r} for {expression}") from None

    def close(self) -> None:
        """Quit lldb and read everything it still prints."""
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._reader.ident is not None:
            self._reader.join(timeout=5)
        if self.guard is not None:
            self.guard.tell("released")


def _fn(ret: str, args: str, name: str) -> str:
    return f"(({ret}(*)({args})){name})"


def _attach_failure(text: str, pid: int) -> AttachError:
    low = text.lower()
    if "not permitted" in low or "permission" in low:
        return AttachPermissionError(f"permission denied: ptrace refused to attach to {pid}")
    if "cannot get process architecture" in low or "no such process" in low:
        return AttachError(f"no process {pid}: check the pid (ps -e or pgrep)")
    return AttachError(f"lldb could not attach to process {pid}: {text.strip()}")


def _parse_version(text: str) -> tuple[str, tuple[int, int]]:
    m = re.search(r'"(\d+)\.(\d+)([^ "]*)', text)
    if not m:
        raise LLDBError(f"cannot read the Python version from {text!r}")
    return f"{m[1]}.{m[2]}{m[3]}", (int(m[1]), int(m[2]))


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class LLDBInjector:
    """One attach: stop the target, place the code, start it, detach."""

    name = "lldb"

    def __init__(self, pid: int, code: bytes, code_file: str, lldb: str | None = None,
                 timeout: float = 30.0, while_stopped: Callable[[], str | None] | None = None,
                 guard: Guard | None = None) -> None:
        if len(code) + 1 > PAGE - CODE_AT:
            raise ValueError("injected code too long")
        self.pid = pid
        self.code = code
        self.code_file = code_file  # ``memory write --infile`` reads it: no quoting
        self.exe = lldb or find_lldb()
        self.timeout = timeout
        self.while_stopped = while_stopped  # runs once the target is stopped; may add a note
        self.guard = guard

    def inject(self) -> Injection:
        session = Session(self.exe, self.timeout, self.guard)
        attached = False
        t0 = time.monotonic()
        try:
            out = session.run(f"process attach --pid {self.pid}", timeout=max(60.0, self.timeout))
            failed = [line for line in out if "attach failed" in line or line.startswith("error:")]
            if failed:
                raise _attach_failure(failed[0], self.pid)
            attached = True
            result = self._place(session)
            session.run("process detach")
            attached = False
            result.stopped_s = time.monotonic() - t0
            return result
        finally:
            if attached:
                try:
                    session.run("process detach", timeout=15)
                except AttachError:
                    pass
            session.close()
            _resume_if_stopped(self.pid)

    def _place(self, s: Session) -> Injection:
        self._select_main_thread(s)
        initialized = f"(int){_fn('int', 'void', 'Py_IsInitialized')}()"
        try:
            ready = s.int_value(initialized)
        except LLDBError as exc:
            if "undeclared identifier" not in str(exc):
                raise
            # lldb may not have found the modules (the executable is the dynamic loader,
            # as in ``ld.so python3.14``): add them from /proc/PID/maps and look again.
            self._add_missing_modules(s)
            try:
                ready = s.int_value(initialized)
            except LLDBError as exc2:
                if "undeclared identifier" in str(exc2):
                    raise AttachError(f"process {self.pid} is not a Python process: no Python "
                                      f"runtime symbols in it") from None
                raise
        if ready != 1:
            raise AttachError(f"the Python runtime in process {self.pid} is not initialised "
                              f"(starting up or shutting down): try again in a moment")
        text = s.value(f"(const char*){_fn('const char*', 'void', 'Py_GetVersion')}()")
        version, vt = _parse_version(text)
        if vt < MIN_VERSION:
            raise AttachError(f"process {self.pid} runs Python {version}, which is too old: "
                              f"heapwatch's agent needs Python {MIN_VERSION[0]}."
                              f"{MIN_VERSION[1]} or newer")
        note = self.while_stopped() if self.while_stopped is not None else None
        notes = [note] if note else []
        page = s.int_value(
            f"(unsigned long){_fn('void*', 'void*, unsigned long, int, int, int, long', 'mmap')}"
            f"((void*)0, {PAGE}, 3, 0x22, -1, 0)")
        if page in (0, (1 << 64) - 1, -1):
            raise LLDBError("mmap failed in the target")
        self._write_code(s, page + CODE_AT)
        holds_gil = s.int_value(f"(int){_fn('int', 'void', 'PyGILState_Check')}()") == 1
        if holds_gil:
            self._pending_call(s, page)
            return Injection("pending-call", version, 0.0, notes)
        parked, why = self._parked_in_syscall(s)
        if parked and platform.machine() in ("x86_64", "AMD64"):
            self._new_thread(s, page)
            return Injection("new-thread", version, 0.0, notes)
        self._pending_call(s, page)
        return Injection("deferred", version, 0.0, [*notes,
                         f"the main thread is {why}: the agent starts when it next runs "
                         f"Python code"])

    def _add_missing_modules(self, s: Session) -> None:
        """When the executable is the dynamic loader itself (``ld.so python3.14 ...``),
        lldb finds no other module: add each mapped ELF file at its load address."""
        listed = {line.split()[-1] for line in s.run("image list") if line.strip()}
        for path, slide in mapped_elf_files(self.pid).items():
            if path not in listed:
                s.run(f"target modules add {path}")
                s.run(f"target modules load --file {path} --slide {slide:#x}")

    def _select_main_thread(self, s: Session) -> None:
        for line in s.run("thread list"):
            m = _THREAD.search(line)
            if m and int(m[2]) == self.pid:
                s.run(f"thread select {m[1]}")
                return
        raise LLDBError(f"lldb shows no main thread for process {self.pid}")

    def _write_code(self, s: Session, addr: int) -> None:
        out = s.run(f"memory write --infile {self.code_file} {addr:#x}")
        if any(line.startswith("error") for line in out):
            raise LLDBError("cannot write the code into the target: " + " ".join(out))
        # the page is fresh from mmap (zeroed), so the string is NUL-terminated

    def _pending_call(self, s: Session, page: int) -> None:
        # Symbols cannot be passed as arguments (lldb: "Couldn't rewrite one of the
        # arguments"): take their addresses first, then call with plain numbers.
        run = self._address(s, _fn("int", "const char*", "PyRun_SimpleString"))
        rc = s.int_value(
            f"(int){_fn('int', 'int(*)(void*), void*', 'Py_AddPendingCall')}"
            f"((int(*)(void*)){run:#x}, (void*){page + CODE_AT:#x})")
        if rc != 0:
            raise AttachError(f"Py_AddPendingCall refused the call in process {self.pid} "
                              f"(its queue is full): try again in a moment")

    @staticmethod
    def _address(s: Session, symbol: str) -> int:
        addr = s.int_value(f"(unsigned long)(void*){symbol}")
        if addr == 0:
            raise LLDBError(f"no address for {symbol}")
        return addr

    def _parked_in_syscall(self, s: Session) -> tuple[bool, str]:
        regs: dict[str, int] = {}
        for line in s.run("register read rax rip"):
            name, _, rest = line.strip().partition(" = ")
            if name in ("rax", "rip") and rest:
                regs[name] = int(rest.split()[0], 16)
        if "rax" not in regs or "rip" not in regs:
            return False, "in code heapwatch cannot inspect"
        rax, rip = _signed(regs["rax"]), regs["rip"]
        raw = " ".join(s.run(f"memory read --size 1 --count 2 --format x {rip - 2:#x}"))
        insn = re.findall(r"0x([0-9a-fA-F]{2})\b", raw.split(":", 1)[-1])
        if not (-4095 <= rax <= -1 and [b.lower() for b in insn[:2]] == ["0f", "05"]):
            return False, "running native code without the GIL"
        frames = [m[1] for line in s.run("thread backtrace --count 6")
                  if (m := _FRAME.search(line))]
        bad = [f for f in frames if UNSAFE_FRAMES.search(f)]
        if bad:
            return False, f"inside {bad[0]}, where a new thread could deadlock"
        return True, ""

    def _new_thread(self, s: Session, page: int) -> None:
        args = page + ARGS_AT
        pointers = [self._address(s, expr) for expr in (
            _fn("int", "void", "PyGILState_Ensure"),
            _fn("int", "const char*", "PyRun_SimpleString"),
            _fn("void", "int", "PyGILState_Release"),
        )] + [page + CODE_AT]
        for i, ptr in enumerate(pointers):
            s.value(f"((unsigned long*){args:#x})[{i}] = {ptr:#x}UL")
        name = f"heapwatch_attach_{os.getpid()}_{int(time.time() * 1000) % 1_000_000}"
        # The routine names no symbol: it calls through the pointers stored above.
        out = s.run(
            "expression --top-level -- "
            f'extern "C" void *{name}(void *arg) {{ void **a = (void**)arg; '
            "int st = ((int(*)(void))a[0])(); "
            "((int(*)(const char*))a[1])((const char*)a[3]); "
            "((void(*)(int))a[2])(st); return (void*)0; }")
        if any(line.startswith("error") for line in out):
            raise LLDBError("lldb could not compile the thread routine: " + " ".join(out))
        routine = self._address(s, _fn("void*", "void*", name))
        create = _fn("int", "unsigned long*, const void*, void*(*)(void*), void*",
                     "pthread_create")
        rc = s.int_value(
            f"(int){create}((unsigned long*){page + TID_AT:#x}, (const void*)0, "
            f"(void*(*)(void*)){routine:#x}, (void*){args:#x})")
        if rc != 0:
            raise AttachError(f"pthread_create failed in process {self.pid} (error {rc})")


def _elf_min_vaddr(path: str) -> int | None:
    """The lowest PT_LOAD address of a 64-bit little-endian ELF file; None otherwise."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            phoff = int.from_bytes(head[32:40], "little")
            phentsize = int.from_bytes(head[54:56], "little")
            phnum = int.from_bytes(head[56:58], "little")
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return None
    loads = []
    for i in range(phnum):
        entry = table[i * phentsize:(i + 1) * phentsize]
        if len(entry) >= 24 and int.from_bytes(entry[0:4], "little") == 1:
            loads.append(int.from_bytes(entry[16:24], "little"))
    return min(loads) & ~0xFFF if loads else None


def mapped_elf_files(pid: int, proc: str = "/proc") -> dict[str, int]:
    """{path: slide} for the ELF files mapped in ``pid``, from /proc/PID/maps."""
    lowest: dict[str, int] = {}
    try:
        with open(f"{proc}/{pid}/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 6 or not parts[5].startswith("/") or int(parts[2], 16) != 0:
                    continue
                path = parts[5].strip()
                start = int(parts[0].split("-")[0], 16)
                if start < lowest.get(path, 1 << 64):
                    lowest[path] = start
    except OSError:
        return {}
    out: dict[str, int] = {}
    for path, start in lowest.items():
        vaddr = _elf_min_vaddr(path)
        if vaddr is not None:
            out[path] = start - vaddr
    return out


def _resume_if_stopped(pid: int) -> None:
    """An lldb bug can leave the target stopped after a detach."""
    for _ in range(20):
        state = proc_state(pid)
        if state not in ("T", "t"):
            return
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            return
        time.sleep(0.05)
