"""The in-process API: profile a block of your own program.

>>> import heapwatch
>>> heapwatch.start(out="reports/mine", interval=1.0)      # doctest: +SKIP
>>> heapwatch.mark("load")                                  # doctest: +SKIP
>>> result = heapwatch.stop()                               # doctest: +SKIP
>>> result.verdict, result.write_report()                   # doctest: +SKIP
('leak', 'reports/mine/report.json')

or ``with heapwatch.watch(interval=1.0) as run: ...`` and then ``run.result``.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from heapwatch import redact
from heapwatch.agent import Agent, AgentConfig
from heapwatch.agent import current as _current_agent
from heapwatch.agent.naming import main_stem
from heapwatch.durations import parse_duration
from heapwatch.errors import HeapwatchError
from heapwatch.model import default_trace_depth
from heapwatch.rundir import default_run_dir, prepare_run_dir
from heapwatch.store import STORE_NAME

_lock = threading.Lock()
_agent: Agent | None = None
_run_dir: str | None = None
_follower: Any = None  # the metrics exporter or retention follower start() began
# The in-process exporter analyses the store inside this process: it may use this share
# of one core (the CLI's exporter, in its own process, uses 0.1).
IN_PROCESS_DUTY = 0.02


def run_meta(command: list[str], interval: float, trace: str, trace_depth: int,
             how: str, show_names: bool = False) -> dict[str, Any]:
    """The run's metadata; its command line with secret-looking arguments hidden
    (``heapwatch.redact.argv``) unless ``show_names``."""
    return {
        "command": list(command) if show_names else redact.argv(command),
        "how": how,
        "host": socket.gethostname(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "t": time.time(),
        "interval_s": interval,
        "trace": trace,
        "trace_depth": trace_depth,
        "python": sys.version.split()[0],
    }


def start(
    out: str | None = None,
    interval: float | str = 5.0,
    trace: str = "auto",
    trace_depth: int | None = None,
    metrics: str | None = None,
    retain: float | str | None = None,
    **options: Any,
) -> str:
    """Start the agent in this process; return the run directory.

    ``out`` is the run directory (default ``reports/<script>-<time>``); ``interval`` is
    seconds or a duration string (``"500ms"``). ``metrics="127.0.0.1:9464"`` serves
    heapwatch's series for Prometheus from this process (a port it opens because you
    asked; needs prometheus_client); ``retain="1h"`` keeps the store from growing by
    thinning snapshots older than that (off by default: every snapshot is kept). Raises
    ``HeapwatchError`` when already started.
    """
    global _agent, _run_dir, _follower
    with _lock:
        if _agent is not None and _agent.running:
            raise HeapwatchError("heapwatch is already started in this process: call stop() first")
        if _current_agent() is not None:
            raise HeapwatchError(
                "a heapwatch agent already runs in this process (started by `heapwatch run` "
                "or attach): use mark()/snapshot() through it, or run without the wrapper"
            )
        seconds = parse_duration(interval)
        retention = None
        if retain is not None:
            from heapwatch.retention import parse_retain

            retention = parse_retain(str(retain))
        if metrics is not None:
            from heapwatch.metrics import parse_listen

            parse_listen(metrics)
        if trace_depth is None:
            trace_depth = default_trace_depth(trace)
        run_dir = prepare_run_dir(out or default_run_dir(main_stem()))
        import tempfile

        control = os.path.join(tempfile.mkdtemp(prefix="heapwatch-"), "agent.sock")
        config = AgentConfig(
            store=os.path.join(run_dir, STORE_NAME),
            control=control,
            interval=seconds,
            trace=trace,
            trace_depth=trace_depth,
            run_meta=run_meta(list(sys.argv), seconds, trace, trace_depth, "api",
                              bool(options.get("show_names"))),
            **options,
        )
        agent = Agent(config)
        agent.start()
        try:
            _follower = _follow(config.store, seconds, metrics, retention)
        except BaseException:
            agent.stop("api")
            raise
        _agent, _run_dir = agent, run_dir
        return run_dir


def _follow(store: str, interval: float, metrics: str | None, retention: Any) -> Any:
    if metrics is None and retention is None:
        return None
    from heapwatch.metrics import Follower, serve

    if metrics is not None:
        return serve(metrics, store, interval, retention, duty=IN_PROCESS_DUTY)
    follower = Follower(store, interval, duty=IN_PROCESS_DUTY, retention=retention,
                        metrics=False)
    follower.start()
    return follower


def metrics_address() -> tuple[str, int] | None:
    """(host, port) the in-process metrics endpoint listens on, when start() opened one."""
    address: tuple[str, int] | None = getattr(_follower, "address", None)
    return address


def _running() -> Agent:
    agent = _agent if _agent is not None and _agent.running else _current_agent()
    if agent is None:
        raise HeapwatchError("heapwatch is not started: call heapwatch.start() first")
    return agent


def mark(phase: str) -> None:
    """Mark the start of a phase (``baseline``, ``load``, ``peak``, ``after`` or any name)."""
    if not phase or not isinstance(phase, str):
        raise HeapwatchError("a phase needs a non-empty name, e.g. mark('load')")
    _running().mark(phase)


def snapshot() -> int:
    """Take a snapshot now; return its sequence number."""
    return _running().snapshot()


def stop() -> Result:
    """Stop the agent (final snapshot, store closed) and analyse the run."""
    global _agent, _run_dir, _follower
    with _lock:
        if _agent is None or not _agent.running:
            raise HeapwatchError("heapwatch is not started: stop() needs a start() before it")
        agent, run_dir, follower = _agent, _run_dir, _follower
        _agent = _run_dir = _follower = None
    if follower is not None:
        follower.close()
    agent.stop("api")
    assert run_dir is not None
    return Result(run_dir)


class Result:
    """The outcome of a run: ``verdict``, ``findings`` (list of dicts, report.json's), and
    ``write_report()``."""

    def __init__(self, run_dir: str) -> None:
        from heapwatch.analysis import analyze_run

        self.run_dir = run_dir
        self.analysis = analyze_run(run_dir)

    @property
    def verdict(self) -> str:
        return self.analysis.verdict

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.analysis.findings]

    def write_report(self, directory: str | None = None,
                     formats: tuple[str, ...] = ("json", "md", "html")) -> str:
        """Write report.json, report.md and report.html into ``directory`` (default: the run
        directory); return the path of report.json."""
        from heapwatch.report import write_reports

        return write_reports(self.analysis, directory or self.run_dir,
                             tuple(dict.fromkeys(("json", *formats))))["json"]

    def __repr__(self) -> str:
        return f"<heapwatch.Result {self.verdict} findings={len(self.analysis.findings)}>"


class Watch:
    """What ``watch()`` yields; ``result`` is set when the block ends."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.result: Result | None = None

    def mark(self, phase: str) -> None:
        mark(phase)

    def snapshot(self) -> int:
        return snapshot()

    @property
    def verdict(self) -> str:
        if self.result is None:
            raise HeapwatchError("the watched block has not ended yet")
        return self.result.verdict


@contextmanager
def watch(**kwargs: Any) -> Iterator[Watch]:
    """``with heapwatch.watch(interval=0.5) as run: ...``; then ``run.result``."""
    w = Watch(start(**kwargs))
    try:
        yield w
    finally:
        w.result = stop()
