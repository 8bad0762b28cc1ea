"""report.md: renders well on a code host."""

from __future__ import annotations

from collections.abc import Mapping

from heapwatch.analysis import Analysis
from heapwatch.analysis.lifecycle import end_line
from heapwatch.report.charts import ordered_phases, phases_shown
from heapwatch.report.holders import as_text, chain
from heapwatch.report.html import nothing_grew
from heapwatch.report.summary import core_text, reason


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _mb(v: object) -> str:
    return f"{v / 1048576:.1f} MiB" if isinstance(v, (int, float)) else "–"


def _chart(charts: Mapping[str, str], name: str, alt: str) -> list[str]:
    return [f"![{alt}]({charts[name]})", ""] if name in charts else []


def lifetime(row: Mapping[str, object]) -> str:
    """How long a process of the tree was recorded, and how it ended."""
    end = row.get("end_reason")
    code = row.get("exit_code")
    sig = row.get("exit_signal")
    how = (f", signal {sig}" if sig is not None else f", exit {code}" if code is not None
           else "")
    return f"{row.get('lifetime_s')} s" + (f" ({end}{how})" if end else " (running)")


def _processes(a: Analysis, charts: Mapping[str, str]) -> list[str]:
    if not a.processes:
        return []
    out = ["## Processes", "",
           "| pid | role | how | lifetime | snapshots | RSS first → last | verdict |",
           "|---|---|---|---|---|---|---|"]
    for r in a.processes:
        out.append(f"| {r['pid']} | {_cell(r['role'])} | {r['how']} | {_cell(lifetime(r))} | "
                   f"{r['snapshots']} | {_mb(r['rss_first'])} → {_mb(r['rss_last'])} | "
                   f"{_cell(r['verdict'])} |")
    out.append("")
    out += _chart(charts, "processes", "RSS of every process")
    return out


def render_markdown(a: Analysis, charts: Mapping[str, str] | None = None) -> str:
    """``charts``: {chart name: relative path} of PNGs written beside report.md
    (``heapwatch.report.charts.write_chart_files``); without it, no images."""
    charts = charts or {}
    r = a.run
    out = [
        "# heapwatch report",
        "",
        f"**Verdict: {a.verdict}** — {_cell(reason(a))}",
        "",
        f"- command: `{' '.join(r.get('command') or []) or '(in-process)'}`",
        f"- pid {r.get('pid')}, Python {r.get('python') or '– (no agent in the target)'}, "
        f"started {r.get('started')}",
        f"- {r.get('snapshots')} snapshot{'' if r.get('snapshots') == 1 else 's'} over "
        f"{r.get('duration_s')} s (interval {r.get('interval_s')} s)",
        f"- allocation sites: {a.trace.get('summary') or a.trace.get('mode')}",
    ]
    if a.agent.get("pause_median_s") is not None:
        out.append(f"- agent pause per snapshot: median {a.agent['pause_median_s'] * 1000:.1f} ms,"
                   f" max {a.agent['pause_max_s'] * 1000:.1f} ms")
    if a.target_exit:
        out.append(f"- end: {_cell(end_line(a.target_exit))}")
    core = core_text(a.agent)
    if core is not None:
        out.append(f"- agent core: {_cell(core)}")
    for note in a.notes:
        out.append(f"- note: {_cell(note)}")
    out.append("")
    out += _chart(charts, "memory", "memory over the run")
    out += ["## Findings", ""]
    if not a.findings:
        out.append(nothing_grew(a))
    for f in a.findings:
        out += [f"### {f.id} · {f.severity} · {_cell(f.title)}", ""]
        rows = [("kind", f.kind), ("path", f.path), ("type", f.type), ("site", f.site),
                ("allocated inside", f.alloc_site),
                ("growth", f"{f.growth.first:g} → {f.growth.last:g} {f.growth.unit}, "
                           f"{f.growth.per_hour:,.0f}/h, grew in {f.growth.grew_in}"),
                ("confidence", f"{f.confidence:.2f}")]
        out += ["| | |", "|---|---|"]
        out += [f"| {k} | `{_cell(v)}` |" for k, v in rows if v]
        out += ["", _cell(f.evidence), ""]
        links = chain(f)
        if links:
            out += ["Who holds it:", "", "```", as_text(links), "```", ""]
        out += _chart(charts, f.id, f"{f.id}: its series and trend")
        if f.items:
            out += ["| item type | allocated at | sampled |", "|---|---|---|"]
            out += [f"| `{_cell(i['type'])}` | `{_cell(i.get('site') or '–')}`"
                    f"{' (where the container grew)' if i.get('site_from_storage') else ''} | "
                    f"{i['sampled']} |" for i in f.items]
            out.append("")
    out += _processes(a, charts)
    kind, why = phases_shown(a)
    shown = ordered_phases(a)
    out += ["## Phases" + {"marked": " (marked)", "guessed": " (guessed)"}.get(kind, ""), "",
            _cell(why), ""]
    if shown:
        out += ["| phase | from (s) | to (s) | snapshots | RSS median | RSS max | objects |",
                "|---|---|---|---|---|---|---|"]
        for name, p in shown:
            label = "peak (inside load)" if kind == "guessed" and name == "peak" else name
            out.append(f"| {_cell(label)} | {p['start_s']} | {p['end_s']} | {p['snapshots']} | "
                       f"{_mb(p['rss_median'])} | {_mb(p['rss_max'])} | "
                       f"{p.get('objects_median') or '–'} |")
        out.append("")
    if shown:
        out += _chart(charts, "phases", "RSS per phase")
    if "growth" in charts:
        out += ["## What grew", "", *_chart(charts, "growth", "the growing series")]
    return "\n".join(out)
