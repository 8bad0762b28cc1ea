"""Mark the start of a phase in a running heapwatch run.

\b
  heapwatch mark reports/mysvc load        (a run directory)
  heapwatch mark 4242 peak                 (the pid of a process with an agent)

Phase names are free; baseline, load, peak and after are the ones reports know.
"""

from __future__ import annotations

import click


@click.command("mark", help=__doc__)
@click.argument("target")
@click.argument("phase")
def command(target: str, phase: str) -> None:
    from heapwatch.control import command as send
    from heapwatch.errors import UsageError

    if not phase.strip() or any(c.isspace() for c in phase):
        raise UsageError(f"invalid phase name {phase!r}: use one word, e.g. load")
    send(target, f"mark {phase}")
    click.echo(f"heapwatch: marked {phase!r} in {target}")
