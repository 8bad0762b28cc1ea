"""Print the trend of the last soak runs recorded in a history, service by service.

\b
  heapwatch history soak-history.sqlite --last 10
  heapwatch history postgresql://ci@db.internal/soak --service checkout

For each service: its runs (when, host, pass/fail, verdict), then each finding's growth
rate per hour across those runs (- where absent) and its status in the newest run
(new, still present), and the findings gone since the run before.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import click


@click.command("history", help=__doc__)
@click.argument("location", metavar="FILE|URL")
@click.option("--last", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Runs shown per service.")
@click.option("--service", default=None, help="Show this service only.")
def command(location: str, last: int, service: str | None) -> None:
    from heapwatch.history import recent, safe_location

    runs = recent(location, last, service)
    if not runs:
        click.echo(f"no runs in {safe_location(location)}"
                   + (f" for service {service}" if service else ""))
        return
    services: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        services.setdefault(r["service"] or "(unnamed)", []).append(r)
    for i, (name, svc_runs) in enumerate(sorted(services.items())):
        if i:
            click.echo("")
        _print_service(name, svc_runs)


def _print_service(name: str, runs: list[dict[str, Any]]) -> None:
    click.echo(f"service {name}")
    click.echo(f"  {'run':>5}  {'when':<16} {'host':<16} {'result':<6} {'verdict':<13} findings")
    for r in runs:
        when = _dt.datetime.fromtimestamp(r["t"]).strftime("%Y-%m-%d %H:%M")
        click.echo(f"  {r['id']:>5}  {when:<16} {(r['host'] or '-')[:16]:<16} "
                   f"{'pass' if r['passed'] else 'FAIL':<6} {r['verdict']:<13} "
                   f"{len(r['findings'])}")
    seen: dict[str, list[float | None]] = {}
    titles: dict[str, str] = {}
    newest = {f["fingerprint"]: f for f in runs[-1]["findings"]}
    for i, r in enumerate(runs):
        for f in r["findings"]:
            seen.setdefault(f["fingerprint"], [None] * len(runs))[i] = f["per_hour"]
            titles[f["fingerprint"]] = f["title"]
    if seen:
        click.echo("  finding rates per hour, oldest run first (- = absent); status in the "
                   "newest run:")
        for fp, rates in seen.items():
            cells = " ".join(f"{v:>9.0f}" if v is not None else f"{'-':>9}" for v in rates)
            if fp in newest:
                status = newest[fp]["status"] or "first run"
            else:
                status = "gone" if fp in runs[-1]["gone"] else "-"
            click.echo(f"    {fp}  {cells}  {status:<13}  {titles[fp][:70]}")
