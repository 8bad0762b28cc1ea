"""Stop the heapwatch agent of a run (final snapshot, store closed); the process goes on.

\b
  heapwatch stop reports/mysvc
  heapwatch stop 4242
"""

from __future__ import annotations

import click


@click.command("stop", help=__doc__)
@click.argument("target")
def command(target: str) -> None:
    from heapwatch.control import command as send

    reply = send(target, "stop")
    click.echo(f"heapwatch: agent stopped ({reply.split()[-1]} snapshots)")
