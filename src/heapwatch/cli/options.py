"""Options shared by the commands that run a target (run, demo)."""

from __future__ import annotations

import sys
from typing import Any

import click

from heapwatch.durations import format_duration, parse_duration
from heapwatch.errors import HeapwatchError
from heapwatch.model import DEFAULT_TRACE, TRACE_MODES


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


def trace_options(f: Any) -> Any:
    """``--trace`` and ``--trace-depth`` for the commands that put an agent in a target."""
    f = click.option("--trace-depth", type=click.IntRange(1, 100), default=None,
                     help=TRACE_DEPTH_HELP)(f)
    return click.option("--trace", type=click.Choice(TRACE_MODES), default=DEFAULT_TRACE,
                        show_default=True, help=TRACE_HELP)(f)

CHILDREN_HELP = ("Which child processes get an agent of their own: all (forked and exec'd "
                 "Python children), fork (forked ones only) or none; the others are "
                 "recorded from outside (RSS, fds, threads).")


def children_option(f: Any) -> Any:
    """``--children all|fork|none`` for the commands that run a target."""
    return click.option("--children", type=click.Choice(["all", "fork", "none"]),
                        default="all", show_default=True, help=CHILDREN_HELP)(f)


def execute(cmd: list[str], out: str | None, interval: float, duration: float | None,
            trace: str, trace_depth: int | None, phase_specs: tuple[str, ...] = (),
            children: str = "all") -> int:
    """Run ``cmd`` under the agent, analyse, write the reports, print the summary;
    return the exit code for heapwatch."""
    from heapwatch import launch

    result, analysis = record(cmd, out, interval, duration, trace, trace_depth, phase_specs,
                              children)
    finish(analysis)
    return launch.exit_status(result)


def finish(analysis: Any) -> dict[str, str]:
    """Write the reports of ``analysis`` into its run directory; print the summary."""
    from heapwatch.analysis.projection import cgroup_memory_limit
    from heapwatch.report import summary_lines, write_reports

    paths = write_reports(analysis, analysis.run_dir, memory_limit=cgroup_memory_limit())
    for line in summary_lines(analysis, paths["json"]):
        click.echo(line, err=True)
    return paths


def record(cmd: list[str], out: str | None, interval: float, duration: float | None,
           trace: str, trace_depth: int | None, phase_specs: tuple[str, ...] = (),
           children: str = "all") -> tuple[Any, Any]:
    """Run ``cmd`` under the agent and analyse the run: (LaunchResult, Analysis)."""
    import os

    from heapwatch import launch
    from heapwatch.analysis import analyze_run
    from heapwatch.errors import UsageError
    from heapwatch.model import default_trace_depth
    from heapwatch.rundir import default_run_dir, prepare_run_dir
    from heapwatch.schedule import parse_phase

    phases = [parse_phase(p) for p in phase_specs]
    if phases and duration is not None:
        raise UsageError("use either --duration or --phase: a schedule ends after its last phase")
    launch.check_command(cmd)
    if trace_depth is None:
        trace_depth = default_trace_depth(trace)
    stem = os.path.splitext(os.path.basename(cmd[-1] if cmd else "run"))[0]
    run_dir = prepare_run_dir(out or default_run_dir(stem))
    tty = sys.stderr.isatty()

    def status(line: str) -> None:
        click.echo(f"\r\x1b[2K[heapwatch] {line}", err=True, nl=False)

    def notice(line: str) -> None:
        click.echo(f"heapwatch: {line}", err=True)

    click.echo(f"heapwatch: recording to {run_dir} every {format_duration(interval)}"
               + (f" for {format_duration(duration)}" if duration else ""), err=True)
    result = launch.run(cmd, run_dir, interval, duration, trace, trace_depth,
                        status=status if tty else None, notice=notice, phases=phases,
                        children=children)
    if tty:
        click.echo("\r\x1b[2K", err=True, nl=False)
    return result, analyze_run(run_dir)
