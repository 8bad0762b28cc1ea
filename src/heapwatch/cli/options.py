"""Options shared by the commands that run a target (run, demo)."""

from __future__ import annotations

import sys
from typing import Any

import click

from heapwatch.durations import format_duration, parse_duration
from heapwatch.errors import HeapwatchError


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


def execute(cmd: list[str], out: str | None, interval: float, duration: float | None,
            trace: str, trace_depth: int | None, phase_specs: tuple[str, ...] = (),
            children: str = "all", snapshots: int | None = None) -> int:
    """Run ``cmd`` under the agent, analyse, write the reports, print the summary;
    return the exit code for heapwatch. A second Ctrl-C leaves the run as it is: every
    snapshot taken is in its store, and ``heapwatch report`` writes the reports."""
    from heapwatch import launch

    holder: dict[str, str] = {}
    try:
        result, analysis = record(cmd, out, interval, duration, trace, trace_depth,
                                  phase_specs, children, holder, snapshots)
        finish(analysis)
    except KeyboardInterrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a third Ctrl-C must not cut this short
        where = holder.get("run_dir", out or "the run directory")
        click.echo(f"\nheapwatch: interrupted again: {where} keeps every snapshot taken; "
                   f"`heapwatch report {where}` writes its reports", err=True)
        return 130
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


def finish(analysis: Any) -> dict[str, str]:
    """Write the reports of ``analysis`` into its run directory; print the summary."""
    from heapwatch.analysis.projection import cgroup_memory_limit
    from heapwatch.report import summary_lines, write_reports

    paths = write_reports(analysis, analysis.run_dir, memory_limit=cgroup_memory_limit())
    for line in summary_lines(analysis, paths):
        click.echo(line, err=True)
    return paths


def record(cmd: list[str], out: str | None, interval: float, duration: float | None,
           trace: str, trace_depth: int | None, phase_specs: tuple[str, ...] = (),
           children: str = "all", holder: dict[str, str] | None = None,
           snapshots: int | None = None) -> tuple[Any, Any]:
    """Run ``cmd`` under the agent and analyse the run: (LaunchResult, Analysis)."""

    from heapwatch import launch
    from heapwatch.analysis import analyze_run
    from heapwatch.errors import UsageError
    from heapwatch.model import default_trace_depth
    from heapwatch.rundir import default_run_dir, prepare_run_dir
    from heapwatch.schedule import parse_phase

    phases = [parse_phase(p) for p in phase_specs]
    if phases and (duration is not None or snapshots is not None):
        raise UsageError("use either --duration/--snapshots or --phase: a schedule ends after "
                         "its last phase")
    launch.check_command(cmd)
    if trace_depth is None:
        trace_depth = default_trace_depth(trace)
    run_dir = prepare_run_dir(out or default_run_dir(run_name(cmd)))
    if holder is not None:
        holder["run_dir"] = run_dir
    tty = sys.stderr.isatty()

    def status(line: str) -> None:
        click.echo(f"\r\x1b[2K[heapwatch] {line}", err=True, nl=False)

    plain = PlainProgress()

    def notice(line: str) -> None:
        click.echo(f"heapwatch: {line}", err=True)

    click.echo(f"heapwatch: recording to {run_dir} every {format_duration(interval)}"
               + (f" for {format_duration(duration)}" if duration else "")
               + (f" up to {snapshots} snapshots" if snapshots else ""), err=True)
    result = launch.run(cmd, run_dir, interval, duration, trace, trace_depth,
                        status=status if tty else plain, notice=notice, phases=phases,
                        children=children, max_snapshots=snapshots)
    if tty:
        click.echo("\r\x1b[2K", err=True, nl=False)
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
