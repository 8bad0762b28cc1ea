"""Options shared by the commands that run a target (run, demo)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from heapwatch.durations import format_duration, parse_duration
from heapwatch.errors import HeapwatchError
from heapwatch.model import DEFAULT_TRACE, TRACE_MODES
from heapwatch.units import fmt_bytes, parse_bytes


class Duration(click.ParamType):  # type: ignore[type-arg]
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except HeapwatchError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()

TRACE_HELP = ("Allocation sites: sample (the default) samples about one block per 512 KiB "
              "allocated, always on, for about the cost of an allocator hook (2-4% on "
              "allocation-bound code; needs the native core: without it, auto runs); auto "
              "turns tracemalloc on in short windows while something looks like a leak; on "
              "traces everything (3-14x slower allocation); off never.")
TRACE_DEPTH_HELP = ("Frames kept per sampled or traced allocation [default: 16 with sample, "
                    "5 with auto, 1 with on].")


SAMPLE_INTERVAL_HELP = ("With --trace sample: the mean number of bytes allocated between two "
                        "sampled blocks, e.g. 64KiB or 2MiB [default: 512KiB]. Lower finds "
                        "the site of a small leak sooner and costs more per allocation "
                        "(bench/overhead.py --sweep).")
#: The bounds of --sample-interval: one sample per allocated byte is tracing with extra
#: steps; past 1 GiB a leak has to hold gigabytes before one of its blocks is sampled.
SAMPLE_INTERVAL_BOUNDS = (64, 1 << 30)


class Size(click.ParamType):  # type: ignore[type-arg]
    """A number of bytes: ``4096``, ``64KiB``, ``2MB`` (binary units), within bounds."""

    name = "size"

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> int:
        if isinstance(value, int):
            n = value
        else:
            try:
                n = round(parse_bytes(str(value)))
            except ValueError:
                self.fail(f"{value!r} is not a size: give bytes like 65536, 64KiB or 2MiB",
                          param, ctx)
        if not self.low <= n <= self.high:
            self.fail(f"{value} is outside {fmt_bytes(self.low)}..{fmt_bytes(self.high)}",
                      param, ctx)
        return n


def trace_options(f: Any) -> Any:
    """``--trace``, ``--trace-depth`` and ``--sample-interval`` for the commands that put an
    agent in a target."""
    f = click.option("--sample-interval", type=Size(*SAMPLE_INTERVAL_BOUNDS), default=None,
                     help=SAMPLE_INTERVAL_HELP)(f)
    f = click.option("--trace-depth", type=click.IntRange(1, 100), default=None,
                     help=TRACE_DEPTH_HELP)(f)
    return click.option("--trace", type=click.Choice(TRACE_MODES), default=DEFAULT_TRACE,
                        show_default=True, help=TRACE_HELP)(f)


def check_sample_interval(trace: str, sample_interval: int | None) -> None:
    """--sample-interval means something only to the sampler."""
    from heapwatch.errors import UsageError

    if sample_interval is not None and trace != "sample":
        raise UsageError(f"--sample-interval applies to --trace sample (the sampler), not to "
                         f"--trace {trace}")


SNAPSHOTS_HELP = ("Stop after this many snapshots: a count, not a clock (on a busy machine the "
                  "agent stretches its interval, and a --duration may end with too few to "
                  "judge). With --duration too, whichever comes first.")

CHILDREN_HELP = ("Which child processes get an agent of their own: all (forked and exec'd "
                 "Python children), fork (forked ones only) or none; the others are "
                 "recorded from outside (RSS, fds, threads).")


def children_option(f: Any) -> Any:
    """``--children all|fork|none`` for the commands that run a target."""
    return click.option("--children", type=click.Choice(["all", "fork", "none"]),
                        default="all", show_default=True, help=CHILDREN_HELP)(f)


INTERVAL_HELP = ("Time between snapshots [default: 5s; with --duration or --phase, a 40th of "
                 "the run (at least 30 snapshots), not below 200ms].")


class Pid(click.ParamType):  # type: ignore[type-arg]
    """A process id of this system: ASCII digits, 1 to the kernel's pid_max."""

    name = "pid"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> int:
        if isinstance(value, int):
            return value
        from heapwatch.control import parse_pid

        try:
            return parse_pid(str(value))
        except HeapwatchError as exc:
            self.fail(str(exc), param, ctx)


PID = Pid()


