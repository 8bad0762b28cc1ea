"""Attach to a running Python process, record what leaks, and leave it as it was.

\b
  heapwatch attach 4242 --duration 10m
  heapwatch attach 4242 --interval 1s --out reports/mysvc      (until Ctrl-C)
  heapwatch attach 4242 --method lldb
  heapwatch attach 4242 --tree        (a master and all its workers)
  heapwatch attach 4242 --python /opt/python3.14/bin/python3.14  (3.14: sys.remote_exec)

The agent gets into the process without restarting it: on Python 3.14+ through
sys.remote_exec (called from an interpreter of the target's version: its own
executable, or --python), else through lldb at a safe point (a pending call when the
main thread runs Python code, a new thread when it waits in a system call). It takes a
snapshot every --interval until --duration passes, Ctrl-C, 'heapwatch stop PID' or the
process exits; then the agent stops (final snapshot, its thread ends, tracemalloc is
stopped if it started it, the sampling allocator hook of --trace sample is removed, or
left as a pass-through when another hook was installed after it), report.html (open it
first), report.md and report.json are written to --out, and the process keeps running.
--trace sample needs heapwatch's C extension built for the target's Python; without it
the agent runs auto. Each attach is logged (time, pid, method, user) in the run's
metadata. Needs Linux, Python 3.10+ in the target, the same user (as root, --force to
cross users) and, below 3.14, lldb (apt-get install -y lldb).
"""

from __future__ import annotations

import os
import sys

import click

from heapwatch.cli.options import DURATION, PID, following, metrics_options, trace_options


@click.command("attach", help=__doc__)
@click.argument("pid", type=PID)
@click.option("--duration", type=DURATION, default=None,
              help="Record this long (default: until Ctrl-C, heapwatch stop PID, or exit).")
@click.option("--interval", type=DURATION, default="5s", show_default=True,
              help="Time between snapshots.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: reports/<name>-<time>).")
@trace_options
@click.option("--method", type=click.Choice(["auto", "remote-exec", "lldb", "gdb"]),
              default="auto", show_default=True,
              help="How to get in: auto is remote-exec on 3.14+ (lldb when the main thread "
                   "does not pick it up), lldb below.")
@click.option("--python", "python", type=click.Path(dir_okay=False), default=None,
              help="Interpreter of the target's Python version to call sys.remote_exec with.")
@click.option("--start-timeout", type=DURATION, default="10s", show_default=True,
              help="How long to wait for the agent to report back.")
@click.option("--force", is_flag=True,
              help="As root, attach to another user's process.")
@click.option("--tree", is_flag=True,
              help="Enter every Python process below PID too (a pre-fork server's workers); "
                   "workers it forks later get an agent from its fork hook.")
@click.option("--show-names", is_flag=True,
              help="Write secret-looking names (dict keys, attribute and thread names, "
                   "command-line arguments) as they are instead of […].")
@metrics_options
def command(pid: int, duration: float | None, interval: float, out: str | None, trace: str,
            trace_depth: int | None, sample_interval: int | None, method: str,
            python: str | None, start_timeout: float,
            force: bool, tree: bool, show_names: bool, metrics: str | None,
            retain: str | None) -> None:
    from heapwatch.analysis import analyze_run
    from heapwatch.attach.session import AttachOptions, record
    from heapwatch.cli.options import check_sample_interval, finish
    from heapwatch.durations import format_duration
    from heapwatch.model import default_trace_depth
    from heapwatch.rundir import default_run_dir

    check_sample_interval(trace, sample_interval)
    if trace_depth is None:
        trace_depth = default_trace_depth(trace)
    run_dir = os.path.abspath(out or default_run_dir(_stem(pid)))
    tty = sys.stderr.isatty()

    def status(line: str) -> None:
        click.echo(f"\r\x1b[2K[heapwatch] {line}", err=True, nl=False)

    def notice(line: str) -> None:
        if tty:
            click.echo("\r\x1b[2K", err=True, nl=False)
        click.echo(f"heapwatch: {line}", err=True)

    def started(how: str, method_used: str, stopped_s: float) -> None:
        paused = f"; the process was stopped for {stopped_s:.2f}s" if stopped_s else ""
        via = method_used if how == method_used else f"{method_used}, {how}"
        click.echo(f"heapwatch: agent started in process {pid} ({via}){paused}; "
                   f"recording to {run_dir} every {format_duration(interval)}"
                   + (f" for {format_duration(duration)}" if duration else
                      f" until Ctrl-C or 'heapwatch stop {pid}'"), err=True)

    opts = AttachOptions(pid=pid, run_dir=run_dir, interval=interval, duration=duration,
                         trace=trace, trace_depth=trace_depth, method=method, python=python,
                         force=force, start_timeout=start_timeout, tree=tree,
                         show_names=show_names, sample_interval=sample_interval)
    with following(run_dir, interval, metrics, retain):
        result = record(opts, status=status if tty else None, notice=notice, started=started)
    if tty:
        click.echo("\r\x1b[2K", err=True, nl=False)
    ended = {"duration": "after --duration", "interrupt": "on Ctrl-C",
             "stopped": "by 'heapwatch stop'", "exit": "because the process exited"}
    gone = "" if result.ended_by == "exit" else f"; process {pid} keeps running"
    click.echo(f"heapwatch: agent stopped {ended.get(result.ended_by, '')}{gone}", err=True)
    finish(analyze_run(result.run_dir), cgroup=False)
    sys.exit(130 if result.ended_by == "interrupt" else 0)


def _stem(pid: int) -> str:
    """The run's default name: the target's script or module (``app`` for app.py)."""
    from heapwatch import redact

    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = redact.argv(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
    except OSError:
        return f"pid{pid}"
    if any(redact.HIDDEN in a for a in args[:3]):
        return f"pid{pid}"
    from heapwatch.history import service_name

    return service_name(args) if args else f"pid{pid}"
