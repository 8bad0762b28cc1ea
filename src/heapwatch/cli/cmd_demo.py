"""Run a bundled leaking service under heapwatch and show where the report is.

It runs until 40 snapshots are taken (about 20 s; longer on a busy machine, which
stretches the interval between snapshots), at most --duration.

The service (scenarios/pending_tracker) answers simulated requests but never forgets
the ones it answered; heapwatch names the dict that grows, who holds it and the line
that fills it.
"""

from __future__ import annotations

import os
import sys

import click

from heapwatch.cli.options import DURATION, SNAPSHOTS_HELP, execute
from heapwatch.errors import UsageError
from heapwatch.model import DEFAULT_TRACE


def scenario_path(name: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    path = os.path.join(root, "scenarios", name, f"{name}.py")
    if not os.path.exists(path):
        raise UsageError(
            "the demo runs scenarios/ from the heapwatch source checkout, which this "
            "installation does not have: clone the repository and `pip install -e .` in it"
        )
    return path


@click.command("demo", help=__doc__)
@click.option("--snapshots", type=click.IntRange(2, 10_000_000), default=40, show_default=True,
              help=SNAPSHOTS_HELP)
@click.option("--duration", type=DURATION, default="2m", show_default=True,
              help="The longest the demo runs (a machine too busy for the snapshots above).")
@click.option("--interval", type=DURATION, default="0.5s", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None)
@click.option("--scenario", default="pending_tracker", show_default=True,
              help="Which scenario under scenarios/ to run.")
def command(snapshots: int, duration: float, interval: float, out: str | None,
            scenario: str) -> None:
    script = scenario_path(scenario)
    cmd = [sys.executable, script]
    code = execute(cmd, out, interval, duration, DEFAULT_TRACE, None, snapshots=snapshots)
    sys.exit(0 if code in (0, 130) else code)