def metrics_options(f: Any) -> Any:
    """--metrics and --retain, shared by run and attach."""
    f = click.option(
        "--retain", metavar="WINDOW", default=None,
        help="Long-running mode: keep every snapshot of the last WINDOW (e.g. 1h) and thin "
             "older ones, so the store stops growing. Off by default: every snapshot is "
             "kept. The report says when snapshots were thinned.")(f)
    return click.option(
        "--metrics", metavar="HOST:PORT", default=None,
        help="Serve heapwatch's series for Prometheus (OpenMetrics) from this process "
             "while recording, e.g. 127.0.0.1:9464 (a bare port binds 127.0.0.1; "
             "0.0.0.0:9464 in a container). See docs/fleet.md.")(f)


def check_following(metrics: str | None, retain: str | None) -> None:
    """Refuse a bad --metrics or --retain before anything is created."""
    if metrics is not None:
        from heapwatch.metrics import parse_listen

        parse_listen(metrics)
    if retain is not None:
        from heapwatch.retention import parse_retain

        parse_retain(retain)


@contextmanager
def following(run_dir: str, interval: float, metrics: str | None, retain: str | None
              ) -> Iterator[None]:
    """Serve metrics and/or apply retention while the body records into ``run_dir``.
    Bad values and a port that cannot be bound fail here, before any target starts."""
    import os

    from heapwatch.retention import parse_retain
    from heapwatch.store import STORE_NAME

    retention = parse_retain(retain) if retain else None
    if metrics is None and retention is None:
        yield
        return
    from heapwatch.metrics import Follower, serve

    store = os.path.join(run_dir, STORE_NAME)
    if metrics is not None:
        exporter = serve(metrics, store, interval, retention)
        host, port = exporter.address
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"heapwatch: metrics on http://{shown}:{port}/metrics", err=True)
        stop = exporter.close
    else:
        follower = Follower(store, interval, retention=retention, metrics=False)
        follower.start()
        stop = follower.stop
    try:
        yield
    finally:
        stop()


def execute(cmd: list[str], out: str | None, interval: float | None, duration: float | None,
            trace: str, trace_depth: int | None, phase_specs: tuple[str, ...] = (),
            children: str = "all", show_names: bool = False, metrics: str | None = None,
            retain: str | None = None, snapshots: int | None = None,
            sample_interval: int | None = None) -> int:
    """Run ``cmd`` under the agent, analyse, write the reports, print the summary;
    return the exit code for heapwatch. A second Ctrl-C leaves the run as it is: every
    snapshot taken is in its store, and ``heapwatch report`` writes the reports."""
    from heapwatch import launch

    holder: dict[str, str] = {}
    try:
        result, analysis = record(cmd, out, interval, duration, trace, trace_depth,
                                  phase_specs, children, show_names, metrics, retain, holder,
                                  snapshots, sample_interval)
        finish(analysis)
    except KeyboardInterrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a third Ctrl-C must not cut this short
        where = holder.get("run_dir", out or "the run directory")
        click.echo(f"\nheapwatch: interrupted again: {where} keeps every snapshot taken; "
                   f"`heapwatch report {where}` writes its reports", err=True)
        return 130
    ended_early(result)
    return launch.exit_status(result)


def run_name(cmd: list[str]) -> str:
    """What a run directory is named after: the script (``app`` for ``python app.py``), the
    module (``python -m mysvc``), else the program (``sleep``), never an argument."""
    import os

    if not cmd:
        return "run"
    prog = os.path.basename(cmd[0])
    if prog.startswith(("python", "pypy")):
        args = iter(cmd[1:])
        for arg in args:
            if arg == "-m":
                return next(args, prog).split(".")[-1] or prog
            if arg == "-c":
                return prog
            if arg in ("-W", "-X", "-Q"):
                next(args, None)
                continue
            if not arg.startswith("-"):
                return os.path.splitext(os.path.basename(arg))[0] or prog
    return os.path.splitext(prog)[0] or "run"


def ended_early(result: Any) -> None:
    """After the reports: the one line and exit 2 of a run that heapwatch had to end
    early (a phase's load command that could not start)."""
    if result.error is not None:
        from heapwatch.errors import LaunchError

        raise LaunchError(f"{result.error}; the target was stopped and its reports written")


