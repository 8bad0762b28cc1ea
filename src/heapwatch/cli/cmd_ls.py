"""List the runs in a directory (default: reports/) with their verdicts and sizes.

\b
  heapwatch ls                 the runs under reports/
  heapwatch ls reports/svc-1   one run directory
"""

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
    if os.path.exists(os.path.join(directory, STORE_NAME)):  # a run directory itself
        directory, only = os.path.split(os.path.abspath(directory))
        names = [only]
    else:
        names = sorted(os.listdir(directory))
    for name in names:
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
            command_ = short_command(rep["run"].get("command") or [])
        except (OSError, ValueError, KeyError):
            pass
        rows.append((name, verdict, findings, duration, f"{size / 1048576:.1f}M", command_))
        del size
    if not rows:
        click.echo(f"no runs in {directory}")
        return
    click.echo(f"{'run':<40} {'verdict':<13} {'findings':>8} {'length':>7} {'size':>7}  command")
    for name, verdict, n, dur, mib, cmd in rows:
        click.echo(f"{name:<40} {verdict:<13} {n:>8} {dur:>7} {mib:>7}  {cmd}")


def short_command(cmd: list[str], width: int = 60) -> str:
    """The command with paths shortened to their last part, cut between words (never in
    the middle of a path) with a trailing … when it is still too long."""
    words = [os.path.basename(w) if os.sep in w and not w.startswith("-") else w for w in cmd]
    out = ""
    for w in words:
        nxt = f"{out} {w}" if out else w
        if len(nxt) > width:
            return (out + " …") if out else w
        out = nxt
    return out
