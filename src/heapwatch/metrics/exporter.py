"""The OpenMetrics endpoint (prometheus_client) and the thread that follows the store.

The :class:`Follower` notices new snapshots with a cheap query and re-analyses the run
when a scrape came since its last analysis (nobody scraping: no analysis after the
first), at most a ``duty`` share of one core (an analysis that took 0.2 s waits 1.8 s at
duty 0.1). It keeps only the small :class:`~heapwatch.metrics.figures.Figures` (never the
loaded run), and applies ``--retain``. A scrape only renders the last figures: it never
waits for an analysis, so what it shows is at most one scrape interval (plus one
analysis) old. The registry is heapwatch's own: the process and gc collectors of
prometheus_client describe the process that serves, not the target, and a service that
wants them exports them itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

from heapwatch.errors import MetricsError, UsageError
from heapwatch.metrics.figures import SEVERITY_LEVEL, Figures, compute
from heapwatch.retention import Retention
from heapwatch.retention import apply as apply_retention
from heapwatch.retention import dropped as retention_dropped

VERDICTS = ("leak", "no-leak", "inconclusive")
RETAIN_EVERY_S = 60.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``PORT`` (then 127.0.0.1: nothing is exposed
    beyond this machine unless a host is given, e.g. ``0.0.0.0:9464`` in a pod)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise UsageError(f"invalid --metrics {text!r}: give HOST:PORT, e.g. 127.0.0.1:9464")
    return host, number


class Follower:
    """Follows a run store from a daemon thread: figures after new snapshots, retention."""

    def __init__(self, store: str, interval: float, duty: float = 0.1,
                 retention: Retention | None = None, metrics: bool = True) -> None:
        self.store = store
        self.interval = interval
        self.duty = duty
        self.retention = retention
        self.metrics = metrics
        self.figures: Figures | None = None
        self.scraped = False  # set by a scrape: the next new snapshot is worth analysing
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen = (-1, -1)
        self._next_refresh = 0.0
        self._next_retain = 0.0

    def start(self) -> None:
        if self.retention is not None and os.path.exists(self.store):
            # Now, so that the store says the run has retention from its start.
            apply_retention(self.store, self.retention)
            self._next_retain = time.monotonic() + self._retain_every()
        self._thread = threading.Thread(target=self._run, name="heapwatch-metrics",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    close = stop

    def _retain_every(self) -> float:
        assert self.retention is not None
        return min(RETAIN_EVERY_S, self.retention.window_s / 10)

    def _run(self) -> None:
        poll = min(1.0, max(0.05, self.interval / 4))
        while not self._stop.wait(poll):
            try:
                self.step()
            except Exception as exc:  # a bad refresh must not end the exporter
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                del self.errors[:-20]

    def step(self, now: float | None = None) -> bool:
        """One look at the store: retention when due, figures when a snapshot landed and
        the duty cycle allows. True when the figures were refreshed."""
        now = time.monotonic() if now is None else now
        if not os.path.exists(self.store):
            return False
        from heapwatch.store import LiveReader

        if self.retention is not None and now >= self._next_retain:
            apply_retention(self.store, self.retention)
            self._next_retain = now + self._retain_every()
        if not self.metrics or now < self._next_refresh:
            return False
        if self.figures is not None and not self.scraped:
            return False
        reader = LiveReader(self.store)
        try:
            latest = reader.latest()
        finally:
            reader.close()
        if latest == self._seen or latest[0] == 0:
            return False
        self.refresh()
        self._seen = latest
        return True

    def refresh(self) -> Figures:
        from heapwatch.store import open_run

        t0 = time.perf_counter()
        data = open_run(self.store)
        dropped = retention_dropped(data.meta)
        figures = compute(data, dropped, time.time())
        del data
        took = time.perf_counter() - t0
        self.figures = Figures(figures.roles, figures.findings, figures.refreshed_t, took)
        self._next_refresh = time.monotonic() + took * (1 / self.duty - 1)
        self.scraped = False
        return self.figures


class _Collector:
    """Renders the follower's last figures at each scrape."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower

    def describe(self) -> list[Any]:
        return []  # no collect() at registration: the store may not exist yet

    def collect(self) -> Iterator[Any]:
        self.follower.scraped = True
        fig = self.follower.figures
        if fig is None:
            return
        yield from families(fig)


