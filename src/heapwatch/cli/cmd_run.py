"""Run a command with the heapwatch agent inside it and report what leaks.

\b
  heapwatch run -- python app.py
  heapwatch run --interval 0.5s --duration 2m --out reports/mysvc -- python -m mysvc
  heapwatch run --phase baseline=30s --phase load=2m:"python load.py --rps 50" \\
                --phase peak=1m:"python load.py --rps 500" -- python -m mysvc

The agent starts inside the Python interpreter of the command (through a bootstrap on
PYTHONPATH), and in its child processes (--children: a forked worker gets a fresh agent,
an exec'd Python child the bootstrap), takes a snapshot every --interval, and the run
ends when the command exits, after --duration or --snapshots, or on Ctrl-C; then
report.html (open it first), report.md and report.json are written to --out (default:
reports/<script>-<time>).
The command's stdin, stdout, stderr and exit code pass through (an end by --duration
exits 0, Ctrl-C 130). heapwatch's own failures exit 2 with one line: bad input, an --out
that is not new or empty, a store or report that cannot be written (a full disk: every
snapshot stored so far stays in run.sqlite), a --phase load that cannot start (the
command is stopped and its reports written first). The run directory is private (0700,
files 0600). Durations: 500ms, 5s, 2m, 1h, or a bare number of seconds, up to a year.

For a service watched for a long time: --metrics HOST:PORT serves heapwatch's series to
Prometheus from this process (the target opens no port), and --retain WINDOW keeps the
store from growing by thinning snapshots older than WINDOW (see docs/fleet.md).
"""

from __future__ import annotations

import sys

import click

from heapwatch.cli.options import (
    DURATION,
    INTERVAL_HELP,
    SNAPSHOTS_HELP,
    children_option,
    execute,
    metrics_options,
    trace_options,
)


@click.command("run", help=__doc__, context_settings={"ignore_unknown_options": False})
@click.option("--interval", type=DURATION, default=None, help=INTERVAL_HELP)
@click.option("--duration", type=DURATION, default=None,
              help="Stop the command after this long (default: wait for it to exit).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: reports/<name>-<time>).")
@trace_options
@click.option("--phase", "phases", multiple=True, metavar="NAME=DURATION[:CMD]",
              help="A phase of a schedule (repeatable): marked when it starts, CMD (a load "
                   "generator) runs during it; the command is stopped after the last one.")
@click.option("--snapshots", type=click.IntRange(2, 10_000_000), default=None,
              help=SNAPSHOTS_HELP)
@children_option
@click.option("--show-names", is_flag=True,
              help="Write secret-looking names (dict keys, attribute and thread names, "
                   "command-line arguments) as they are instead of […]. Values and the "
                   "environment are never recorded.")
@metrics_options
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def command(interval: float | None, duration: float | None, out: str | None, trace: str,
            trace_depth: int | None, sample_interval: int | None, phases: tuple[str, ...],
            snapshots: int | None, children: str, show_names: bool, metrics: str | None,
            retain: str | None, cmd: tuple[str, ...]) -> None:
    sys.exit(execute(list(cmd), out, interval, duration, trace, trace_depth, phases, children,
                     show_names, metrics, retain, snapshots, sample_interval))
