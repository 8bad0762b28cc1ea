"""Run a command as a CI soak test: leaks and budgets decide pass or fail.

\b
  heapwatch soak --duration 10m --budget rss-growth=5MB/h --budget threads-max=64 \\
      --junit out/heapwatch.xml --history soak-history.sqlite -- python -m mysvc

Exit codes: 0 pass; 1 a leak or a budget exceeded (also when the target was killed
for memory while growing); 2 usage or setup error; 3 the target itself failed (crashed
or exited non-zero before the planned end; an end by --duration is normal); 130
interrupted. --fail-on takes leak, budget, new (only findings absent from --history)
or any (default: leak,budget). Budgets: rss-growth, heap-growth, fds-growth,
threads-growth, objects-growth (per hour, e.g. 5MB/h, 0/h), rss-max, fds-max,
threads-max; checked over the run and each phase, rates only over windows of at least
--min-window. --ignore PATTERN (glob on path, type, site or title; repeatable, and
[tool.heapwatch] ignore = [...] in pyproject.toml) suppresses known findings.
--history takes a SQLite file or a PostgreSQL URL (postgresql://user@host/db, shared by
many services and hosts); runs are compared with the last run of the same --service
(default: the command's script or module name).
"""

from __future__ import annotations

import os
import sys

import click

from heapwatch.cli.options import (
    DURATION,
    INTERVAL_HELP,
    SNAPSHOTS_HELP,
    children_option,
    trace_options,
)


@click.command("soak", help=__doc__)
@click.option("--interval", type=DURATION, default=None, help=INTERVAL_HELP)
@click.option("--duration", type=DURATION, default=None)
@click.option("--snapshots", type=click.IntRange(2, 10_000_000), default=None,
              help=SNAPSHOTS_HELP)
@click.option("--out", type=click.Path(file_okay=False), default=None)
@trace_options
@click.option("--phase", "phases", multiple=True, metavar="NAME=DURATION[:CMD]")
@click.option("--fail-on", "fail_on", default="leak,budget", show_default=True)
@click.option("--budget", "budgets", multiple=True, metavar="SPEC")
@click.option("--min-window", type=DURATION, default="60s", show_default=True,
              help="Shortest window a rate budget is checked on.")
@click.option("--ignore", "ignores", multiple=True, metavar="PATTERN")
@click.option("--junit", type=click.Path(dir_okay=False), default=None)
@click.option("--history", "history_path", type=click.Path(dir_okay=False), default=None,
              help="SQLite file or postgresql:// URL of the soak history.")
@click.option("--service", default=None,
              help="Name of the service in the history [default: the command's script or "
                   "module].")
@children_option
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def command(interval: float | None, duration: float | None, snapshots: int | None,
            out: str | None, trace: str, trace_depth: int | None,
            sample_interval: int | None, phases: tuple[str, ...], fail_on: str,
            budgets: tuple[str, ...], min_window: float, ignores: tuple[str, ...],
            junit: str | None, history_path: str | None, service: str | None, children: str,
            cmd: tuple[str, ...]) -> None:
    from heapwatch import history, soak
    from heapwatch.analysis.budgets import parse_budget
    from heapwatch.cli.options import ended_early, finish, record
    from heapwatch.report.junit import write_junit

    # Everything that can be wrong with the input is checked before the target starts.
    parsed = [parse_budget(b) for b in budgets]
    fail_set = soak.parse_fail_on(fail_on)
    if "new" in fail_set and not history_path:
        from heapwatch.errors import UsageError

        raise UsageError("--fail-on new needs --history FILE to know what is new")
    patterns = list(ignores) + soak.config_ignores(os.getcwd())
    service = service or history.service_name(list(cmd))
    if history_path and history.is_url(history_path):
        history.open_history(history_path).close()  # reachable before a long soak starts
    result, analysis = record(list(cmd), out, interval, duration, trace, trace_depth, phases,
                              children, snapshots=snapshots,
                              sample_interval=sample_interval)
    outcome = soak.judge(analysis, parsed, fail_set, patterns, history_path, min_window,
                         service)
    finish(analysis)
    ended_early(result)
    if junit:
        write_junit(junit, "heapwatch soak", outcome.cases, analysis.run["duration_s"])
    if history_path:
        history.record(history_path, analysis.run, analysis.verdict, outcome.passed,
                       [f.as_dict() for f in analysis.findings
                        if f.fingerprint not in analysis.ignored], analysis.run_dir, service)
    for line in outcome.failures:
        click.echo(f"  FAIL {line}", err=True)
    for f in analysis.findings:
        status = analysis.statuses.get(f.fingerprint)
        if status and f.severity != "low":
            click.echo(f"  {status}: {f.title}", err=True)
    for gone in (analysis.history or {}).get("gone", []):
        click.echo(f"  gone: {gone['title']}", err=True)
    if result.ended_by == "interrupt":
        sys.exit(soak.EXIT_INTERRUPTED)
    code = result.exit_code or 0
    if result.ended_by == "exit" and code != 0:
        oom = code == -9 and analysis.verdict == "leak"
        if not oom:
            click.echo(f"heapwatch soak: the target failed (exit {code}) before the planned end",
                       err=True)
            sys.exit(soak.EXIT_TARGET)
    click.echo(f"heapwatch soak: {'PASS' if outcome.passed else 'FAIL'}", err=True)
    sys.exit(soak.EXIT_PASS if outcome.passed else soak.EXIT_FAIL)
