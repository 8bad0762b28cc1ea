"""Reports: render an ``Analysis``. Renderers format numbers; they never compute them."""

from __future__ import annotations

import os

from heapwatch.analysis import Analysis
from heapwatch.errors import UsageError
from heapwatch.report.charts import render_charts, write_chart_files
from heapwatch.report.html import render_html, write_html
from heapwatch.report.json_report import to_dict, write_json
from heapwatch.report.markdown import render_markdown
from heapwatch.report.summary import summary_lines

FORMATS = ("json", "md", "html")


def write_reports(analysis: Analysis, directory: str, formats: tuple[str, ...] = FORMATS,
                  memory_limit: int | None = None) -> dict[str, str]:
    """Write the reports into ``directory``; return {format: path}. ``md`` also writes its
    charts under ``directory/charts``; ``memory_limit`` (bytes) lets the HTML report project
    when the target hits it."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown report format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    os.makedirs(directory, exist_ok=True)
    out: dict[str, str] = {}
    if "json" in formats:
        out["json"] = write_json(analysis, os.path.join(directory, "report.json"), memory_limit)
    pngs = render_charts(analysis) if "md" in formats or "html" in formats else {}
    if "md" in formats:
        path = os.path.join(directory, "report.md")
        links = write_chart_files(analysis, directory, pngs)
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_markdown(analysis, links))
        out["md"] = path
    if "html" in formats:
        out["html"] = write_html(analysis, os.path.join(directory, "report.html"), memory_limit,
                                 pngs=pngs)
    return out


__all__ = ["FORMATS", "render_html", "render_markdown", "summary_lines", "to_dict", "write_reports"]
