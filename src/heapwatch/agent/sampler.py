"""The agent: one daemon thread inside the target taking a snapshot every interval.

Rules it lives by (DESIGN.md): it never raises into the target (every collector is
guarded and its failure recorded), never keeps target objects alive between snapshots
(containers are remembered by key and length only), installs no signal handlers, and
stops cleanly (final snapshot, store closed) on ``stop()``, at interpreter exit, and on
a ``stop`` command from the CLI over its private control socket.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import itertools
import json
import math
import os
import select
import socket
import struct
import sys
import threading
import time
import tracemalloc
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent import (
    census,
    core,
    items,
    lineage,
    naming,
    pace,
    paths,
    pausebudget,
    process,
    registry,
    sites,
    tracing,
)
from heapwatch.durations import check_seconds
from heapwatch.errors import AgentError, UsageError
from heapwatch.model import (
    DEFAULT_TRACE,
    TRACE_MODES,
    ContainerStat,
    ItemSample,
    Mark,
    ProcessInfo,
    ProcessStat,
    Snapshot,
    default_trace_depth,
)
from heapwatch.store import Writer

SITED_SAMPLES = 30  # sampled items with a site before a suspect counts as sited

# Before a fork the agent's thread is stopped and the store connection closed (see
# Agent.before_fork); a snapshot in flight gets this long to finish before the fork goes on.
FORK_QUIESCE_S = 2.0


@dataclass(frozen=True)
class AgentConfig:
    """How the agent samples. Durations are seconds."""

    store: str
    interval: float = 5.0
    trace: str = DEFAULT_TRACE
    trace_depth: int | None = None  # None: default_trace_depth(trace)
    sample_interval: int = sites.DEFAULT_SAMPLE_INTERVAL
    sample_boost_interval: int = sites.BOOST_SAMPLE_INTERVAL
    trace_window: int = 3
    trace_cooldown: int = 10
    floor: int = 100
    walk_floor: int = 32  # the owner walk names smaller containers, to see them grow past floor
    control: str | None = None
    top_sites: int = 300
    max_containers: int = 2000
    discover_budget_s: float = 0.1
    discover_nodes: int = 50_000
    sample_items: int = 8
    max_suspects: int = 10
    discover_every: int = 5
    children: str = "all"  # follow forked children (fork), exec'd ones too (all), or none
    show_names: bool = False  # secret-looking names as they are (heapwatch.redact)
    trace_pause_budget_s: float = pausebudget.DEFAULT_BUDGET_S  # longest traced snapshot
    run_meta: dict[str, Any] | None = field(default=None, compare=False)
    # "python": this agent runs the pure-Python core whatever loads (attach under
    # HEAPWATCH_NO_NATIVE, which the target's own environment does not carry)
    core: str | None = None

    def __post_init__(self) -> None:
        if self.core not in (None, "python"):
            raise AgentError(f"core must be python or unset, not {self.core!r}")
        if self.trace not in TRACE_MODES:
            raise AgentError(f"trace must be one of {', '.join(TRACE_MODES)}, not {self.trace!r}")
        for name in ("interval", "discover_budget_s"):
            try:
                check_seconds(getattr(self, name))
            except UsageError as exc:
                raise AgentError(f"{name}: {exc}") from None
        if self.trace_depth is None:
            object.__setattr__(self, "trace_depth", default_trace_depth(self.trace))
        if self.depth < 0:
            raise AgentError(f"trace_depth must be 0 or more, not {self.trace_depth!r}")
        if self.children not in lineage.CHILDREN_MODES:
            raise AgentError(f"children must be one of {', '.join(lineage.CHILDREN_MODES)}, "
                             f"not {self.children!r}")
        if not (isinstance(self.sample_interval, int) and self.sample_interval >= 1):
            raise AgentError(f"sample_interval must be a whole number of bytes >= 1, not "
                             f"{self.sample_interval!r}")

    @property
    def depth(self) -> int:
        """Frames per traced or sampled allocation."""
        return self.trace_depth if self.trace_depth is not None else 1

    @classmethod
    def from_file(cls, path: str) -> AgentConfig:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _describe_error(where: str, exc: BaseException) -> str:
    """Type and location only: an exception message may carry the target's data."""
    tb = exc.__traceback__
    loc = ""
    while tb is not None:  # str methods only: the target may have broken the stdlib's builtins
        loc = f" at {tb.tb_frame.f_code.co_filename.rpartition('/')[2]}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{where}: {type(exc).__name__}{loc}"


