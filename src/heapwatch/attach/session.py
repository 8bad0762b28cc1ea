"""One ``heapwatch attach``: check, inject, wait for the agent, follow, stop, clean up.

The agent reports back through the run store (its ``agent`` meta) and the ``claim``
file of the private directory; the CLI follows the store like ``heapwatch run`` does and
ends the recording by sending ``stop`` over the agent's control socket: final snapshot,
the agent's thread ends, tracemalloc is stopped if the agent started it.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import heapwatch
from heapwatch import redact
from heapwatch.agent import core, registry
from heapwatch.agent.sampler import AgentConfig
from heapwatch.agent.sites import DEFAULT_SAMPLE_INTERVAL
from heapwatch.api import run_meta
from heapwatch.attach import diagnose
from heapwatch.attach.base import Injection, Injector
from heapwatch.attach.errors import (
    AttachError,
    AttachInterrupted,
    AttachPermissionError,
    NoDebuggerError,
)
from heapwatch.attach.gdb import GDBInjector
from heapwatch.attach.guard import Guard
from heapwatch.attach.inject import Outcome, Workspace
from heapwatch.attach.lldb import LLDBInjector, find_lldb
from heapwatch.attach.lock import AttachLock
from heapwatch.attach.remote_exec import (
    MIN_REMOTE_EXEC,
    RemoteExecInjector,
    cancel_pending,
    interpreter_for,
)
from heapwatch.errors import AgentError
from heapwatch.launch import RESERVE_BYTES, Interrupted, disk_is_full, send_command
from heapwatch.observe import parent_pid
from heapwatch.rundir import prepare_run_dir
from heapwatch.store import STORE_NAME, LiveReader, Writer

METHODS = ("auto", "remote-exec", "lldb", "gdb")
REMOTE_PICKUP_S = 2.0  # in auto mode: how long the main thread gets to run the script
LOADER_GRACE_S = 30.0  # the loader has claimed the start: how long it may take to finish


@dataclass
class AttachOptions:
    pid: int
    run_dir: str
    interval: float
    duration: float | None
    trace: str
    trace_depth: int
    method: str = "auto"
    python: str | None = None
    force: bool = False
    start_timeout: float = 10.0
    tree: bool = False  # enter the Python descendants too; later forks get an agent
    show_names: bool = False
    sample_interval: int | None = None  # the sampler's mean bytes; None: its default


@dataclass
class AttachResult:
    run_dir: str
    method: str
    how: str
    ended_by: str  # "duration" | "interrupt" | "stopped" | "exit"
    stopped_s: float
    notes: list[str] = field(default_factory=list)


Notice = Callable[[str], None]
Started = Callable[[str, str, float], None]  # (how, method, seconds the target was stopped)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return diagnose.proc_state(pid) not in ("Z", "X", None)


def preflight(opts: AttachOptions, me: diagnose.Me | None = None) -> diagnose.Target:
    """Every check that needs no debugger; raises AttachError with the reason."""
    if opts.method not in METHODS:
        raise AttachError(f"unknown method {opts.method!r}: choose from {', '.join(METHODS)}")
    me = me or diagnose.Me.current()
    target = diagnose.inspect(opts.pid)
    if opts.pid == me.pid:
        raise AttachError("heapwatch cannot attach to itself: use heapwatch.start() in-process")
    diagnose.check_access(target, me, force=opts.force)
    if target.state in ("T", "t"):
        raise AttachError(f"process {opts.pid} is stopped (SIGSTOP, Ctrl-Z or a debugger): "
                          f"continue it first (kill -CONT {opts.pid})")
    if not diagnose.same_mount_namespace(opts.pid):
        raise AttachError(f"process {opts.pid} runs in another mount namespace (a container?): "
                          f"run heapwatch inside it, where the target can read heapwatch's files")
    diagnose.check_python(target)
    _refuse_second_agent(opts.pid)
    return target


def _refuse_second_agent(pid: int) -> None:
    info = registry.lookup(pid)
    if not info or not info.get("control"):
        return
    try:
        reply = send_command(str(info["control"]), "ping", timeout=5.0)
    except AgentError:
        return  # a stale entry: the process that registered it is gone or was killed
    if reply.split()[:2] != ["ok", str(pid)]:
        return  # not the agent of this process (a reused pid, a dead agent's socket)
    store = str(info.get("store") or "")
    run_dir = os.path.dirname(store) if store.endswith(STORE_NAME) else store
    raise AttachError(f"a heapwatch agent already runs in process {pid} (recording to "
                      f"{run_dir}): follow it with 'heapwatch report {run_dir}', end it with "
                      f"'heapwatch stop {pid}'")


def plan(opts: AttachOptions, target: diagnose.Target, notice: Notice) -> list[str]:
    """The methods to try, in order."""
    method = opts.method
    if method == "gdb":
        return ["gdb"]
    new_enough = target.version is not None and target.version >= MIN_REMOTE_EXEC
    disabled = diagnose.remote_debug_disabled(opts.pid) if new_enough else None
    if method == "remote-exec":
        if target.version is not None and not new_enough:
            raise AttachError(f"process {opts.pid} runs Python {target.version_text}: "
                              f"sys.remote_exec needs 3.14 or newer; use --method lldb")
        if disabled:
            raise AttachError(f"remote debugging is disabled in process {opts.pid} ({disabled})"
                              f": use --method lldb to inject through the debugger instead")
        if interpreter_for(target, opts.python) is None:
            raise AttachError(_no_interpreter(target))
        return ["remote-exec"]
    if method == "lldb" or not new_enough:
        if target.free_threaded:
            raise AttachError(f"process {opts.pid} runs a free-threaded CPython build: the lldb "
                              f"method is not validated there" + (
                                  "; use --method remote-exec" if new_enough else ""))
        find_lldb()
        return ["lldb"]
    if disabled:
        raise AttachError(f"remote debugging is disabled in process {opts.pid} ({disabled}): "
                          f"heapwatch respects that; --method lldb injects through the debugger "
                          f"instead")
    try:
        find_lldb()
        have_lldb = True
    except NoDebuggerError:
        have_lldb = False
    if interpreter_for(target, opts.python) is None:
        if not have_lldb:
            raise NoDebuggerError(_no_interpreter(target) + ", or install lldb "
                                  "(apt-get install -y lldb)")
        notice(_no_interpreter(target) + ": using lldb instead")
        return ["lldb"]
    return ["remote-exec", "lldb"] if have_lldb else ["remote-exec"]


def _no_interpreter(target: diagnose.Target) -> str:
    exe = os.path.basename(target.exe or "?")
    return (f"no Python {target.version_text} interpreter to call sys.remote_exec with (the "
            f"target's executable is {exe}): give one with --python")


def _injector(name: str, opts: AttachOptions, target: diagnose.Target, ws: Workspace,
              while_stopped: Callable[[], str | None] | None = None,
              guard: Guard | None = None) -> Injector:
    if name == "gdb":
        return GDBInjector()
    if name == "remote-exec":
        python = interpreter_for(target, opts.python)
        assert python is not None
        return RemoteExecInjector(target, ws.remote_script, python)
    code = ws.code("debugger")
    code_file = os.path.join(ws.path, "code.bin")
    fd = os.open(code_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(code + b"\0")
    return LLDBInjector(opts.pid, code, code_file, while_stopped=while_stopped, guard=guard)


def _wait_outcome(ws: Workspace, pid: int, timeout: float, until: tuple[str, ...]) -> Outcome:
    deadline = time.monotonic() + timeout
    while True:
        out = ws.outcome()
        if out.state not in until or time.monotonic() >= deadline:
            return out
        if not alive(pid):
            return Outcome("exited")
        time.sleep(0.05)


class Recorder:
    """State of one attach, so that everything is undone whatever happens."""

    def __init__(self, opts: AttachOptions, status: Notice | None, notice: Notice,
                 started: Started | None = None) -> None:
        self.opts = opts
        self.status = status
        self.notice = notice
        self.started = started
        self.me = diagnose.Me.current()
        self.attempts: list[dict[str, Any]] = []
        self.remote_issued = False
        self.writer: Writer | None = None
        self.ws: Workspace | None = None
        self.injection: Injection | None = None
        self.method = ""
        self.log: dict[str, Any] = {}
        self.given = False  # the run directory was lent to the target's user
        self.lock = AttachLock(opts.pid)
        self.guard: Guard | None = None  # cleans up in our place if heapwatch is killed
        self.children: list[_ChildRecorder] = []

    def run(self) -> AttachResult:
        opts = self.opts
        if opts.method not in METHODS:
            raise AttachError(f"unknown method {opts.method!r}: choose from {', '.join(METHODS)}")
        # held until the agent checked in: two attaches at once, one wins, the other is told
        self.lock.acquire()
        try:
            return self._run()
        finally:
            self.lock.release()

    def _run(self) -> AttachResult:
        opts = self.opts
        target = preflight(opts, self.me)
        methods = plan(opts, target, self.notice)
        if methods == ["gdb"]:
            GDBInjector()  # raises with the reason
        fresh = not os.path.exists(opts.run_dir)
        opts.run_dir = prepare_run_dir(opts.run_dir)

        def _on_term(signum: int, frame: object) -> None:
            raise Interrupted(signum)

        # SIGTERM ends heapwatch like Ctrl-C: never with the target stopped or the agent left
        old_term = signal.signal(signal.SIGTERM, _on_term)
        try:
            return self._record(target, methods)
        except BaseException:
            if fresh and not self.attempts:  # nothing was tried: leave no trace of the run
                shutil.rmtree(opts.run_dir, ignore_errors=True)
            raise
        finally:
            signal.signal(signal.SIGTERM, old_term)

    def _record(self, target: diagnose.Target, methods: list[str]) -> AttachResult:
        opts = self.opts
        store = os.path.join(opts.run_dir, STORE_NAME)
        meta = run_meta(list(target.cmdline), opts.interval, opts.trace, opts.trace_depth,
                        "attach", opts.show_names)
        meta.update(pid=opts.pid, cwd=target.cwd, python=target.version_text)
        cross = target.uid != self.me.uid
        self.given = cross
        try:
            # room for the last metadata and the reports when the disk fills (as run)
            self.writer = Writer(store, meta={"run": meta}, reserve=RESERVE_BYTES)
            if cross:
                _give(opts.run_dir, store, target.uid, target.gid)
            config = AgentConfig(store=store, interval=opts.interval, trace=opts.trace,
                                 trace_depth=opts.trace_depth, show_names=opts.show_names,
                                 children="fork" if opts.tree else "none",
                                 sample_interval=opts.sample_interval
                                 or DEFAULT_SAMPLE_INTERVAL,
                                 core="python" if core.disabled_by_env() else None)
            self.ws = Workspace.create(config, target.uid if cross else None,
                                       target.gid if cross else None)
            self.guard = Guard(opts.pid, self.ws.path, self.ws.control)
            self._log(target, "attaching")
            try:  # a Ctrl-C right after the notice (the user read it) lands in this try
                self.notice(f"attaching to process {opts.pid} ({_describe(target)}, Python "
                            f"{target.version_text}) with {' then '.join(methods)}")
                self._start(target, methods)
            except (KeyboardInterrupt, Interrupted):
                raise AttachInterrupted(
                    f"interrupted while attaching to process {opts.pid}; heapwatch left "
                    f"nothing running in it") from None
            self.lock.release()  # the agent's registry entry answers from now on
            try:
                self._log(target, "started")
                if self.started is not None and self.injection is not None:
                    self.started(self.injection.how, self.method, self.injection.stopped_s)
                if opts.tree:
                    self._enter_descendants(config)
                ended_by = self._follow(store)
            except (KeyboardInterrupt, Interrupted):  # before the follow loop could catch it
                ended_by = "interrupt"
                reader = LiveReader(store)
                try:
                    self._stop_agent(reader)
                finally:
                    reader.close()
            return AttachResult(opts.run_dir, self.method,
                                self.injection.how if self.injection else "",
                                ended_by, self.injection.stopped_s if self.injection else 0.0,
                                self.injection.notes if self.injection else [])
        except BaseException as exc:
            self.log["error"] = str(exc) or type(exc).__name__
            raise
        finally:
            self._cleanup()

    # -- getting in ------------------------------------------------------------------------
    def _start(self, target: diagnose.Target, methods: list[str]) -> None:
        assert self.ws is not None
        ws, opts = self.ws, self.opts
        for i, name in enumerate(methods):
            last = i == len(methods) - 1
            self.method = name
            attempt: dict[str, Any] = {"method": name, "t": time.time()}
            self.attempts.append(attempt)
            hook = self._withdraw_remote if self.remote_issued else None
            try:
                injection = _injector(name, opts, target, ws, hook, self.guard).inject()
            except AttachPermissionError as exc:
                attempt["error"] = str(exc)
                raise AttachPermissionError(
                    diagnose.explain_refusal(target, self.me)) from exc
            except AttachError as exc:
                attempt["error"] = str(exc)
                raise
            if name == "remote-exec":
                self.remote_issued = True
                if self.guard is not None:
                    self.guard.tell("remote")
            self.injection = injection
            attempt.update(how=injection.how, stopped_s=round(injection.stopped_s, 3),
                           python=injection.version)
            for note in injection.notes:
                self.notice(note)
            if name == "remote-exec" and not last:
                out = _wait_outcome(ws, opts.pid, REMOTE_PICKUP_S, ("pending",))
                if out.state == "pending":
                    attempt["result"] = "not picked up"
                    self.notice(f"the main thread did not run the sys.remote_exec script within "
                                f"{REMOTE_PICKUP_S:g}s (blocked in a system call?): falling "
                                f"back to lldb")
                    continue
            wait = opts.start_timeout
            out = _wait_outcome(ws, opts.pid, wait, ("pending",))
            if out.state == "pending" and ws.cancel():
                attempt["result"] = "timeout"
                if self.remote_issued and cancel_pending(opts.pid, ws.remote_script):
                    # safe while it runs: the main thread only ever clears the flag too
                    self.remote_issued = False
                    attempt["withdrawn"] = True
                why = ("its main thread did not reach Python code" if injection.how in
                       ("deferred", "remote-exec", "pending-call") else "the new thread did "
                       "not get the GIL")
                raise AttachError(f"the agent did not start in process {opts.pid} within "
                                  f"{wait:g}s ({why}); nothing was left running in it: try "
                                  f"again, or with a longer --start-timeout")
            out = _wait_outcome(ws, opts.pid, LOADER_GRACE_S, ("pending", "starting"))
            attempt["result"] = out.state
            self._check_outcome(out)
            self._check_in()
            return

    def _check_in(self) -> None:
        """The agent's own report, in the store: its pid must be the target's."""
        assert self.writer is not None
        reader = LiveReader(self.writer.path)
        try:
            agent = reader.meta("agent")
        finally:
            reader.close()
        if not agent or agent.get("pid") != self.opts.pid:
            raise AttachError(f"the agent in process {self.opts.pid} started but did not check "
                              f"in to the run store {self.writer.path}")

    def _withdraw_remote(self) -> str | None:
        """Under lldb, after sys.remote_exec was not picked up: withdraw that request, so
        that it does not run later (when a signal wakes the main thread, its handler's
        exception would be lost inside the script)."""
        assert self.ws is not None
        if self.ws.ran("remote"):
            return None
        if cancel_pending(self.opts.pid, self.ws.remote_script):
            self.remote_issued = False
            self.attempts[0]["withdrawn"] = True
            return "withdrew the sys.remote_exec request: it will not run later"
        return None

    def _check_outcome(self, out: Outcome) -> None:
        pid = self.opts.pid
        if out.state == "started":
            return
        if out.state == "busy":
            raise AttachError(f"a heapwatch agent already runs in process {pid} (recording to "
                              f"{os.path.dirname(out.detail)}): end it with 'heapwatch stop "
                              f"{pid}' before attaching again")
        if out.state == "exited":
            raise AttachError(f"process {pid} exited before the agent started")
        if out.state == "error":
            raise AttachError(f"the agent failed to start in process {pid}: {out.detail}")
        raise AttachError(f"the agent did not report back from process {pid} ({out.state})")

    def _log(self, target: diagnose.Target, state: str) -> None:
        """Every attach is logged in the run's metadata: who, when, how, into what."""
        if self.writer is None:
            return
        inj = self.injection
        self.log = {
            "state": state,
            "time": self.log.get("time") or _now_iso(),
            "t": self.log.get("t") or time.time(),
            "pid": self.opts.pid,
            "method": self.method or self.opts.method,
            "how": inj.how if inj else None,
            "requested": self.opts.method,
            "user": diagnose.user_name(self.me.uid),
            "uid": self.me.uid,
            "target_user": diagnose.user_name(target.uid),
            "target_uid": target.uid,
            "target_exe": target.exe,
            "python": (inj.version if inj and inj.version else target.version_text),
            "stopped_s": round(inj.stopped_s, 3) if inj else None,
            "forced": self.opts.force,
            "heapwatch": heapwatch.__version__,
            "attempts": self.attempts,
        }
        self.writer.set_meta({"attach": self.log})

    # -- following -------------------------------------------------------------------------
    def _follow(self, store: str) -> str:
        opts = self.opts
        reader = LiveReader(store)
        started = time.monotonic()
        next_status = started + 1.0
        ended_by = "duration"
        observer = None
        if opts.tree and self.writer is not None:
            from heapwatch.observe import TreeObserver

            observer = TreeObserver(self.writer, reader, opts.pid, opts.interval)
        try:
            try:
                while True:
                    time.sleep(0.1)
                    now = time.monotonic()
                    if observer is not None:
                        observer.poll(now)
                    stopped = reader.meta("agent_stopped")
                    if stopped is None and self._agent_gone():
                        # it removed its socket when it ended; its goodbye, written before,
                        # is missing only when the store could not take it (a full disk)
                        stopped = reader.meta("agent_stopped") or {"reason": "stop"}
                        self.log["agent_gone_t"] = time.time()
                    if stopped is not None:  # heapwatch stop PID, or the target's exit
                        ended_by = "exit" if stopped.get("reason") == "exit" else "stopped"
                        break
                    if not alive(opts.pid):
                        ended_by = "exit"
                        self.log["target_gone_t"] = time.time()  # without the agent's goodbye
                        break
                    if self.status is not None and now >= next_status:
                        n, rss, top = reader.progress()
                        rss_s = f"{rss / 1048576:.1f} MiB" if rss else "-"
                        self.status(f"{now - started:6.1f}s  pid {opts.pid}  snapshots {n}  "
                                    f"RSS {rss_s}" + (f"  top grower {top}" if top else ""))
                        next_status = now + 1.0
                    if opts.duration is not None and now - started >= opts.duration:
                        break
            except (KeyboardInterrupt, Interrupted):
                ended_by = "interrupt"
            self._stop_agent(reader)
        finally:
            reader.close()
        return ended_by

    def _enter_descendants(self, config: AgentConfig) -> None:
        """attach --tree: an agent in every Python process below the target (the ones forked
        from now on get theirs from its fork hook). One that cannot be entered is recorded
        from outside; the attach goes on."""
        from heapwatch.observe import descendants, parent_pid

        assert self.writer is not None
        for pid in descendants(self.opts.pid)[1:]:
            if registry.lookup(pid) is not None and self._watched(pid):
                continue  # forked after the attach: its agent came from the fork hook
            child = _ChildRecorder(self, pid)
            self.children.append(child)
            try:
                child.enter(config)
                self.notice(f"agent started in process {pid} (child of {parent_pid(pid)})")
            except AttachError as exc:
                self.notice(f"process {pid} not entered ({exc}): recorded from outside")

    def _watched(self, pid: int) -> bool:
        assert self.writer is not None
        reader = LiveReader(self.writer.path)
        try:
            return any(p.pid == pid and p.t_end is None and p.how != "external"
                       for p in reader.processes())
        finally:
            reader.close()

    def _agent_gone(self) -> bool:
        """True when the root agent has ended: an agent removes its control socket last."""
        return self.ws is not None and not os.path.exists(self.ws.control)

    def _stop_agent(self, reader: LiveReader) -> None:
        assert self.ws is not None
        if self.opts.tree:
            self._stop_tree(reader)
            return
        if (reader.meta("agent_stopped") is not None or not alive(self.opts.pid)
                or self._agent_gone()):
            return
        try:
            reply = send_command(self.ws.control, "stop", timeout=60.0)
        except AgentError as exc:
            self.notice(f"could not ask the agent to stop: {exc}")
            return
        if not reply.startswith("ok"):
            self.notice(f"the agent did not stop: {reply}")

    def _stop_tree(self, reader: LiveReader) -> None:
        """Detach from the whole tree: the root's agent first (its fork hook then starts no
        new one), then every other agent of the run."""
        from heapwatch.control import broadcast

        assert self.ws is not None
        first = (self.ws.control if reader.meta("agent_stopped") is None and alive(self.opts.pid)
                 else None)
        for pid, reply in broadcast(reader.path, "stop", first=first, timeout=60.0):
            if not reply.startswith("ok"):
                self.notice(f"the agent in process {pid or self.opts.pid} did not stop: {reply}")

    def _cleanup(self) -> None:
        try:
            self._undo()
        finally:
            if self.guard is not None:
                self.guard.dismiss()

    def _undo(self) -> None:
        for child in self.children:
            if child.ws is not None:
                child.ws.close(remote_pending=child.remote_issued)
        if self.ws is not None and self.writer is not None and not self.ws.cancel():
            # The loader took the claim: if we got here before following (an error, Ctrl-C),
            # its agent may be running with nobody to stop it.
            out = _wait_outcome(self.ws, self.opts.pid, LOADER_GRACE_S, ("starting",))
            if out.state == "started":
                reader = LiveReader(self.writer.path)
                try:
                    self._stop_agent(reader)
                finally:
                    reader.close()
        if self.ws is not None and not self.ws.close(remote_pending=self.remote_issued):
            self.notice(f"left {self.ws.path} for the sys.remote_exec script that process "
                        f"{self.opts.pid} has not run yet; it removes the directory when it "
                        f"runs")
        if self.writer is not None:
            full = self.writer.full or disk_is_full(self.opts.run_dir)  # before the release
            self.writer.release_reserve()
            if self.log:
                self.log.update(state="ended" if self.log.get("state") == "started" else "failed",
                                ended=_now_iso(), attempts=self.attempts, disk_full=full)
                try:
                    self.writer.set_meta({"attach": self.log})
                except Exception:
                    pass
            self.writer.close()
            if self.given:
                _give(self.opts.run_dir, self.writer.path, os.geteuid(), os.getegid())


