"""The temp files of the target only (issue 12), and what it costs the target to count them.

On the native core a C audit hook (``_native/audit.c``) notes the temp entries the target
creates; on both cores the temp files it holds open are counted; on the pure-Python core
no audit hook is added at all. The same contract runs on both cores where it applies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from heapwatch.agent import process

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "src")


@pytest.fixture()
def watching(census_core: str) -> Iterator[str]:
    process.watch_files()
    try:
        yield census_core
    finally:
        process.stop_watching()


def tmp_files() -> int:
    n = process.process_stat().tmp_files
    assert n is not None
    return n


def closed_file(path: Any, mode: str = "w") -> None:
    with open(path, mode):
        pass


def run_child(script: str, core_name: str, *args: str) -> Any:
    """Run ``script`` in a fresh interpreter on ``core_name``; it prints one JSON line."""
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("HEAPWATCH_NO_NATIVE", None)
    head = ("import sys\nfrom heapwatch.agent import core\n"
            f"core.use({core_name!r})\n")
    proc = subprocess.run([sys.executable, "-c", head + textwrap.dedent(script), *args],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_files_the_target_holds_open_are_counted_on_both_cores(watching: str,
                                                              tmp_path: Any) -> None:
    before = tmp_files()
    held = [tempfile.NamedTemporaryFile(dir=tmp_path) for _ in range(3)]  # noqa: SIM115
    try:
        assert tmp_files() == before + 3
    finally:
        for f in held:
            f.close()  # and deleted
    assert tmp_files() == before


def test_files_the_target_created_and_closed_are_counted_on_the_native_core(
        watching: str, tmp_path: Any) -> None:
    before = tmp_files()
    made = [tmp_path / f"str-{i}" for i in range(3)]
    for p in made:
        closed_file(str(p))
    made.append(tmp_path / "bytes")
    closed_file(os.fsencode(made[-1]), "wb")
    made.append(tmp_path / "pathlib")
    made[-1].write_text("x")
    made.append(tmp_path / "os-open")
    os.close(os.open(made[-1], os.O_CREAT | os.O_WRONLY, 0o600))
    made.append(tmp_path / "dir")
    made[-1].mkdir()
    closed_file(tmp_path / "str-0")  # created again: one entry
    with open(tmp_path / "str-1", "a"):
        pass
    native = watching == "native"
    assert process.counts_created() is native
    assert tmp_files() == before + (len(made) if native else 0)
    for p in made[:3]:
        p.unlink()
    assert tmp_files() == before + (len(made) - 3 if native else 0)


def test_opening_without_creating_is_not_creating(watching: str, tmp_path: Any) -> None:
    existing = tmp_path / "old"
    existing.write_text("x")  # before the baseline: noted, and already counted in it
    os.utime(existing)
    before = tmp_files()
    for mode in ("r", "r+", "rb"):
        with open(existing, mode):
            pass
    os.close(os.open(existing, os.O_RDONLY))
    assert tmp_files() == before


def test_another_process_temp_files_are_not_counted(watching: str, tmp_path: Any) -> None:
    before = tmp_files()
    subprocess.run([sys.executable, "-c",
                    f"import os; open({str(tmp_path / 'theirs')!r}, 'w'); "
                    f"os.mkdir({str(tmp_path / 'their-dir')!r})"], check=True)
    assert tmp_files() == before


def test_the_agent_thread_files_are_not_counted(census_core: str, tmp_path: Any) -> None:
    """What the agent's own thread creates in the temp directory is not the target's."""
    ready, made = threading.Event(), threading.Event()
    go = threading.Event()

    def agent_like() -> None:
        ready.set()
        go.wait(30)
        closed_file(tmp_path / "agents")
        os.mkdir(tmp_path / "agents-dir")
        made.set()

    t = threading.Thread(target=agent_like)
    t.start()
    assert ready.wait(30) and t.ident is not None
    process.watch_files(ignore_thread=t.ident)
    try:
        before = tmp_files()
        go.set()
        assert made.wait(30)
        t.join(30)
        assert tmp_files() == before
        closed_file(tmp_path / "targets")
        assert tmp_files() == before + (1 if census_core == "native" else 0)
    finally:
        process.stop_watching()
        process._WATCH.ignore_threads.discard(t.ident)


def test_nothing_is_noted_after_stop(census_core: str, tmp_path: Any) -> None:
    process.watch_files()
    process.stop_watching()
    closed_file(tmp_path / "after-stop")
    assert process._WATCH.pending_str == set() and process._WATCH.created == set()
    if census_core == "native":
        from heapwatch import _native

        assert _native.audit_state() == (True, False)  # still in the interpreter, inert


def test_a_subinterpreter_is_left_alone(watching: str, tmp_path: Any) -> None:
    """Events of another interpreter (which may run under its own GIL since 3.12) are not
    touched: its objects are not ours to copy, its GIL does not guard our sets."""
    testcapi = pytest.importorskip("_testcapi")
    before = tmp_files()
    path = str(tmp_path / "from-a-subinterpreter")
    assert testcapi.run_in_subinterp(f"open({path!r}, 'w').close()") == 0
    assert os.path.exists(path)
    assert tmp_files() == before
    closed_file(tmp_path / "from-main")
    assert tmp_files() == before + (1 if watching == "native" else 0)


class Sneaky(str):
    """A str subclass whose methods raise: the hook must only read its data."""

    def __hash__(self) -> int:
        raise RuntimeError("the hook hashed the target's object")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("the hook compared the target's object")

    def startswith(self, *args: Any) -> bool:  # type: ignore[override]
        raise RuntimeError("the hook called a method of the target's object")


class Index:
    def __index__(self) -> int:
        raise RuntimeError("the hook asked an object for its int")


def test_nothing_raises_into_the_target(watching: str, tmp_path: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    creat = os.O_CREAT | os.O_WRONLY
    odd = str(tmp_path / "odd-\udcff-name")  # a surrogate: not valid UTF-8 on its own
    for args in [(), (1,), (1, 2), (Sneaky(tmp_path / "s"), None, creat),
                 (str(tmp_path / "x"), None, 10**40), (str(tmp_path / "x"), None, -(10**40)),
                 (str(tmp_path / "x"), None, Index()), (str(tmp_path / "x"), None, "w"),
                 (object(), None, creat), (None, None, None), (odd, None, creat),
                 (b"\xff" + os.fsencode(tmp_path), None, creat)]:
        sys.audit("open", *args)
        sys.audit("os.mkdir", *args)
    closed_file(Sneaky(tmp_path / "sneaky"))
    os.mkdir(Sneaky(tmp_path / "sneaky-dir"))
    closed_file(odd)
    monkeypatch.setattr(process._WATCH, "limit", 2)
    process.watch_files()  # the hook is handed the new limit
    before = tmp_files()
    for i in range(6):
        closed_file(tmp_path / f"many-{i}")  # past the limit: dropped, never an error
    assert tmp_files() >= before
    assert len(process._WATCH.created) <= 2


def test_the_hook_runs_no_python_code(census_core: str, tmp_path: Any) -> None:
    """In a fresh interpreter (this one carries other tests' Python audit hooks): an id(),
    temp entries made through an object whose __fspath__ is Python and through a str
    subclass with Python methods, and events raised by hand with such objects run no
    Python function but the one __fspath__ call os.open itself makes. (CPython turns
    profiling off inside audit hooks written in Python, so a Python hook is caught by
    test_no_python_audit_hook_is_added and by the counters, not by the profile.)"""
    got = run_child("""
        import json, os, sys
        from heapwatch.agent import process
        d = sys.argv[1]
        counted = []

        class PathLike:
            path = os.path.join(d, "via-fspath")

            def __fspath__(self):
                counted.append("__fspath__")
                return self.path

        class Name(str):
            def __hash__(self):
                counted.append("__hash__")
                return 0

            def __eq__(self, other):
                counted.append("__eq__")
                return False

        process.watch_files()
        before = process.process_stat().tmp_files
        calls = []

        def profile(frame, event, arg):
            if event == "call":
                calls.append(frame.f_code.co_name)

        obj, via_fspath = object(), PathLike()
        names = [Name(os.path.join(d, n)) for n in ("via-subclass", "dir-via-subclass",
                                                    "by-hand")]
        creat = os.O_CREAT | os.O_WRONLY
        sys.setprofile(profile)
        id(obj)
        os.close(os.open(via_fspath, creat, 0o600))
        os.close(os.open(names[0], creat, 0o600))
        os.mkdir(names[1])
        sys.audit("open", names[2], None, creat)
        sys.audit("open", via_fspath, None, creat)
        sys.audit("os.mkdir", via_fspath, 0o700, -1)
        sys.setprofile(None)
        after = process.process_stat().tmp_files
        print(json.dumps({"calls": calls, "counted": counted, "made": after - before}))
    """, census_core, str(tmp_path))
    assert got["calls"] == ["__fspath__"] and got["counted"] == ["__fspath__"]
    # the event raised by hand names a file that does not exist: dropped at the count
    assert got["made"] == (3 if census_core == "native" else 0)


def test_no_python_audit_hook_is_added(census_core: str) -> None:
    """The native core adds its C hook, once; the pure-Python core adds no hook at all."""
    got = run_child("""
        import json, sys
        added = []
        sys.addaudithook(lambda e, a: added.append(e) if e == "sys.addaudithook" else None)
        from heapwatch.agent import process
        for _ in range(3):
            process.watch_files()
            process.process_stat()
        from heapwatch.agent import core
        c_hook = bool(core.native() and core.native().audit_state()[0])
        print(json.dumps({"added": len(added), "created": process.counts_created(),
                          "c_hook": c_hook}))
    """, census_core)
    native = census_core == "native"
    assert got == {"added": 1 if native else 0, "created": native, "c_hook": native}


@pytest.mark.parametrize("refusal", ["RuntimeError", "PermissionError"])
def test_a_refused_hook_leaves_the_held_files_count(refusal: str) -> None:
    """Another audit hook may refuse new hooks (a RuntimeError is swallowed by CPython, any
    other Exception returned): no error reaches the target, the held files are counted."""
    from heapwatch.agent import core

    why = core.load_native()[1]
    if why is not None:
        pytest.skip(f"the native core cannot run here: {why}")
    got = run_child(f"""
        import json, sys

        def refuse(event, args):
            if event == "sys.addaudithook":
                raise {refusal}("no more hooks")

        sys.addaudithook(refuse)
        from heapwatch.agent import process
        process.watch_files()
        n = process.process_stat().tmp_files
        process.watch_files()
        print(json.dumps({{"created": process.counts_created(), "n": n}}))
    """, "native")
    assert got["created"] is False and isinstance(got["n"], int)


def test_a_forked_child_forgets_the_parent_files(census_core: str, tmp_path: Any) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    got = run_child("""
        import json, os, sys
        from heapwatch.agent import process
        d = sys.argv[1]
        process.watch_files()
        base = process.process_stat().tmp_files
        for i in range(2):
            open(os.path.join(d, f"parent-{i}"), "w").close()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            out = {"pending": len(process._WATCH.pending_str) + len(process._WATCH.created),
                   "active": process._WATCH.active}
            native = core.native()
            out["native_active"] = native.audit_state()[1] if native else None
            open(os.path.join(d, "child-unwatched"), "w").close()  # before the child's agent
            process.watch_files()  # as the child's agent does
            first = process.process_stat().tmp_files
            open(os.path.join(d, "child-0"), "w").close()
            out["child"] = [base, first, process.process_stat().tmp_files]
            os.write(w, json.dumps(out).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            child = json.loads(f.read())
        os.waitpid(pid, 0)
        child["parent"] = process.process_stat().tmp_files - base
        print(json.dumps(child))
    """, census_core, str(tmp_path))
    native = census_core == "native"
    assert got["pending"] == 0 and got["active"] is False
    assert got["native_active"] in (False, None)
    base, first, then = got["child"]
    assert first == base  # neither the parent's files nor the one made before watching
    assert then - first == (1 if native else 0)
    assert got["parent"] == (2 if native else 0)  # the child's files are not the parent's


@pytest.mark.parametrize("core_name", ["native", "python", None])
def test_the_report_says_once_when_closed_temp_files_were_not_seen(core_name: str | None
                                                                   ) -> None:
    from heapwatch.analysis import analyze
    from heapwatch.analysis.findings import TMP_FILES_NOTE
    from heapwatch.model import ProcessStat, Snapshot
    from heapwatch.store import RunData

    snaps = [Snapshot(seq=i + 1, pid=7, t=1000.0 + i, mono=float(i), reason="interval",
                      duration_s=0.01, phase=None, traced=False,
                      process=ProcessStat(rss=50 << 20, fds=8, tmp_files=2), types={"dict": 9},
                      containers=(), items=()) for i in range(20)]
    agent = {"pid": 7, "trace": "off", "python": "3.11.7", "core": core_name}
    notes = analyze(RunData(path="/tmp/x/run.sqlite", meta={"agent": agent},
                            snapshots=snaps)).notes
    assert notes.count(TMP_FILES_NOTE) == (1 if core_name == "python" else 0)


def test_the_native_fd_listing_agrees_with_pythons(monkeypatch: Any, tmp_path: Any) -> None:
    """One native call (the GIL released once) counts what the per-descriptor readlinks
    count: descriptors, sockets, files held open under the roots."""
    import socket

    from heapwatch.agent import core, process

    if core.load_native()[0] is None:
        pytest.skip(f"no native core: {core.load_native()[1]}")
    held = open(tmp_path / "held.txt", "w")  # noqa: SIM115 - held open on purpose
    sock = socket.socket()
    try:
        roots = (str(tmp_path),)
        native = process._fds_and_sockets(roots)
        monkeypatch.setattr(process, "_native_fd_targets", lambda: None)
        python = process._fds_and_sockets(roots)
        assert native == python
        assert native[1] is not None and native[1] >= 1
        assert native[2] == {str(tmp_path / "held.txt")}
    finally:
        held.close()
        sock.close()
