"""Print what changed between two snapshots or phases of a run.

\b
  heapwatch diff reports/mysvc                         (after warm-up -> last snapshot)
  heapwatch diff reports/mysvc --from baseline --to peak
  heapwatch diff reports/mysvc --from 3 --to 40 --by type --top 10

--from/--to take a snapshot number or a phase name (its first snapshot for --from,
its last for --to). --by container (default), type or site (needs traced snapshots).
Rows that did not change are left out; --all shows them.
"""

from __future__ import annotations

import click


@click.command("diff", help=__doc__)
@click.argument("run_dir", type=click.Path())
@click.option("--from", "start", default=None, help="Snapshot number or phase.")
@click.option("--to", "end", default=None, help="Snapshot number or phase.")
@click.option("--by", type=click.Choice(["container", "type", "site"]), default="container",
              show_default=True)
@click.option("--top", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--all", "all_rows", is_flag=True, help="Also show rows that did not change.")
def command(run_dir: str, start: str | None, end: str | None, by: str, top: int,
            all_rows: bool) -> None:
    from heapwatch.analysis import analyze_run
    from heapwatch.analysis.diff import diff

    d = diff(analyze_run(run_dir), start, end, by, top, changed_only=not all_rows)
    dt = d.after.t - d.before.t
    click.echo(f"{by} diff {d.before_label} -> {d.after_label} ({dt:.1f}s apart), in {d.unit}")
    width = max([len(r.name) for r in d.rows] + [len(by)])
    width = min(width, 90)
    click.echo(f"{by:<{width}}  {'before':>10}  {'after':>10}  {'change':>10}")
    for r in d.rows:
        name = r.name if len(r.name) <= width else "…" + r.name[-(width - 1):]
        click.echo(f"{name:<{width}}  {r.before:>10,}  {r.after:>10,}  {r.delta:>+10,}")
    if not d.rows:
        click.echo("(nothing changed)" if d.unchanged else "(nothing to compare)")
    if d.unchanged:
        click.echo(f"({d.unchanged} unchanged row{'s' if d.unchanged != 1 else ''} hidden; "
                   f"--all shows them)")