def families(fig: Figures) -> list[Any]:
    """The metric families of ``fig`` (OpenTelemetry names in Prometheus form where one
    exists: process.thread.count -> process_thread_count)."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        Metric,
        StateSetMetricFamily,
    )

    role = ["role"]
    processes = GaugeMetricFamily("heapwatch_processes", "Processes watched, by role.",
                                  labels=role)
    verdict = StateSetMetricFamily("heapwatch_verdict", "The analysis' verdict so far.",
                                   labels=role)
    snapshots = CounterMetricFamily("heapwatch_snapshots", "Snapshots taken by the agent.",
                                    labels=role)
    errors = CounterMetricFamily("heapwatch_agent_errors",
                                 "Errors the agent recorded (a collector failed, a snapshot "
                                 "was cut); the target is never affected.", labels=role)
    last = GaugeMetricFamily("heapwatch_last_snapshot_timestamp_seconds",
                             "When the newest snapshot was taken (Unix time).", labels=role,
                             unit="seconds")
    pause = Metric("heapwatch_snapshot_pause_seconds",
                   "How long a snapshot held up the agent's thread (the target's GIL "
                   "at most that long).", "summary", unit="seconds")
    heap = GaugeMetricFamily("heapwatch_heap_bytes",
                             "Python heap: traced by tracemalloc (while tracing) or "
                             "estimated by the sampling hook.", labels=["role", "method"],
                             unit="bytes")
    objects = GaugeMetricFamily("heapwatch_objects",
                                "Live gc-tracked objects of the most numerous types.",
                                labels=["role", "type"])
    threads = GaugeMetricFamily("process_thread_count", "Threads of the watched processes "
                                "(OpenTelemetry process.thread.count).", labels=role)
    for r in fig.roles:
        processes.add_metric([r.role], r.processes)
        verdict.add_metric([r.role], {v: r.verdict == v for v in VERDICTS})
        snapshots.add_metric([r.role], r.snapshots)
        errors.add_metric([r.role], r.errors)
        if r.last_snapshot_t is not None:
            last.add_metric([r.role], r.last_snapshot_t)
        for q, v in r.pause_quantiles:
            pause.add_sample(pause.name, {"role": r.role, "quantile": f"{q:g}"}, v)
        pause.add_sample(pause.name + "_count", {"role": r.role}, r.pause_count)
        pause.add_sample(pause.name + "_sum", {"role": r.role}, r.pause_sum)
        for method, v in r.heap:
            heap.add_metric([r.role, method], v)
        for name, n in r.objects:
            objects.add_metric([r.role, name], n)
        if r.threads is not None:
            threads.add_metric([r.role], r.threads)
    items = GaugeMetricFamily("heapwatch_suspect_container_items",
                              "Items in a container found growing, by finding fingerprint "
                              "and owner path (top 20 findings per role).",
                              labels=["role", "fingerprint", "path"])
    growth = GaugeMetricFamily("heapwatch_finding_growth_rate",
                               "A finding's growth per second, in its unit (items, objects, "
                               "bytes, fds, threads...), after warm-up.",
                               labels=["role", "fingerprint", "path", "kind", "unit"])
    severity = GaugeMetricFamily("heapwatch_finding_severity",
                                 "A finding's severity: "
                                 + ", ".join(f"{v} {k}" for k, v in SEVERITY_LEVEL.items())
                                 + " (medium or high makes the verdict leak).",
                                 labels=["role", "fingerprint", "path", "kind"])
    for f in fig.findings:
        if f.length is not None:
            items.add_metric([f.role, f.fingerprint, f.path], f.length)
        growth.add_metric([f.role, f.fingerprint, f.path, f.kind, f.unit], f.per_second)
        severity.add_metric([f.role, f.fingerprint, f.path, f.kind], f.severity)
    cost = GaugeMetricFamily("heapwatch_analysis_seconds",
                             "How long the exporter's last analysis of the store took.",
                             unit="seconds")
    cost.add_metric([], fig.analysis_s)
    out = [processes, verdict, snapshots, errors, last, pause, heap, objects, threads, cost]
    out += [fam for fam in (items, growth, severity) if fam.samples]
    return out


class Exporter:
    """A served endpoint: the HTTP server's thread and the follower's."""

    def __init__(self, follower: Follower, server: Any, thread: threading.Thread,
                 address: tuple[str, int]) -> None:
        self.follower = follower
        self._server = server
        self._thread = thread
        self.address = address

    def close(self) -> None:
        self.follower.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def serve(listen: str, store: str, interval: float, retention: Retention | None = None,
          duty: float = 0.1) -> Exporter:
    """Bind ``listen`` now (a clear error if it cannot), then follow ``store``."""
    host, port = parse_listen(listen)
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise MetricsError("--metrics needs prometheus_client: pip install "
                           "'heapwatch[metrics]'") from None
    follower = Follower(store, interval, duty, retention)
    registry = CollectorRegistry(auto_describe=False)
    # Duck-typed: prometheus_client's Collector is an ABC up to 0.21 (the version the
    # scenarios pin) and a Protocol later; what counts is the collect() it calls.
    registry.register(cast(Any, _Collector(follower)))
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None
    follower.start()
    bound_host, bound_port = server.server_address[:2]
    return Exporter(follower, server, thread, (str(bound_host), int(bound_port)))
