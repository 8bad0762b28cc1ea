"""List the runs in a directory (default: reports/) with their verdicts and sizes."""

from __future__ import annotations

import json
import os

import click


@click.command("ls", help=__doc__)
@click.argument("directory", default="reports", type=click.Path())
def command(directory: str) -> None:
    from heapwatch.errors import UsageError
    from heapwatch.store import STORE_NAME

    if not os.path.isdir(directory):
        raise UsageError(f"{directory} is not a directory")
    rows = []
    for name in sorted(os.listdir(directory)):
        store = os.path.join(directory, name, STORE_NAME)
        if not os.path.exists(store):
            continue
        size = sum(os.path.getsize(os.path.join(directory, name, f))
                   for f in os.listdir(os.path.join(directory, name))
                   if os.path.isfile(os.path.join(directory, name, f)))
        verdict, findings, duration, command_ = "(no report)", "", "", ""
        try:
            with open(os.path.join(directory, name, "report.json"), encoding="utf-8") as f:
                rep = json.load(f)
            verdict = rep.get("verdict", "?")
            findings = str(len(rep.get("findings", [])))
            duration = f"{rep['run'].get('duration_s', 0):.0f}s"
            command_ = " ".join(rep["run"].get("command") or [])
        except (OSError, ValueError, KeyError):
            pass
        rows.append((name, verdict, findings, duration, f"{size / 1048576:.1f}M", command_))
        del size
    if not rows:
        click.echo(f"no runs in {directory}")
        return
    click.echo(f"{'run':<40} {'verdict':<13} {'findings':>8} {'length':>7} {'size':>7}  command")
    for name, verdict, n, dur, mib, cmd in rows:
        click.echo(f"{name:<40} {verdict:<13} {n:>8} {dur:>7} {mib:>7}  {cmd[:60]}")