class _ChildRecorder(Recorder):
    """attach --tree: one descendant of the target, entered like the target itself and
    recorded into the same run store as a process of its tree (``how`` = ``attach``)."""

    def __init__(self, parent: Recorder, pid: int) -> None:
        super().__init__(replace(parent.opts, pid=pid, tree=False), None, parent.notice)
        self.store = parent.writer.path if parent.writer is not None else ""
        self.guard = parent.guard  # the same guard has its lldb detach if heapwatch dies

    def enter(self, config: AgentConfig) -> None:
        target = preflight(self.opts, self.me)
        methods = plan(self.opts, target, self.notice)
        cross = target.uid != self.me.uid
        self.ws = Workspace.create(config, target.uid if cross else None,
                                   target.gid if cross else None,
                                   extra={"how": "attach", "ppid": parent_pid(self.opts.pid)})
        self._start(target, methods)

    def _check_in(self) -> None:
        reader = LiveReader(self.store)
        try:
            ok = any(p.pid == self.opts.pid and p.how == "attach" for p in reader.processes())
        finally:
            reader.close()
        if not ok:
            raise AttachError(f"the agent in process {self.opts.pid} started but did not check "
                              f"in to the run store {self.store}")


def _describe(target: diagnose.Target) -> str:
    """The process as the user knows it, secret-looking arguments hidden."""
    args = redact.argv(target.cmdline)
    if args:
        args[0] = os.path.basename(args[0])
    text = " ".join(args) or redact.text(target.name)
    return text if len(text) <= 60 else text[:59] + "…"


def _give(run_dir: str, store: str, uid: int, gid: int) -> None:
    """Let the target's user write the run store (root attaching with --force)."""
    for path in (run_dir, store, store + "-wal", store + "-shm"):
        try:
            os.chown(path, uid, gid)
        except FileNotFoundError:
            pass


def record(opts: AttachOptions, status: Notice | None = None, notice: Notice | None = None,
           started: Started | None = None) -> AttachResult:
    """Attach to ``opts.pid``, record until the duration passes, Ctrl-C, ``heapwatch
    stop`` or the target's exit, then take the agent out. Raises AttachError."""
    if sys.platform != "linux":
        raise AttachError("heapwatch attach needs Linux (/proc and ptrace)")
    return Recorder(opts, status, notice or (lambda line: None), started).run()
