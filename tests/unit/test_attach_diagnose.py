"""heapwatch attach's pre-flight diagnosis, on faked /proc trees: the conditions it
explains (another user's process, Yama's ptrace scope, a process already traced) cannot
all be produced for real on a test machine, where the tests run as root."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest

from heapwatch.attach import diagnose
from heapwatch.attach.diagnose import Me, Target
from heapwatch.attach.errors import AttachError, AttachPermissionError
from heapwatch.attach.gdb import refusal
from heapwatch.attach.inject import entry_code
from heapwatch.attach.remote_exec import classify

PID = 4242
ME = Me(uid=1000, pid=777, cap_sys_ptrace=False)
ROOT = Me(uid=0, pid=777, cap_sys_ptrace=True)

MAPS_311 = """\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1 /opt/py/bin/python3.11
7f0000000000-7f0000100000 r--p 00000000 08:01 2 /opt/py/lib/libpython3.11.so.1.0
7f0000200000-7f0000300000 r-xp 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
"""


def fake_proc(tmp: Path, *, uid: int = 1000, tracer: int = 0, state: str = "S (sleeping)",
              maps: str = MAPS_311, yama: int | None = None, ppid: int = 1,
              environ: str = "", cmdline: str = "python\0app.py\0",
              self_cap: str = "0000000000000000") -> str:
    proc = tmp / "proc"
    d = proc / str(PID)
    d.mkdir(parents=True)
    (d / "status").write_text(
        f"Name:\tpython\nState:\t{state}\nPPid:\t{ppid}\nTracerPid:\t{tracer}\n"
        f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (d / "maps").write_text(maps)
    (d / "cmdline").write_text(cmdline)
    (d / "environ").write_text(environ)
    (d / "stat").write_text(f"{PID} (python) {state[0]} {ppid} 1 1 0\n")
    os.symlink("/opt/py/bin/python3.11", d / "exe")
    os.symlink("/srv/app", d / "cwd")
    if os.geteuid() == 0:
        os.chown(d, uid, uid)  # as for a dumpable process
    (proc / "self").mkdir()
    (proc / "self" / "status").write_text(f"Name:\theapwatch\nCapEff:\t{self_cap}\n")
    if tracer:
        (proc / str(tracer)).mkdir()
        (proc / str(tracer) / "comm").write_text("gdb\n")
        (proc / str(tracer) / "status").write_text("PPid:\t1\n")
    if yama is not None:
        (proc / "sys" / "kernel" / "yama").mkdir(parents=True)
        (proc / "sys" / "kernel" / "yama" / "ptrace_scope").write_text(f"{yama}\n")
    return str(proc)


def look(proc: str) -> Target:
    """inspect() on a fake tree; its files belong to whoever runs the test, which
    inspect() would read as "not dumpable" for another uid: that is tested apart."""
    return dataclasses.replace(diagnose.inspect(PID, proc), dumpable=True)


def target(**kw: Any) -> Target:
    base: dict[str, Any] = dict(pid=PID, name="python", state="S", uids=(1000, 1000, 1000, 1000),
                                gid=1000, tracer_pid=0, exe="/opt/py/bin/python3.11",
                                cmdline=("python", "app.py"), cwd="/srv/app",
                                runtime="/opt/py/lib/libpython3.11.so.1.0", version=(3, 11),
                                free_threaded=False, dumpable=True)
    base.update(kw)
    return Target(**base)


# -- reading /proc ------------------------------------------------------------------------------

def test_inspect_reads_what_attach_needs(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, uid=1000)
    t = diagnose.inspect(PID, proc)
    assert (t.pid, t.name, t.state, t.uid, t.gid, t.tracer_pid) == (PID, "python", "S", 1000,
                                                                   1000, 0)
    assert t.exe == "/opt/py/bin/python3.11" and t.cwd == "/srv/app"
    assert t.cmdline == ("python", "app.py")
    assert t.runtime == "/opt/py/lib/libpython3.11.so.1.0" and t.version == (3, 11)
    assert t.free_threaded is False


def test_no_such_process_and_zombies(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    with pytest.raises(AttachError, match=r"^no process 999: check the pid"):
        diagnose.inspect(999, proc)
    zombie = fake_proc(tmp_path / "z", state="Z (zombie)")
    with pytest.raises(AttachError, match="has exited"):
        diagnose.inspect(PID, zombie)


@pytest.mark.parametrize(("maps", "runtime", "version", "free"), [
    (MAPS_311, "/opt/py/lib/libpython3.11.so.1.0", (3, 11), False),
    ("1-2 r-xp 00000000 08:01 1 /usr/lib/libpython3.13t.so.1.0\n",
     "/usr/lib/libpython3.13t.so.1.0", (3, 13), True),
    ("1-2 r-xp 00000000 08:01 1 /root/.cache/py/usr/bin/python3.14\n"
     "3-4 r-xp 00000000 08:01 2 /root/.cache/py/usr/lib/ld-linux-x86-64.so.2\n",
     "/root/.cache/py/usr/bin/python3.14", (3, 14), False),
    ("1-2 r-xp 00000000 08:01 1 /usr/bin/python3.8\n", "/usr/bin/python3.8", (3, 8), False),
    ("1-2 r-xp 00000000 08:01 1 /usr/lib/libpython2.7.so.1.0\n",
     "/usr/lib/libpython2.7.so.1.0", (2, 7), False),
    ("1-2 r-xp 00000000 08:01 1 /venv/bin/python\n", "/venv/bin/python", None, False),
    ("1-2 r-xp 00000000 08:01 1 /usr/bin/sleep\n3-4 r--p 00000000 08:01 2 /usr/lib/libc.so.6\n",
     None, None, False),
])
def test_the_python_runtime_is_found_in_maps(maps: str, runtime: str | None,
                                             version: tuple[int, int] | None, free: bool) -> None:
    assert diagnose.python_in_maps(maps) == (runtime, version, free)


def test_not_python_and_too_old() -> None:
    with pytest.raises(AttachError, match=rf"^process {PID} \(sleep\) is not a Python process"):
        diagnose.check_python(target(runtime=None, version=None, exe="/usr/bin/sleep"))
    with pytest.raises(AttachError, match=r"runs Python 3\.8, which is too old: heapwatch's "
                                          r"agent needs Python 3\.10 or newer"):
        diagnose.check_python(target(version=(3, 8)))
    with pytest.raises(AttachError, match=r"Python 2\.7, which is too old"):
        diagnose.check_python(target(version=(2, 7)))
    diagnose.check_python(target(version=(3, 10)))
    diagnose.check_python(target(version=None))  # unknown: the debugger asks Py_GetVersion


def test_capabilities_from_status() -> None:
    assert diagnose.has_cap_sys_ptrace("CapEff:\t000001ffffffffff\n") is True
    assert diagnose.has_cap_sys_ptrace("CapEff:\t0000000000080000\n") is True  # bit 19 only
    assert diagnose.has_cap_sys_ptrace("CapEff:\t0000000000000000\n") is False
    assert diagnose.has_cap_sys_ptrace("") is False


# -- permission: say which ------------------------------------------------------------------

def test_already_traced_names_the_tracer(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, tracer=5150)
    t = look(proc)
    with pytest.raises(AttachPermissionError) as err:
        diagnose.check_access(t, ME, proc=proc)
    assert str(err.value) == (f"process {PID} is already being traced by process 5150 (gdb): a "
                              f"debugger or another attach holds it; detach that first (only "
                              f"one tracer at a time)")


def test_another_users_process(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, uid=1001)
    t = look(proc)
    with pytest.raises(AttachPermissionError) as err:
        diagnose.check_access(t, ME, proc=proc)
    owner, me = diagnose.user_name(1001), diagnose.user_name(1000)
    assert str(err.value) == (f"permission denied: process {PID} belongs to user {owner} and "
                              f"heapwatch runs as {me}: run heapwatch as {owner} (or as root)")


def test_root_crosses_users_only_with_force(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, uid=1001)
    t = look(proc)
    with pytest.raises(AttachPermissionError, match=r"unless you add --force$"):
        diagnose.check_access(t, ROOT, proc=proc)
    diagnose.check_access(t, ROOT, force=True, proc=proc)


@pytest.mark.parametrize(("scope", "me", "ppid", "message"), [
    (0, ME, 1, None),
    (1, ME, 1, "kernel.yama.ptrace_scope is 1, so only a parent process may attach to "
               f"process {PID}: run heapwatch as root, or allow it with "
               "'sysctl kernel.yama.ptrace_scope=0'"),
    (1, ME, ME.pid, None),  # heapwatch is the target's parent
    (1, ROOT, 1, None),     # CAP_SYS_PTRACE
    (2, ME, ME.pid, "kernel.yama.ptrace_scope is 2 (only root, or a process with "
                    "CAP_SYS_PTRACE, may attach): run heapwatch as root"),
    (2, ROOT, 1, None),
    (3, ROOT, 1, "attaching is disabled on this machine: kernel.yama.ptrace_scope is 3"),
])
def test_yama_ptrace_scope(tmp_path: Path, scope: int, me: Me, ppid: int,
                           message: str | None) -> None:
    proc = fake_proc(tmp_path, yama=scope, ppid=ppid, uid=me.uid)
    t = look(proc)
    if message is None:
        diagnose.check_access(t, me, proc=proc)
        return
    with pytest.raises(AttachPermissionError) as err:
        diagnose.check_access(t, me, proc=proc)
    assert message in str(err.value)


def test_not_dumpable(tmp_path: Path) -> None:
    with pytest.raises(AttachPermissionError, match="is not dumpable"):
        diagnose.check_access(target(uids=(1000,) * 4, dumpable=False), ME, proc="/nonexistent")
    # /proc/PID of a process that is not dumpable belongs to root, whatever its uid
    if os.geteuid() != 0:
        pytest.skip("faking root-owned /proc files needs root")
    proc = fake_proc(tmp_path, uid=1000)
    assert diagnose.inspect(PID, proc).dumpable is True
    os.chown(os.path.join(proc, str(PID)), 0, 0)
    assert diagnose.inspect(PID, proc).dumpable is False


def test_a_refused_attach_is_explained_from_a_fresh_look(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, tracer=5150)
    assert "already being traced by process 5150" in diagnose.explain_refusal(
        target(), ME, proc=proc)
    clean = fake_proc(tmp_path / "c")
    assert diagnose.explain_refusal(target(), ME, proc=clean).startswith(
        f"permission denied: the kernel refused to let heapwatch trace process {PID}")


def test_me_from_proc(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, self_cap="000001ffffffffff")
    assert Me.current(proc).cap_sys_ptrace is True
    assert Me.current(fake_proc(tmp_path / "n")).cap_sys_ptrace is False


# -- 3.14: remote debugging ----------------------------------------------------------------

@pytest.mark.parametrize(("environ", "cmdline", "why"), [
    ("PATH=/bin\0PYTHON_DISABLE_REMOTE_DEBUG=1\0", "python\0app.py\0",
     "PYTHON_DISABLE_REMOTE_DEBUG is set in its environment"),
    ("PYTHON_DISABLE_REMOTE_DEBUG=\0", "python\0app.py\0", None),  # empty: not set
    ("", "python\0-X\0disable-remote-debug\0app.py\0",
     "it was started with -X disable-remote-debug"),
    ("", "python\0-Xdisable-remote-debug\0app.py\0", "it was started with -X disable-remote-debug"),
    ("", "python\0app.py\0", None),
])
def test_remote_debugging_disabled(tmp_path: Path, environ: str, cmdline: str,
                                   why: str | None) -> None:
    proc = fake_proc(tmp_path, environ=environ, cmdline=cmdline)
    assert diagnose.remote_debug_disabled(PID, proc) == why


def test_remote_exec_errors_are_one_line() -> None:
    assert classify("RuntimeError: Remote debugging is not enabled in the remote process",
                    PID).args[0].startswith(f"remote debugging is disabled in process {PID}")
    msg = str(classify("RuntimeError: Can't send commands from a Python 3.14 process to a "
                       "Python 3.13 process", PID))
    assert msg.startswith("Can't send commands from a Python 3.14 process to a Python 3.13 "
                          "process: give an interpreter")
    assert isinstance(classify("PermissionError: [Errno 1] Operation not permitted", PID),
                      AttachPermissionError)
    assert str(classify("OSError: No such file or directory: '/proc/1/maps'", PID)).startswith(
        f"no process {PID}")


def test_proc_state(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, state="T (stopped)")
    assert diagnose.proc_state(PID, proc) == "T"
    assert diagnose.proc_state(PID + 1, proc) is None


# -- gdb and the injected code ----------------------------------------------------------------

def test_gdb_is_refused_with_the_reason() -> None:
    assert refusal(None, None, False).startswith("gdb is not installed: use --method lldb")
    amx = refusal("/usr/bin/gdb", (13, 1), True)
    assert amx.startswith("gdb 13.1 cannot call functions in a process on this CPU")
    assert "use --method lldb (install lldb" in amx
    assert refusal("/usr/bin/gdb", (15, 2), False).startswith(
        "heapwatch's gdb method is not validated (gdb 15.2 found)")


def test_the_injected_code_binds_nothing_and_never_raises(tmp_path: Path) -> None:
    loader = tmp_path / "loader.py"
    done = tmp_path / "ran"
    loader.write_text(f"with open({str(done)!r}, 'w') as f:\n    f.write(ORIGIN + ' ' + D)\n")
    code = entry_code(str(loader), "debugger")
    main: dict[str, Any] = {"__builtins__": __builtins__, "open": None, "exec": None}
    exec(compile(code, "<injected>", "exec"), main)  # a script that shadows open and exec
    assert set(main) == {"__builtins__", "open", "exec"}
    deadline = time.monotonic() + 10
    while not (done.exists() and done.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done.read_text() == f"debugger {tmp_path}"  # it ran, on another thread
    missing = entry_code(str(tmp_path / "gone.py"), "remote")
    fresh: dict[str, Any] = {}
    exec(compile(missing, "<injected>", "exec"), fresh)
    assert set(fresh) == {"__builtins__"}
    with pytest.raises(ValueError):
        entry_code(str(loader), "elsewhere")
