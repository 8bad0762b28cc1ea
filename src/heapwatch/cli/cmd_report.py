"""Analyse a run again and write its reports (also a run whose target was killed).

\b
  heapwatch report reports/app-20261121-101500
  heapwatch report RUN_DIR --format json
"""

from __future__ import annotations

import os

import click


@click.command("report", help=__doc__)
@click.argument("run_dir", type=click.Path())
@click.option("--format", "formats", default="json,md,html", show_default=True,
              help="Comma-separated formats: json, md, html.")
@click.option("--open", "open_", is_flag=True, help="Open report.html in a browser.")
@click.option("--limit", type=str, default=None,
              help="Memory limit for the projection (e.g. 2GB); default: this cgroup's.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where to write (default: the run directory).")
def command(run_dir: str, formats: str, out: str | None, open_: bool, limit: str | None
            ) -> None:
    from heapwatch.analysis import analyze_run
    from heapwatch.cli.options import finish
    from heapwatch.errors import UsageError
    from heapwatch.units import parse_bytes

    try:
        limit_bytes = int(parse_bytes(limit)) if limit else None
    except (UsageError, ValueError):
        raise UsageError(f"--limit takes a size such as 512MB or 2GB, not {limit!r}") from None
    analysis = analyze_run(run_dir)
    paths = finish(analysis, out, tuple(f.strip() for f in formats.split(",") if f.strip()),
                   memory_limit=limit_bytes, err=False)
    if open_:
        _open(paths)


def _open(paths: dict[str, str]) -> None:
    """Open report.html in a browser, or say in one line why nothing opened."""
    import webbrowser

    if "html" not in paths:
        click.echo("heapwatch: --open needs the html format (add it to --format)", err=True)
        return
    url = "file://" + os.path.abspath(paths["html"])
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    if not opened:
        click.echo(f"heapwatch: no browser to open here: open {paths['html']} yourself",
                   err=True)