class Agent:
    """Samples the process it lives in. Use through ``heapwatch.start()`` or ``heapwatch run``.

    ``how`` it came to watch this process (see :class:`heapwatch.model.ProcessInfo`): the
    ``root`` agent speaks for the run (its ``agent`` metadata); the others (``fork``,
    ``exec``, ``attach``) only add their own stream and lifecycle to the store."""

    def __init__(self, config: AgentConfig, how: str = "root", ppid: int | None = None) -> None:
        self.config = config
        self.how = how
        self.ppid = ppid
        self.pid = os.getpid()
        self._writer: Writer | None = None
        self._lock = threading.RLock()
        self._seq = 0
        self._phase: str | None = None
        self.snapshots = 0
        self.pauses: deque[float] = deque(maxlen=10_000)
        self._history: dict[str, deque[int]] = {}
        self._seen: dict[str, int] = {}
        self._known: dict[str, tuple[paths.Step, ...]] = {}
        self._bounds: dict[str, int] = {}  # path -> maxlen / maxsize / capacity, when known
        # Paths that cannot be followed again (thread stacks, hidden keys), by id and type;
        # checked against the census at every snapshot, dropped when the id disappears.
        self._id_paths: dict[int, tuple[str, type]] = {}
        self._type_hist: dict[str, deque[int]] = {}
        self._rss_hist: deque[int] = deque(maxlen=6)
        self._sited: set[str] = set()  # suspects whose item sites are already known
        self._site_hits: dict[str, int] = {}  # sampled items with a site, until sited
        self._window_left = 0
        self._cooldown = 0
        self._alloc_mark: tuple[float, int] | None = None  # (monotonic, bytes allocated)
        self._walk_due = False
        self.traced_snapshots = 0
        self._own_ids: set[int] = {id(self._history), id(self._seen), id(self._known),
                                   id(self._type_hist), id(self._sited), id(self.pauses),
                                   id(self._site_hits),
                                   id(self._id_paths), id(self._bounds)}
        self._stop_requested = False
        self._stopped = False
        self._tracing = tracing.Tracing()  # stops only the tracing the agent started
        # what a traced snapshot would cost: no tracing window may exceed the budget
        self._pause = pausebudget.PauseModel(config.trace_pause_budget_s)
        self._refused = False
        self._last_blocks = 0
        # the exception that ended the target's main thread, if one did: type and place only
        self.uncaught: dict[str, str] | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._sock: socket.socket | None = None
        self._interval = config.interval
        self._due = 0.0
        # Fork: the thread is paused around a fork (see before_fork).
        self._pause_lock = threading.Lock()
        self._pausing = False
        self._paused = False
        self._fork_ready = False
        self._fork_filter: tuple[Any, ...] | None = None
        self._fork_filter_until = 0.0
        self.inherited_tracing = False  # a forked child's parent agent had tracemalloc on
        self._core_before: tuple[str | None] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        if cfg.core == "python" and core.forced() != "python":
            self._core_before = (core.forced(),)  # given back when this agent ends
            core.use("python", why=f"{core.NO_NATIVE_ENV} is set for the attach")
        self._writer = Writer(cfg.store, meta={"run": cfg.run_meta} if cfg.run_meta else None)
        self._own_ids.update(self._writer.internal_ids())
        self._own_ids.update(process.own_ids())
        naming.set_show_names(cfg.show_names)
        if self.inherited_tracing and tracemalloc.is_tracing():
            # The parent's agent was tracing when it forked: ours to keep (on) or end (auto).
            self._tracing.adopt()
            if not (cfg.trace == "on" and cfg.depth > 0):
                self._tracing.stop()
        preexisting = tracemalloc.is_tracing() and not self._tracing.owned
        self._mode = "on" if preexisting and cfg.trace == "auto" else cfg.trace
        trace_fallback = None
        if self._mode == "sample":
            trace_fallback = sites.start_sampling(cfg.sample_interval, cfg.depth or 16)
            if trace_fallback is not None:  # no native core here: the pure-Python steering
                self._mode = "on" if preexisting else "auto"
                cfg = self.config = replace(
                    cfg, trace=self._mode,
                    trace_depth=min(cfg.depth, default_trace_depth(self._mode)))
        if self._mode == "on" and cfg.depth > 0 and not tracemalloc.is_tracing():
            self._tracing.start(cfg.depth)
        census.install_gc_switches()  # before the first pass: see census._GcPaused
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        if cfg.control:
            self._sock = self._listen(cfg.control)
        ppid = self.ppid if self.ppid is not None else os.getppid()
        program, role = lineage.describe(self.how, ppid=ppid if self.how != "root" else None)
        self._writer.register_process(ProcessInfo(
            pid=self.pid, t_start=time.time(), how=self.how, ppid=ppid, role=role,
            program=program, control=cfg.control, python=sys.version.split()[0]),
            supersedes="exec" if self.how == "root" else "gone")
        if self.how == "root":
            self._writer.set_meta(
            {
                "agent": {
                    "pid": self.pid,
                    "python": sys.version.split()[0],
                    "implementation": sys.implementation.name,
                    "executable": sys.executable,
                    "started": _now_iso(),
                    "t": time.time(),
                    "interval_s": cfg.interval,
                    "trace": self._mode,
                    "trace_depth": cfg.depth if self._mode != "off" else 0,
                    "trace_fallback": trace_fallback,
                    "sample_interval": cfg.sample_interval if self._mode == "sample" else None,
                    "tracemalloc_preexisting": preexisting,
                    "control": cfg.control,
                    "main": naming.main_stem(),
                    "children": cfg.children,
                    **core.info().as_meta(),
                }
            }
            )
        _register(self)
        try:
            registry.register(self.pid, {"store": cfg.store, "control": cfg.control,
                                         "t": time.time()})
        except Exception:
            pass
        self._thread = threading.Thread(target=self._run, name="heapwatch-agent", daemon=True)
        self._thread.start()

    def _listen(self, path: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.exists(path):
                os.unlink(path)
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(4)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise AgentError(f"agent cannot listen on {path}: {exc.strerror}") from None
        return sock

    def stop(self, reason: str = "stop") -> None:
        """Final snapshot, store closed, tracemalloc stopped if the agent started it."""
        thread = self._thread
        self._stop_requested = True
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            try:
                self._snapshot_guarded("stop")
                if self._writer is not None:
                    if self.how == "root":
                        self._writer.set_meta(
                            {"agent_stopped": {"t": time.time(), "reason": reason,
                                               "snapshots": self.snapshots,
                                               "exception": self.uncaught}}
                        )
                    self._writer.end_process(self.pid, time.time(),
                                             "exit" if reason == "exit" else "stop")
            except BaseException:
                pass
            finally:
                self._fork_filter_until = 0.0
                self._drop_fork_filter()
                if self._writer is not None:
                    self._writer.close()
                self._tracing.stop()
                if self._mode == "sample":
                    sites.stop_sampling()
                process.stop_watching()
                try:
                    census.remove_gc_switches()
                except BaseException:
                    pass
                self._close_fds()
                if self._core_before is not None:
                    try:
                        core.use(self._core_before[0])
                    except BaseException:
                        pass
                registry.unregister(self.pid)
                _unregister(self)

    def _close_fds(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
                if self.config.control and os.path.exists(self.config.control):
                    os.unlink(self.config.control)
                    parent = os.path.dirname(self.config.control)
                    if os.path.basename(parent).startswith("heapwatch-"):
                        os.rmdir(parent)  # the private directory made for it, now empty
            except OSError:
                pass
            self._sock = None
        self._close_wake()

    def _close_wake(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = -1

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    @property
    def running(self) -> bool:
        """Not stopped, and its thread alive (or paused around a fork): an agent whose
        thread died is not running, whatever its flags say."""
        thread = self._thread
        return not self._stopped and (thread is None or thread.is_alive() or self._pausing)

    def after_fork_in_child(self) -> None:
        """The sampler thread does not exist in a forked child and the store connection
        belongs to the parent: drop both without using them (closing the child's copies of
        the descriptors leaves the parent's alone)."""
        self._stopped = True
        self._tracing.after_fork()
        if self._mode == "sample":
            sites.forget_sampling()  # the C side stopped itself in the child (fork hook)
        if self._writer is not None:
            self._writer.abandon()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._close_wake()

    # -- fork ---------------------------------------------------------------------------------
    def before_fork(self) -> None:
        """In the forking thread, before fork(): quiesce. The thread finishes what it does
        and exits, so the child inherits no lock of ours held mid-snapshot and CPython
        (3.12+) counts no thread of ours in its "multi-threaded fork" warning; then the
        store connection is closed, so the child inherits no SQLite state. A snapshot in
        flight gets FORK_QUIESCE_S; past that the fork goes on and the child is not
        followed (``_fork_ready`` stays False)."""
        self._fork_ready = False
        if self._stopped or self._writer is None:
            return
        deadline = time.monotonic() + FORK_QUIESCE_S
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            with self._pause_lock:
                self._pausing = True
            self._wake()
            thread.join(FORK_QUIESCE_S)
            native = getattr(thread, "native_id", None)
            if not thread.is_alive() and native is not None:
                # 3.12's join() returns before the OS thread is gone; the kernel's count of
                # threads, which the fork warning reads, must not include it.
                task = f"/proc/self/task/{native}"
                while os.path.exists(task) and time.monotonic() < deadline:
                    time.sleep(0.0002)
            if sys.version_info[:2] == (3, 13) and not thread.is_alive():
                self._hide_fork_warning()
        self._fork_ready = self._writer.suspend(max(0.0, deadline - time.monotonic()))

    def after_fork_in_parent(self) -> None:
        if self._writer is not None and self._fork_ready:
            self._writer.resume()
        self._fork_ready = False
        with self._pause_lock:
            self._pausing = False
            restart = self._paused
            self._paused = False
        if restart and not self._stopped:
            self._thread = threading.Thread(target=self._run, args=(True,),
                                            name="heapwatch-agent", daemon=True)
            self._thread.start()

    def _hide_fork_warning(self) -> None:
        """CPython 3.13 before gh-137109's fix counts threads after the at-fork hooks have
        run, so the agent thread restarted by after_fork_in_parent would make it warn about
        a fork that had no other thread. When the forking thread is the only one left, a
        filter for exactly that message and this pid hides it; the restarted thread removes
        it half a second later. Any other thread in the target leaves the warning alone."""
        try:
            if len(os.listdir("/proc/self/task")) != 1:
                return
            import re
            import warnings

            pattern = re.compile(rf"This process \(pid={os.getpid()}\) is multi-threaded, "
                                 r"use of fork\(\) may lead to deadlocks in the child\.")
            entry = ("ignore", pattern, DeprecationWarning, None, 0)
            if self._fork_filter is None:
                cast(list[Any], warnings.filters).insert(0, entry)
                warnings._filters_mutated()  # type: ignore[attr-defined]
                self._fork_filter = entry
            self._fork_filter_until = time.monotonic() + 0.5
        except Exception:
            pass

    def _drop_fork_filter(self) -> None:
        entry = self._fork_filter
        if entry is None or time.monotonic() < self._fork_filter_until:
            return
        self._fork_filter = None
        try:
            import warnings

            cast(list[Any], warnings.filters).remove(entry)
            warnings._filters_mutated()  # type: ignore[attr-defined]
        except Exception:
            pass

    # -- the thread -----------------------------------------------------------------------
    def _run(self, resumed: bool = False) -> None:
        """The thread: nothing escapes it. If the loop ends by an error, the agent
        finishes (final snapshot, control socket and registry entry removed), so that no
        one mistakes a dead agent for a running one."""
        try:
            process.agent_thread_started()
            self._loop(resumed)
        except BaseException as exc:  # never let anything escape into the target
            try:
                self._event("error", _describe_error("sampler", exc))
                self._finish("error")
            except BaseException:
                pass
        finally:
            try:
                process.agent_thread_ending()
            except BaseException:
                pass

    def _loop(self, resumed: bool) -> None:
        if not resumed:
            self._snapshot_guarded("start")
            self._due = time.monotonic() + self._interval
        # poll, not select: a target may hold more than FD_SETSIZE (1024) descriptors.
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        sock_fd = self._sock.fileno() if self._sock is not None else -1
        if sock_fd >= 0:
            poller.register(sock_fd, select.POLLIN)
        while not self._stop_requested:
            if self._pause_here():
                return
            if self._fork_filter is not None:
                self._drop_fork_filter()
            due = self._due if self._fork_filter is None else min(
                self._due, self._fork_filter_until)
            # capped: poll() takes a C int, and a huge interval must not kill the loop
            wait_ms = min(max(0, math.ceil((due - time.monotonic()) * 1000)), 60_000)
            ready = {fd for fd, _ in poller.poll(wait_ms)}
            if self._stop_requested:
                break
            if self._pause_here():
                return
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 64)
                except OSError:
                    pass
            if sock_fd in ready and self._sock is not None:
                self._serve()
            if self._stopped:
                return
            if time.monotonic() >= self._due:
                took = self._snapshot_guarded("interval")
                wait = self._interval
                if took > 0.25 * self._interval:
                    wait = took * 4
                    self._event("stretched", f"snapshot used {took:.3f}s of CPU; "
                                f"next in {wait:.3f}s")
                self._due = time.monotonic() + wait

    def _pause_here(self) -> bool:
        """True when the thread must exit now because a fork is coming."""
        with self._pause_lock:
            if self._pausing:
                self._paused = True
                return True
        return False

    def _serve(self) -> None:
        assert self._sock is not None
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        with conn:
            try:
                conn.setblocking(True)
                conn.settimeout(2.0)
                if hasattr(socket, "SO_PEERCRED"):
                    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                    _, uid, _ = struct.unpack("3i", creds)
                    if uid not in (os.getuid(), 0):
                        conn.sendall(b"error not allowed\n")
                        return
                data = b""
                while not data.endswith(b"\n") and len(data) < 512:
                    chunk = conn.recv(512)
                    if not chunk:
                        break
                    data += chunk
                reply = self._command(data.decode("utf-8", "replace").strip())
                conn.sendall(reply.encode() + b"\n")
            except OSError:
                pass

    def _command(self, line: str) -> str:
        verb, _, arg = line.partition(" ")
        if verb == "ping":
            return f"ok {self.pid} {self.snapshots}"
        if verb == "snapshot":
            self._snapshot_guarded("manual")
            return f"ok {self.snapshots}"
        if verb == "mark" and arg:
            self.mark(arg, source="cli")
            return "ok"
        if verb == "stop":
            self._stop_requested = True
            self._finish(arg or "cli")
            return f"ok stopped {self.snapshots}"
        return "error unknown command"

    def _event(self, kind: str, message: str) -> None:
        try:
            if self._writer is not None and not self._writer.closed:
                self._writer.write_event(self.pid, time.time(), kind, message)
        except BaseException:
            pass

    # -- public actions ---------------------------------------------------------------------
    def mark(self, phase: str, source: str = "api") -> None:
        with self._lock:
            if self._stopped or self._writer is None:
                raise AgentError("the agent is not running: start it before marking a phase")
            self._phase = phase
            self._writer.write_mark(Mark(t=time.time(), phase=phase, pid=self.pid, source=source))

    def snapshot(self, reason: str = "manual") -> int:
        with self._lock:
            if self._stopped:
                raise AgentError("the agent is not running: start it before taking a snapshot")
            self._snapshot_guarded(reason)
            return self._seq

    # -- one snapshot -----------------------------------------------------------------------
    def _snapshot_guarded(self, reason: str) -> float:
        """Take one snapshot; return the CPU time it used. The wall time (recorded as the
        pause) also counts waits for the GIL after each system call, which on a busy target
        is ~4x the CPU time: stretching the interval on it would sample too rarely."""
        with self._lock:
            if self._writer is None or self._writer.closed:
                return 0.0
            c0 = time.thread_time()
            t0 = time.perf_counter()
            # on the agent's own thread the owner walk leaves the GIL to the target between
            # short slices (pace.py); a snapshot the target takes on its own thread (API,
            # exit) runs straight through (its pacer never naps). Naps are no pause of the
            # target: not counted.
            own = threading.current_thread() is self._thread
            pacer = pace.Pacer(nap_s=pace.NAP_S if own else 0.0)
            try:
                # the agent's allocations: neither sampled nor counted (but the target's,
                # while the agent naps, are)
                with sites.unsampled() as window:
                    pacer.around = window.napping
                    snap = self._collect(reason, t0, pacer)
                    self._writer.write_snapshot(snap)
                self.snapshots += 1
            except BaseException as exc:
                self._event("error", _describe_error("snapshot", exc))
            self.pauses.append(time.perf_counter() - t0 - pacer.napped_s)
            return time.thread_time() - c0

    def _collect(self, reason: str, t0: float, pacer: pace.Pacer) -> Snapshot:
        cfg = self.config
        errors: list[str] = []
        wall, mono = time.time(), time.monotonic()
        stem = naming.main_stem()
        tracing = tracemalloc.is_tracing()
        sampling = self._mode == "sample" and sites.sampling()
        sited = tracing or sampling  # allocation sites can be known in this snapshot
        closing = self._mode == "auto" and tracing and self._window_left <= 1
        raw: list[Any] = []
        site_stats: dict[str, tuple[int, int]] = {}

        keep: dict[int, Any] = {}
        found: paths.Found | None = None
        type_counts: dict[str, int] = {}
        containers: list[ContainerStat] = []
        samples: list[ItemSample] = []
        gc_objects: int | None = None
        types_by_name: dict[str, type] = {}
        try:
            try:
                c0 = time.perf_counter()
                census_s = 0.0
                res = core.census(cfg.floor, self._own_ids, self._maybe_suspect_ids())
                census_s = time.perf_counter() - c0
                keep.update(res.wanted)
                res.wanted.clear()
                gc_objects = res.gc_objects
                for t, n in res.type_counts:
                    name = naming.type_name(t, stem)
                    type_counts[name] = type_counts.get(name, 0) + n
                    types_by_name[name] = t
                big = res.big
                del res
            except Exception as exc:
                errors.append(_describe_error("census", exc))
                big = []
            pacer.step()  # the target's turn
            named: dict[int, str] = {}
            if self._seq % max(1, cfg.discover_every) == 0:
                self._walk_due = True
            # The walk allocates a lot: under tracing it costs ~10x, so it waits for the
            # end of a tracing window (trace on: it runs anyway). It walks at the start and
            # the first interval (the target's imports done), then every discover_every
            # snapshots: each walk is tens of ms of the target's GIL time (a third walk
            # in a busy service's first 15 s put its p99 latency up by a tenth).
            if self._seq < 2 or reason == "stop" or (
                self._walk_due and (not tracing or self._mode == "on")
            ):
                self._walk_due = False
                try:
                    found = paths.discover(min(cfg.floor, cfg.walk_floor), cfg.discover_budget_s,
                                           cfg.discover_nodes, pacer=pacer)
                    if not found.complete:
                        errors.append(f"paths: walk cut after {found.nodes} objects")
                    for oid, path in found.paths.items():
                        named[oid] = path
                        obj = found.objects[oid]
                        keep[oid] = obj
                        steps = found.steps.get(oid)
                        bound = paths.bound_of(obj, steps)
                        if bound:
                            self._bounds[path] = bound
                        if steps is not None:
                            self._known[path] = steps
                        else:
                            self._id_paths[oid] = (path, type(obj))
                    obj = None
                except Exception as exc:
                    errors.append(_describe_error("paths", exc))
            try:
                self._resolve_known(named, keep)
            except Exception as exc:
                errors.append(_describe_error("paths", exc))
            pacer.step()
            seen_ids: set[int] = set()
            big_ids = {oid: t for oid, t, _ in big}
            for oid, (path, t) in list(self._id_paths.items()):
                if big_ids.get(oid) is not t:
                    del self._id_paths[oid]
                elif oid not in named:
                    named[oid] = path
            for oid, t, n in big:
                seen_ids.add(oid)
                known = named.get(oid)
                tname = naming.type_name(t, stem)
                bound = self._bounds.get(known) if known else None
                if bound is None and issubclass(t, deque) and oid in keep:
                    # an unnamed deque is handed back by the census once it may turn
                    # suspect (seen twice): its bound is known from then on
                    bound = keep[oid].maxlen
                containers.append(ContainerStat(known or f"{tname}@{oid:#x}", tname, n, 0, known,
                                                bound))
            for oid, path in named.items():
                if oid in seen_ids:
                    continue
                obj = keep[oid]
                fn = census.base_len(type(obj))
                if fn is not None:
                    containers.append(
                        ContainerStat(path, naming.type_name(type(obj), stem), fn(obj), 0, path,
                                      self._bounds.get(path))
                    )
            containers.sort(key=ContainerStat._sort_key)
            del containers[cfg.max_containers :]
            suspects: list[str] = []
            try:
                samples, suspects = self._sample_suspects(containers, keep, named, stem, sited)
            except Exception as exc:
                errors.append(_describe_error("items", exc))
            try:
                if reason != "start":  # taken before the main module was even imported
                    samples += self._type_suspects(type_counts, types_by_name, stem, sited,
                                                   suspects)
            except Exception as exc:
                errors.append(_describe_error("items", exc))
        finally:
            keep.clear()
            types_by_name.clear()
            if found is not None:
                found.clear()
        pacer.step()
        tracer_bytes = blocks = 0
        sites_s = 0.0
        # sampled: the sites come from the sampler; tracing that runs then is the target's,
        # and reading its traces would only lengthen the pause (unbudgeted) for nothing
        read_traces = tracing and not sampling
        if tracing and self._mode == "auto" and self._tracing.owned:
            # the traced snapshot's own work is bounded too: past the budget, the window ends
            tracer_bytes = tracemalloc.get_tracemalloc_memory()
            fits, cost = self._pause.traces_fit(time.perf_counter() - t0, tracer_bytes)
            if not fits:
                read_traces = False
                closing = True
                self._event("trace", f"tracing window closed early: this snapshot took "
                            f"{(time.perf_counter() - t0) * 1000:.0f} ms and reading its "
                            f"traces would take ~{cost * 1000:.0f} ms more (budget "
                            f"{self._pause.budget_s * 1000:.0f} ms)")
        if read_traces:
            # After the census: the raw traces are one gc-tracked tuple per block, which the
            # census would otherwise count as the target's.
            s0 = time.perf_counter()
            try:
                raw = sites.take_raw()
            except Exception as exc:
                errors.append(_describe_error("sites", exc))
            sites_s = time.perf_counter() - s0
        if closing:
            self._stop_tracing()  # before aggregating: the aggregation need not be traced
        if raw:
            s0 = time.perf_counter()
            try:
                site_stats, _ = sites.aggregate(raw, cfg.top_sites)
            except Exception as exc:
                errors.append(_describe_error("sites", exc))
            sites_s += time.perf_counter() - s0
            blocks = len(raw)
            raw.clear()
        sampled_heap: int | None = None
        if sampling:
            try:
                site_stats, sampled_heap, _ = sites.sampled_sites(cfg.top_sites)
            except Exception as exc:
                errors.append(_describe_error("sites", exc))
        try:
            proc = process.process_stat(gc_objects, sampled_heap,
                                        sites.allocated() if sampling else None)
        except Exception as exc:
            errors.append(_describe_error("process", exc))
            proc = ProcessStat(rss=0)
        self._rss_hist.append(proc.rss)
        self._seq += 1
        if tracing:
            self.traced_snapshots += 1
        self._pause.observe(tracing, gc_objects or 0, census_s,
                            time.perf_counter() - t0 - pacer.napped_s, blocks, sites_s,
                            tracer_bytes)
        if self._mode == "auto" and not closing:
            self._steer_tracing(tracing, suspects, gc_objects or 0, proc.allocated_blocks)
        elif sampling:
            self._steer_sampling(suspects, self._alloc_rate(mono, proc.alloc_bytes))
        return Snapshot(
            seq=self._seq, pid=self.pid, t=wall, mono=mono, reason=reason,
            duration_s=time.perf_counter() - t0 - pacer.napped_s, phase=self._phase,
            traced=sited, process=proc, types=type_counts,
            sites=site_stats, containers=tuple(containers), items=tuple(samples),
            errors=tuple(errors),
        )

    # -- trace auto ---------------------------------------------------------------------------
    def _steer_tracing(self, tracing: bool, suspects: list[str], objects: int = 0,
                       allocated_blocks: int | None = None) -> None:
        """Open a tracing window when something new turns suspect, unless a traced
        snapshot would pause the target longer than the budget; close it after
        ``trace_window`` snapshots (the closing snapshot stops tracing itself)."""
        cfg = self.config
        grown = 0
        if allocated_blocks is not None:
            grown = max(0, allocated_blocks - self._last_blocks) if self._last_blocks else 0
            self._last_blocks = allocated_blocks
        if tracing:
            self._window_left -= 1
            return
        if self._cooldown > 0:
            self._cooldown -= 1
            return
        unsited = [k for k in suspects if k not in self._sited]
        rss = list(self._rss_hist)
        rss_rising = (len(rss) >= 5 and rss[-1] - rss[0] > 2 * 1024 * 1024
                      and sum(b > a for a, b in itertools.pairwise(rss)) >= len(rss) - 2)
        if not (unsited or rss_rising) or cfg.depth <= 0:
            return
        fits, est = self._pause.window_fits(objects, grown)
        if not fits:
            if not self._refused:  # said once per refusal spell, not at every snapshot
                self._event("trace", f"no tracing window: a traced snapshot would pause the "
                            f"target ~{est * 1000:.0f} ms ({objects} objects; budget "
                            f"{self._pause.budget_s * 1000:.0f} ms)")
            self._refused = True
            return
        self._refused = False
        if self._tracing.start(cfg.depth):
            self._window_left = max(1, cfg.trace_window)
            self._event("trace", f"tracing on for {self._window_left} snapshots: "
                        f"{len(unsited)} suspect(s){', RSS rising' if rss_rising else ''}; "
                        f"a traced snapshot ~{est * 1000:.0f} ms ({objects} objects)")

    def _alloc_rate(self, mono: float, allocated: int | None) -> float | None:
        """Bytes the target allocated per second since the previous snapshot (sampling)."""
        mark, self._alloc_mark = self._alloc_mark, (
            None if allocated is None else (mono, allocated))
        if mark is None or allocated is None or mono <= mark[0] or allocated < mark[1]:
            return None
        return (allocated - mark[1]) / (mono - mark[0])

    def _steer_sampling(self, suspects: list[str], alloc_rate: float | None = None) -> None:
        """``--trace sample``: a suspect whose items are small is rarely sampled at the
        normal interval, so while a suspect is still unsited the sampler samples about
        every ``sample_boost_interval`` bytes for ``trace_window`` snapshots (its newest
        items are then looked up in the live-sample table), then the normal interval
        returns for ``trace_cooldown`` snapshots. Samples taken in the window keep their
        own weight, so the site estimates stay unbiased.

        The window's cost is per sample, so it is bounded by a rate, not by bytes: never
        more than ``sites.BOOST_MAX_SAMPLES_S`` samples a second at the target's current
        allocation rate (a service allocating 2.4 GB/s sampled every 1 KiB lost 12% of its
        throughput for the window; every 48 KiB it loses ~1%)."""
        cfg = self.config
        if self._window_left > 0:
            self._window_left -= 1
            if self._window_left == 0:
                sites.set_sample_interval(cfg.sample_interval)
                self._cooldown = cfg.trace_cooldown
            return
        if self._cooldown > 0:
            self._cooldown -= 1
            return
        unsited = [k for k in suspects if k not in self._sited]
        interval = sites.boost_interval(cfg.sample_boost_interval, alloc_rate)
        if unsited and interval < cfg.sample_interval:
            sites.set_sample_interval(interval)
            self._window_left = max(1, cfg.trace_window)
            self._event("trace", f"sampling every ~{interval} bytes for "
                        f"{self._window_left} snapshots: {len(unsited)} unsited suspect(s)")

    def _stop_tracing(self) -> None:
        self._tracing.stop()
        self._window_left = 0
        self._cooldown = self.config.trace_cooldown

    def _type_suspects(self, counts: dict[str, int], types_by_name: dict[str, type], stem: str,
                       tracing: bool, suspects: list[str]) -> list[ItemSample]:
        """Types whose live count keeps rising; while tracing, where their newest
        objects were allocated."""
        out: list[ItemSample] = []
        hist = self._type_hist
        for name, n in counts.items():
            h = hist.get(name)
            if h is None:
                if n < 50:
                    continue
                h = hist[name] = deque(maxlen=6)
            h.append(n)
        for name in [k for k in hist if k not in counts]:
            del hist[name]
        rising = []
        for name, h in hist.items():
            if len(h) >= 5:  # an import jump and a wobble must not open a tracing window
                vals = list(h)
                ups = sum(b > a for a, b in itertools.pairwise(vals))
                if ups >= len(vals) - 1 and vals[-1] - vals[0] >= 50:
                    rising.append((vals[-1] - vals[0], name))
        rising.sort(reverse=True)
        for _, name in rising[:5]:
            key = "type:" + name
            suspects.append(key)
            t = types_by_name.get(name)
            if tracing and t is not None:
                got = items.sample_type(name, t, self.config.sample_items, stem)
                out.extend(got)
                self._note_sited(key, got)
        return out

    def _note_sited(self, key: str, got: list[ItemSample]) -> None:
        """A suspect is sited once its items name a site: under tracemalloc one traced item
        will do; sampled items need ``SITED_SAMPLES`` hits over the run (a sampled block
        reused from a free list carries the line that first allocated it, so one hit can
        mislead; the majority does not), and until then boosted sampling goes on."""
        hits = self._site_hits.get(key, 0) + sum(s.sampled for s in got if s.site)
        if hits >= (SITED_SAMPLES if self._mode == "sample" else 1):
            self._sited.add(key)
            self._site_hits.pop(key, None)
        elif hits:
            self._site_hits[key] = hits

    def _resolve_known(self, named: dict[int, str], keep: dict[int, Any]) -> None:
        """Find containers named before by their path (this also follows a rebinding such as
        ``self._cache = {}``); forget paths that no longer lead to a container."""
        for path, steps in list(self._known.items()):
            obj = paths.resolve(steps)
            if obj is None or census.base_len(type(obj)) is None:
                del self._known[path]
                self._bounds.pop(path, None)
                continue
            oid = id(obj)
            if oid not in named:
                named[oid] = path
                keep[oid] = obj
            obj = None

    def _maybe_suspect_ids(self) -> set[int]:
        """Containers known by id only — no path, or a path that cannot be followed again
        (a thread's stack) — that may turn suspect at this snapshot (seen at least twice):
        the census hands back references to these, and to no other."""
        out: set[int] = set()
        for key, hist in self._history.items():
            if len(hist) >= 2 and "@0x" in key:
                try:
                    out.add(int(key.rsplit("@", 1)[1], 16))
                except ValueError:
                    pass
        for oid, (path, _) in self._id_paths.items():
            if len(self._history.get(path, ())) >= 2:
                out.add(oid)
        return out

    def _sample_suspects(
        self,
        containers: list[ContainerStat],
        keep: dict[int, Any],
        named: dict[int, str],
        stem: str,
        tracing: bool,
    ) -> tuple[list[ItemSample], list[str]]:
        """Remember each container's recent lengths; sample the newest items of those
        that keep growing. Only keys and lengths outlive the snapshot."""
        by_key = {c.key: c for c in containers}
        suspects: list[tuple[int, str]] = []
        seq = self._seq
        for c in containers:
            hist = self._history.get(c.key)
            if hist is None:
                hist = self._history[c.key] = deque(maxlen=6)
            hist.append(c.length)
            self._seen[c.key] = seq
            if len(hist) >= 3:
                vals = list(hist)
                rises = sum(1 for a, b in itertools.pairwise(vals) if b > a)
                if rises >= len(vals) // 2 + 1 and vals[-1] > vals[0]:
                    suspects.append((vals[-1] - vals[0], c.key))
        for key in [k for k, s in self._seen.items() if seq - s > 12]:
            del self._seen[key]
            self._history.pop(key, None)
        if not suspects:
            return [], []
        suspects.sort(reverse=True)
        ids_by_key: dict[str, int] = {}
        for oid in keep:
            path = named.get(oid)
            if path is not None:
                ids_by_key[path] = oid
        out: list[ItemSample] = []
        for _, key in suspects[: self.config.max_suspects]:
            found_id = ids_by_key.get(key)
            if found_id is None and "@0x" in key:
                found_id = int(key.rsplit("@", 1)[1], 16)
            obj = keep.get(found_id) if found_id is not None else None
            if obj is None or key not in by_key:
                continue
            got = items.sample_items(key, obj, self.config.sample_items, stem, tracing)
            self._note_sited(key, got)
            out.extend(got)
        return out, [key for _, key in suspects[: self.config.max_suspects]]


# -- the one agent of this process ---------------------------------------------------------
_current: Agent | None = None
_registry_lock = threading.Lock()
_hooks_installed = False


def current() -> Agent | None:
    return _current if _current is not None and _current.running else None


def _register(agent: Agent) -> None:
    global _current, _hooks_installed
    with _registry_lock:
        _current = agent
        if not _hooks_installed:
            atexit.register(_at_exit)
            if hasattr(os, "register_at_fork"):
                # Registered once and never removed (Python cannot): inert while no agent runs.
                os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                                    after_in_child=_after_fork_child)
            _hooks_installed = True


def _unregister(agent: Agent) -> None:
    global _current
    with _registry_lock:
        if _current is agent:
            _current = None


def _uncaught() -> dict[str, str] | None:
    """The exception the interpreter printed before exiting (it sets ``sys.last_exc`` /
    ``sys.last_value`` before the atexit hooks run): its type and where it was raised,
    never its message (which may carry the target's data)."""
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if not isinstance(exc, BaseException) or isinstance(exc, (SystemExit, KeyboardInterrupt)):
        return None
    tb = exc.__traceback__
    at = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        at = naming.clean(f"{code.co_filename.rpartition('/')[2]}:{tb.tb_lineno}")
        tb = tb.tb_next
    t = type(exc)
    module = t.__module__ if isinstance(t.__module__, str) else ""
    name = t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"
    return {"type": naming.clean(name), "at": at}


def _at_exit() -> None:
    agent = _current
    if agent is not None and agent.running:
        try:
            agent.uncaught = _uncaught()
            agent.stop("exit")
        except BaseException:
            pass


_forking: Agent | None = None  # the agent quiesced for the fork in progress


def _before_fork() -> None:
    global _forking
    agent = _current
    _forking = None
    if agent is None or not agent.running:
        return
    try:
        agent.before_fork()
        _forking = agent
    except BaseException:
        pass


def _after_fork_parent() -> None:
    global _forking
    agent, _forking = _forking, None
    if agent is not None:
        try:
            agent.after_fork_in_parent()
        except BaseException:
            pass


def _after_fork_child() -> None:
    """A fresh agent for the child, with the run's config: its own thread, store connection
    and control socket. Not when the parent could not quiesce (the child's SQLite could
    hold a lock forever) or the run follows no children."""
    global _current, _registry_lock, _forking
    _registry_lock = threading.Lock()
    agent, quiesced = _current, _forking
    _current = _forking = None
    if agent is None:
        return
    try:
        agent.after_fork_in_child()
        if quiesced is not agent or not agent._fork_ready or agent.config.children == "none":
            return
        cfg = replace(agent.config, run_meta=None,
                      control=lineage.child_control(agent.config.control, os.getpid()))
        child = Agent(cfg, how="fork", ppid=agent.pid)
        child._phase = agent._phase
        child.inherited_tracing = agent._tracing.owned
        child.start()
        # A forked multiprocessing child ends with os._exit(), after threading's shutdown
        # hooks but without atexit: take the final snapshot there.
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(_at_exit)
    except BaseException:
        pass
