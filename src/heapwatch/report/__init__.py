"""Reports: render an ``Analysis``. Renderers format numbers; they never compute them."""

from __future__ import annotations

import os

from heapwatch.analysis import Analysis
from heapwatch.errors import UsageError
from heapwatch.report.json_report import to_dict, write_json
from heapwatch.report.markdown import render_markdown
from heapwatch.report.summary import summary_lines

FORMATS = ("json", "md")


def write_reports(analysis: Analysis, directory: str, formats: tuple[str, ...] = FORMATS
                  ) -> dict[str, str]:
    """Write the reports into ``directory``; return {format: path}."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown report format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    os.makedirs(directory, exist_ok=True)
    out: dict[str, str] = {}
    if "json" in formats:
        out["json"] = write_json(analysis, os.path.join(directory, "report.json"))
    if "md" in formats:
        path = os.path.join(directory, "report.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_markdown(analysis))
        out["md"] = path
    return out


__all__ = ["FORMATS", "render_markdown", "summary_lines", "to_dict", "write_reports"]
