"""Analyse a run again and write its reports (also a run whose target was killed).

\b
  heapwatch report reports/app-20261121-101500
  heapwatch report RUN_DIR --format json
"""

from __future__ import annotations

import click


@click.command("report", help=__doc__)
@click.argument("run_dir", type=click.Path())
@click.option("--format", "formats", default="json,md", show_default=True,
              help="Comma-separated formats: json, md.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where to write (default: the run directory).")
def command(run_dir: str, formats: str, out: str | None) -> None:
    from heapwatch.analysis import analyze_run
    from heapwatch.report import summary_lines, write_reports

    analysis = analyze_run(run_dir)
    paths = write_reports(analysis, out or analysis.run_dir,
                          tuple(f.strip() for f in formats.split(",") if f.strip()))
    for line in summary_lines(analysis, paths.get("json") or next(iter(paths.values()))):
        click.echo(line)
