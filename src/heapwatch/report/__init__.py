"""Reports: render an ``Analysis``. Renderers format numbers; they never compute them."""

from __future__ import annotations

import os
from collections.abc import Callable

from heapwatch.analysis import Analysis
from heapwatch.errors import ReportError, UsageError
from heapwatch.report.charts import render_charts, write_chart_files
from heapwatch.report.html import render_html, write_html
from heapwatch.report.json_report import to_dict, write_json
from heapwatch.report.markdown import render_markdown
from heapwatch.report.summary import summary_lines
from heapwatch.rundir import prepare_report_dir, shown, write_file

FORMATS = ("json", "md", "html")


def write_reports(analysis: Analysis, directory: str, formats: tuple[str, ...] = FORMATS,
                  memory_limit: int | None = None) -> dict[str, str]:
    """Write the reports into ``directory``; return {format: path}. ``md`` also writes its
    charts under ``directory/charts``; ``memory_limit`` (bytes) lets the HTML report project
    when the target hits it.

    ``directory`` must be new, empty, or hold a heapwatch run or report (of the caller's):
    heapwatch never overwrites files it did not write. Each report is written even when
    another cannot be (a full disk); then ReportError names the missing ones and carries
    the written ones."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown report format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    directory = prepare_report_dir(directory)
    out: dict[str, str] = {}
    failed: dict[str, str] = {}

    def attempt(name: str, write: Callable[[], str]) -> None:
        try:
            out[name] = write()
        except OSError as exc:
            failed[name] = exc.strerror or str(exc)

    if "json" in formats:
        attempt("json", lambda: write_json(analysis, os.path.join(directory, "report.json"),
                                           memory_limit))
    pngs = render_charts(analysis) if "md" in formats or "html" in formats else {}
    if "md" in formats:
        links: dict[str, str] = {}

        def markdown() -> str:
            try:
                links.update(write_chart_files(analysis, directory, pngs))
            except OSError as exc:
                failed["charts"] = exc.strerror or str(exc)
            return write_file(os.path.join(directory, "report.md"),
                              render_markdown(analysis, links))

        attempt("md", markdown)
    if "html" in formats:
        attempt("html", lambda: write_html(analysis, os.path.join(directory, "report.html"),
                                           memory_limit, pngs=pngs))
    if failed:
        names = ", ".join(_FILES[f] for f in failed)
        why = "; ".join(dict.fromkeys(failed.values()))
        kept = f"; written: {', '.join(_FILES[f] for f in out)}" if out else ""
        raise ReportError(f"could not write {names} in {shown(directory)} ({why}){kept}; free "
                          f"space or give --out, then run 'heapwatch report' on the run again",
                          out, failed)
    return out


_FILES = {"json": "report.json", "md": "report.md", "html": "report.html", "charts": "charts/"}


__all__ = ["FORMATS", "render_html", "render_markdown", "summary_lines", "to_dict", "write_reports"]