def finish(analysis: Any, directory: str | None = None, formats: tuple[str, ...] | None = None,
           memory_limit: int | None = None, cgroup: bool = True, err: bool = True
           ) -> dict[str, str]:
    """Write the reports of ``analysis`` (into its run directory by default); print what the
    store lost and the summary. The projection uses ``memory_limit``, else (``cgroup``)
    this cgroup's. Reports that cannot be written (a full disk) raise ReportError after the
    others were written and the summary printed."""
    from heapwatch.analysis.integrity import store_problems
    from heapwatch.analysis.projection import cgroup_memory_limit
    from heapwatch.errors import ReportError
    from heapwatch.report import FORMATS, summary_lines, write_reports

    for line in store_problems(analysis.data):
        click.echo(f"heapwatch: warning: {line}", err=True)
    if memory_limit is None and cgroup:
        memory_limit = cgroup_memory_limit()
    paths: dict[str, str] = {}
    try:
        paths = write_reports(analysis, directory or analysis.run_dir, formats or FORMATS,
                              memory_limit=memory_limit)
    except ReportError as exc:
        paths = exc.written
        raise
    finally:
        if paths:
            for line in summary_lines(analysis, paths):
                click.echo(line, err=err)
    return paths


def record(cmd: list[str], out: str | None, interval: float | None, duration: float | None,
           trace: str, trace_depth: int | None, phase_specs: tuple[str, ...] = (),
           children: str = "all", show_names: bool = False, metrics: str | None = None,
           retain: str | None = None, holder: dict[str, str] | None = None,
           snapshots: int | None = None, sample_interval: int | None = None
           ) -> tuple[Any, Any]:
    """Run ``cmd`` under the agent and analyse the run: (LaunchResult, Analysis)."""

    from heapwatch import launch
    from heapwatch.analysis import analyze_run
    from heapwatch.durations import default_interval
    from heapwatch.errors import UsageError
    from heapwatch.model import default_trace_depth
    from heapwatch.rundir import default_run_dir, prepare_run_dir
    from heapwatch.schedule import parse_phase

    phases = [parse_phase(p) for p in phase_specs]
    if phases and (duration is not None or snapshots is not None):
        raise UsageError("use either --duration/--snapshots or --phase: a schedule ends after "
                         "its last phase")
    check_sample_interval(trace, sample_interval)
    launch.check_command(cmd)
    for ph in phases:
        if ph.command:
            try:
                launch.check_command(list(ph.command))
            except HeapwatchError as exc:
                raise UsageError(f"--phase {ph.name}: {exc}") from None
    if interval is None:
        planned = sum(p.seconds for p in phases) if phases else duration
        interval = default_interval(planned)
    check_following(metrics, retain)
    if trace_depth is None:
        trace_depth = default_trace_depth(trace)
    from heapwatch import redact

    # the run's name must not carry a password given in the command
    stem = run_name(redact.argv(cmd))
    if redact.HIDDEN in stem:
        stem = "run"
    run_dir = prepare_run_dir(out or default_run_dir(stem))
    if holder is not None:
        holder["run_dir"] = run_dir
    tty = sys.stderr.isatty()

    def status(line: str) -> None:
        click.echo(f"\r\x1b[2K[heapwatch] {line}", err=True, nl=False)

    plain = PlainProgress()

    def notice(line: str) -> None:
        click.echo(f"heapwatch: {line}", err=True)

    with following(run_dir, interval, metrics, retain):
        click.echo(f"heapwatch: recording to {run_dir} every {format_duration(interval)}"
                   + (f" for {format_duration(duration)}" if duration else "")
                   + (f" up to {snapshots} snapshots" if snapshots else ""), err=True)
        result = launch.run(cmd, run_dir, interval, duration, trace, trace_depth,
                            status=status if tty else plain, notice=notice, phases=phases,
                            children=children, show_names=show_names,
                            max_snapshots=snapshots, sample_interval=sample_interval)
    if tty:
        click.echo("\r\x1b[2K", err=True, nl=False)
    for line in result.store_errors:
        click.echo(f"heapwatch: warning: {line}", err=True)
    return result, analyze_run(run_dir)


class PlainProgress:
    """Progress for a log (stderr is not a terminal): one line every ``every`` snapshots or
    ``seconds``, whichever comes first, so a CI log shows life without a line a second."""

    def __init__(self, every: int = 10, seconds: float = 30.0) -> None:
        import time

        self.every, self.seconds = every, seconds
        self._clock = time.monotonic
        self.last_n = 0
        self.last_t = self._clock()

    def __call__(self, line: str) -> None:
        import re

        m = re.search(r"snapshots (\d+)", line)
        n = int(m.group(1)) if m else 0
        now = self._clock()
        if n - self.last_n >= self.every or (n > self.last_n and now - self.last_t >= self.seconds):
            self.last_n, self.last_t = n, now
            click.echo(f"heapwatch: {' '.join(line.split())}", err=True)
