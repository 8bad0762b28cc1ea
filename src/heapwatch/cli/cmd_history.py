"""Print the trend of the last soak runs recorded in a history file.

\b
  heapwatch history soak-history.sqlite --last 10
"""

from __future__ import annotations

import datetime as _dt

import click


@click.command("history", help=__doc__)
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--last", type=click.IntRange(1, 1000), default=10, show_default=True)
def command(path: str, last: int) -> None:
    from heapwatch.history import recent

    runs = recent(path, last)
    if not runs:
        click.echo(f"no runs in {path}")
        return
    seen: dict[str, list[float | None]] = {}
    titles: dict[str, str] = {}
    for i, r in enumerate(runs):
        for f in r["findings"]:
            seen.setdefault(f["fingerprint"], [None] * len(runs))[i] = f["per_hour"]
            titles[f["fingerprint"]] = f["title"]
    click.echo(f"{'run':>5}  {'when':<16} {'result':<6} {'verdict':<13} findings")
    for r in runs:
        when = _dt.datetime.fromtimestamp(r["t"]).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{r['id']:>5}  {when:<16} {'pass' if r['passed'] else 'FAIL':<6} "
                   f"{r['verdict']:<13} {len(r['findings'])}")
    if seen:
        click.echo("\nfinding rates per hour, oldest run first (- = absent):")
        for fp, rates in seen.items():
            cells = " ".join(f"{v:>9.0f}" if v is not None else f"{'-':>9}" for v in rates)
            click.echo(f"  {fp}  {cells}  {titles[fp][:70]}")
