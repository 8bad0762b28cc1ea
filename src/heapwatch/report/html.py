"""report.html: one self-contained file a person reads first.

Charts are embedded as ``data:`` PNGs and the style is inline, so the file works offline,
as a CI artifact or an e-mail attachment, and needs no JavaScript. Everything taken from
the analysis is escaped: type names, owner paths and command arguments come from the
target and can hold ``<``, ``&`` and quotes.

>>> from heapwatch.analysis import analyze_run             # doctest: +SKIP
>>> html_text = render_html(analyze_run("reports/app-20261121-101500"),
...                         limit_bytes=cgroup_memory_limit())  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import os
import shlex
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from heapwatch import __version__
from heapwatch.analysis import Analysis
from heapwatch.analysis.lifecycle import end_line

# The projection is computed in the analysis (one place for HTML and JSON).
from heapwatch.analysis.projection import (
    CGROUP_ROOT,
    MIN_TREND_SNAPSHOTS,
    Projection,
    cgroup_memory_limit,
    hours_to_limit,
    projection,
)
from heapwatch.model import REPORT_SCHEMA, Finding
from heapwatch.report import charts, holders, summary
from heapwatch.report.summary import core_text
from heapwatch.rundir import write_file
from heapwatch.units import fmt_bytes

__all__ = ["CGROUP_ROOT", "MIN_TREND_SNAPSHOTS", "Projection", "cgroup_memory_limit",
           "hours_to_limit", "projection", "render_html"]


# -- formatting ---------------------------------------------------------------------------------

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _code(value: object) -> str:
    return f"<code>{_e(value)}</code>"


def _prose(text: str) -> str:
    """Escaped text whose `backtick spans` (the analysis writes them for Markdown) become
    <code>: escaping first keeps it safe, as backticks mean nothing to HTML."""
    parts = _e(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave the text as it is
        return _e(text)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def fmt_count(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.1f}"


def fmt_amount(v: float, unit: str) -> str:
    return fmt_bytes(v) if unit == "bytes" else f"{fmt_count(v)} {unit}"


def fmt_rate(per_hour: float, unit: str) -> str:
    """``+1.2 MiB/h``, ``+6,000 items/min`` (per minute from one a minute up)."""
    sign = "+" if per_hour > 0 else ("−" if per_hour < 0 else "")
    if unit == "bytes":
        return f"{sign}{fmt_bytes(abs(per_hour))}/h"
    if abs(per_hour) >= 60:
        return f"{sign}{fmt_count(abs(per_hour) / 60)} {unit}/min"
    return f"{sign}{fmt_count(abs(per_hour))} {unit}/h"


def fmt_hours(hours: float) -> str:
    seconds = hours * 3600
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    if hours < 24 * 60:
        return f"{hours / 24:.1f} days"
    return f"{hours / (24 * 365):.1f} years" if hours >= 24 * 365 * 2 else f"{hours / 24:.0f} days"


def _seconds(v: object) -> str:
    return f"{v:,.1f} s" if isinstance(v, (int, float)) else "–"


def _ms(v: object) -> str:
    return f"{v * 1000:.1f} ms" if isinstance(v, (int, float)) else "–"


def _opt_bytes(v: object) -> str:
    return fmt_bytes(v) if isinstance(v, (int, float)) else "–"


def _opt_count(v: object) -> str:
    return fmt_count(v) if isinstance(v, (int, float)) else "–"


# -- building blocks ----------------------------------------------------------------------------

def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
    return int(width), int(height)


def _img(png: bytes, alt: str) -> str:
    w, h = _png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return (f'<img class="chart" src="data:image/png;base64,{data}" width="{w}" height="{h}" '
            f'alt="{_e(alt)}">')


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "",
           numeric: Iterable[int] = ()) -> str:
    """A table from cells that are already HTML (escape values before passing them)."""
    num = set(numeric)

    def cell(tag: str, i: int, text: str) -> str:
        return f'<{tag} class="num">{text}</{tag}>' if i in num else f"<{tag}>{text}</{tag}>"

    out = [f'<div class="scroll"><table class="{cls}">' if cls else '<div class="scroll"><table>']
    if head:
        out.append("<thead><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head))
                   + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


# -- sections -----------------------------------------------------------------------------------

_VERDICT_TEXT = {"leak": "Leak", "no-leak": "No leak", "inconclusive": "Inconclusive"}


def _command(analysis: Analysis) -> str:
    cmd = analysis.run.get("command") or []
    return shlex.join(str(c) for c in cmd) if cmd else "(in-process)"


def _projection_sentence(p: Projection) -> str:
    where = (f"RSS is {fmt_bytes(p.rss_bytes)} of the {fmt_bytes(p.limit_bytes)} memory limit")
    if p.hours == 0:
        return f"{where}: the process is at its limit."
    if p.hours is None:
        return f"{where} and does not grow: at this rate the limit is never reached."
    return (f"{where}; at {fmt_rate(p.per_hour, 'bytes')} it reaches the limit in about "
            f"{fmt_hours(p.hours)}.")


def _banner(a: Analysis, proj: Projection | None) -> str:
    r = a.run
    cls = a.verdict if a.verdict in _VERDICT_TEXT else "inconclusive"
    n = len(a.findings)
    serious = sum(1 for f in a.findings if f.severity in ("high", "medium"))
    facts = [f"{n} finding{'s' if n != 1 else ''}" + (f" ({serious} high or medium)" if n else ""),
             f"{_opt_count(r.get('snapshots'))} snapshots over {_seconds(r.get('duration_s'))}"]
    lines = [
        f'<header class="verdict {_e(cls)}" id="verdict">',
        '<div class="kicker">heapwatch verdict</div>',
        f"<h1>{_e(_VERDICT_TEXT.get(a.verdict, a.verdict))}</h1>",
        f'<p class="reason">{_prose(summary.reason(a))}</p>',
        f'<p class="meta">{_e(" · ".join(facts))} · {_code(_command(a))}</p>',
    ]
    if proj is not None and a.verdict == "leak":
        lines.append(f'<p class="meta">{_e(_projection_sentence(proj))}</p>')
    lines.append("</header>")
    return "\n".join(lines)


def _growth_text(f: Finding) -> str:
    g = f.growth
    first = fmt_bytes(g.first) if g.unit == "bytes" else fmt_count(g.first)
    return (f"{first} → {fmt_amount(g.last, g.unit)}; "
            f"{fmt_rate(g.per_hour, g.unit)}; grew in {g.grew_in}")


def _finding(a: Analysis, f: Finding, pngs: Mapping[str, bytes]) -> str:
    sev = f.severity if f.severity in ("high", "medium", "low") else "low"
    rows: list[tuple[str, str]] = [("kind", _e(f.kind))]
    for label, value in (("path", f.path), ("type", f.type), ("allocated at", f.site),
                         ("inside", f.alloc_site)):
        if value:
            rows.append((label, _code(value)))
    rows.append(("growth", _e(_growth_text(f))))
    rows.append(("confidence", _e(f"{f.confidence:.2f}")))
    if f.bytes:
        rows.append(("retains", _e(f"about {fmt_bytes(f.bytes)}")))
    parts = [
        f'<article class="finding" id="{_e(f.id)}">',
        f'<h3><span class="fid">{_e(f.id)}</span> <span class="badge {sev}">{_e(f.severity)}'
        f"</span> {_e(f.title)}</h3>",
        f'<p class="evidence">{_prose(f.evidence)}</p>',
        _facts(rows),
    ]
    if f.items:
        parts.append("<h4>What it holds (newest items, sampled)</h4>")
        inside = any(i.get("alloc_site") for i in f.items)
        parts.append(_table(
            ["item type", "allocated at", *(["inside"] if inside else []), "sampled"],
            ([_code(i.get("type", "?")),
              (_code(i["site"]) + (" (where the container grew)"
                                   if i.get("site_from_storage") else ""))
              if i.get("site") else "not traced",
              *([_code(i["alloc_site"]) if i.get("alloc_site") else "–"] if inside else []),
              _e(i.get("sampled", ""))] for i in f.items),
            cls="items", numeric=[3 if inside else 2]))
    links = holders.chain(f)
    if links:
        parts.append("<h4>Who holds it</h4>")
        picture = holders.svg(links)
        parts.append(f'<div class="holders">{picture}</div>' if picture else
                     f'<pre class="holders">{_e(holders.as_text(links))}</pre>')
    parts.append(_img(pngs.get(f.id) or charts.finding_chart(a, f),
                      f"{f.id}: the series it was judged on, with its trend line"))
    parts.append("</article>")
    return "\n".join(parts)


def nothing_grew(a: Analysis) -> str:
    """What an empty findings list means for this run."""
    if a.agent.get("checked_in") is False:
        return ("Only process figures were recorded (RSS, fds, threads): the Python heap was "
                "not watched, so this run cannot say whether it leaks; among the process "
                "figures, nothing grew without bound.")
    return ("Nothing grew without bound: no container, type, allocation site or process "
            "figure.")


def _findings(a: Analysis, pngs: Mapping[str, bytes]) -> str:
    out = ['<section id="findings">', f"<h2>Findings ({len(a.findings)})</h2>"]
    if not a.findings:
        out.append(f'<p class="empty">{_e(nothing_grew(a))}</p>')
    out.append("</section>")
    out += [_finding(a, f, pngs) for f in a.findings]
    return "\n".join(out)


_DERIVED = ("Derived from the series: no phase marks were recorded. Warm-up is the part the "
            "trend analysis excludes, baseline the next fifth, load the rest, peak the window "
            "around the highest RSS, and after (when present) the part where memory fell back.")

_COMPARISON = {
    "load_vs_baseline_rss": "load vs baseline",
    "peak_vs_baseline_rss": "peak vs baseline",
    "after_vs_baseline_rss": "after vs baseline",
    "returned_share": "after the peak, RSS gave back",
}


def _comparison_value(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key == "returned_share" and isinstance(value, (int, float)):
        return f"{value:.0%} of its rise"
    if key.endswith("_rss") and isinstance(value, (int, float)):
        return fmt_bytes(value, signed=True)
    return str(value)


def _phases(a: Analysis, pngs: Mapping[str, bytes]) -> str:
    phases = charts.ordered_phases(a)
    kind, why = charts.phases_shown(a)
    title = {"marked": "Phases (marked)", "guessed": "Phases (guessed)"}.get(kind, "Phases")
    out = ['<section id="phases">', f"<h2>{title}</h2>"]
    if not phases:
        out += [f"<p>{_prose(why) if a.phases else 'No phases: no snapshots were recorded.'}"
                "</p>", "</section>"]
        return "\n".join(out)
    out.append(f'<p class="note">{_prose(why)}</p>')
    marked = any("marked_at_s" in p for _, p in phases)
    head = ["phase", *(["marked at"] if marked else []), "from–to (s)", "snapshots",
            "RSS median", "p95", "max", "RSS trend", "objects", "gc 0/1/2", "fds", "threads"]
    rows = []
    for name, p in phases:
        trend = (fmt_rate(p["rss_growth_per_hour"], "bytes")
                 if p.get("snapshots", 0) >= MIN_TREND_SNAPSHOTS
                 and p["end_s"] - p["start_s"] >= charts.RATE_MIN_SECONDS
                 and isinstance(p.get("rss_growth_per_hour"), (int, float)) else "–")
        if kind == "guessed" and name == "peak":
            name = "peak (inside load)"
        gc = p.get("gc_collections") or []
        rows.append([
            f"<strong>{_e(name)}</strong>",
            *([_e(_seconds(p.get("marked_at_s")))] if marked else []),
            _e(f"{p['start_s']:.1f}–{p['end_s']:.1f}"),
            _e(_opt_count(p.get("snapshots"))),
            _e(_opt_bytes(p.get("rss_median"))), _e(_opt_bytes(p.get("rss_p95"))),
            _e(_opt_bytes(p.get("rss_max"))), _e(trend),
            _e(_opt_count(p.get("objects_median"))),
            _e(" / ".join(str(g) for g in gc) if gc else "–"),
            _e(_opt_count(p.get("fds_max"))), _e(_opt_count(p.get("threads_max"))),
        ])
    first_num = 2 if marked else 1
    out.append(_table(head, rows, cls="phases", numeric=range(first_num, len(head))))
    out.append(f'<p class="note">RSS trend: Theil–Sen slope within the phase, shown for phases '
               f"of {MIN_TREND_SNAPSHOTS} snapshots and {charts.RATE_MIN_SECONDS:.0f} s or "
               "more (a rate per hour from a few seconds says nothing). Objects: median of "
               "gc-tracked "
               "objects; gc 0/1/2: collections per generation.</p>")
    out.append(_img(pngs.get("phases") or charts.phase_bars(a),
                    "RSS median, p95 and max per phase"))
    if a.phase_comparison and any(n.startswith("after") for n, _ in phases):
        out.append("<h3>Does memory come back after load?</h3>")
        out.append('<p class="note">Differences of the phases\' RSS medians.</p>')
        out.append(_facts((_COMPARISON.get(k, k), _e(_comparison_value(k, v)))
                          for k, v in a.phase_comparison.items()))
    out.append("</section>")
    return "\n".join(out)


def _memory(a: Analysis, proj: Projection | None, pngs: Mapping[str, bytes]) -> str:
    share = a.trace.get("share") or 0
    ticks = ("Ticks along the bottom mark the snapshots; amber ones were taken with "
             f"tracemalloc on ({share:.0%} of them)." if a.trace.get("mode") != "sample" else
             "Ticks along the bottom mark the snapshots (allocation sites sampled at each).")
    if a.agent.get("checked_in") is False:
        ticks = "Ticks along the bottom mark the snapshots."
        heap = ("RSS was read from outside the process (no agent ran in it), so there is no "
                "Python heap to draw.")
    elif a.trace.get("mode") == "on":
        heap = "The traced Python heap is what tracemalloc counted as live."
    elif a.trace.get("mode") == "sample":
        heap = ("The sampled Python heap is the sampler's estimate of the live memory the "
                "Python allocators hold (each live sampled block weighted by its odds).")
    else:
        heap = ("The traced Python heap is not drawn: tracemalloc ran only in windows "
                f"(trace mode {a.trace.get('mode')}), and then counts only what was "
                "allocated since a window opened.")
    out = ['<section id="memory">', "<h2>Memory over the run</h2>",
           _img(pngs.get("memory") or charts.memory_chart(a),
                "RSS over the run, with the phases shaded"),
           f'<p class="note">{_e(ticks)} {_e(heap)}</p>']
    if proj is not None:
        out.append("<h3>Memory limit</h3>")
        out.append(f"<p>{_e(_projection_sentence(proj))}</p>")
        if a.verdict != "leak" and proj.hours:
            out.append('<p class="note">The analysis found no unbounded growth: over a run '
                       "this short, an RSS slope like this is usually allocator steps or "
                       "warm-up, not a trend to extrapolate.</p>")
        out.append(_facts([
            ("limit", _e(fmt_bytes(proj.limit_bytes))),
            ("RSS at the end", _e(fmt_bytes(proj.rss_bytes))),
            ("RSS trend", _e(fmt_rate(proj.per_hour, "bytes")
                              + " (latest half of the run, Theil–Sen)")),
            ("time to the limit", _e("now" if proj.hours == 0 else "never, at this rate"
                                     if proj.hours is None else f"about {fmt_hours(proj.hours)}")),
        ]))
    out.append("</section>")
    return "\n".join(out)


def _growth(a: Analysis, pngs: Mapping[str, bytes]) -> str:
    out = ['<section id="growth">', "<h2>What grew</h2>"]
    panels = charts.growth_panels(a)
    if not panels:
        out.append("<p>No container or finding series were recorded.</p>")
    else:
        out.append('<p class="note">The findings\' series first (red: their trend line), then '
                   "the containers that grew most during the run: after warm-up, in more "
                   "than one step (not what filled once at import).</p>")
        out.append(_img(pngs.get("growth") or charts.growth_multiples(a),
                        "small multiples of the growing series"))
    out.append("</section>")
    return "\n".join(out)


def _processes(a: Analysis, pngs: Mapping[str, bytes]) -> str:
    """The run's processes (a tree: master, workers, helpers), each with its own verdict."""
    if not a.processes:
        return ""
    from heapwatch.report.markdown import lifetime

    tree = a.tree or {}
    out = ['<section id="processes">', f"<h2>Processes ({len(a.processes)})</h2>",
           f'<p class="note">Every process of the run is watched by its own agent (or from '
           f'outside when it has none); the {tree.get("judged", 0)} that lived long enough '
           f"are judged on their own, and the findings above say in how many of them they "
           f"hold.</p>"]
    rows = [[_e(r["pid"]), _e(r["role"]), _e(r["how"]), _e(lifetime(r)),
             _e(_opt_count(r["snapshots"])),
             _e(f"{_opt_bytes(r['rss_first'])} → {_opt_bytes(r['rss_last'])}"),
             _e(r["verdict"])] for r in a.processes]
    out.append(_table(["pid", "role", "how", "lifetime", "snapshots", "RSS first → last",
                       "verdict"], rows, cls="processes", numeric=[0, 4]))
    out.append(_img(pngs.get("processes") or charts.process_chart(a), "RSS of every process"))
    out.append("</section>")
    return "\n".join(out)


def _run(a: Analysis) -> str:
    r = a.run
    rows = [
        ("command", _code(_command(a))),
        ("pid", _e(r.get("pid", "–"))),
        ("Python", _e(r.get("python") or ("– (the agent never ran in the target)"
                                          if a.agent.get("checked_in") is False else "–"))),
        ("started", _e(r.get("started") or "–")),
        ("duration", _e(_seconds(r.get("duration_s")))),
        ("snapshots", _e(_opt_count(r.get("snapshots")))),
        ("interval", _e(_seconds(r.get("interval_s")))),
    ]
    if r.get("exit_code") is not None:
        rows.append(("exit code", _e(r["exit_code"])))
    if a.target_exit:
        rows.append(("end", _e(end_line(a.target_exit))))
    rows.append(("run directory", _code(a.run_dir)))
    return '<section id="run"><h2>Run</h2>' + _facts(rows) + "</section>"


def _agent(a: Analysis) -> str:
    ag, tr = a.agent, a.trace
    rows = [
        ("snapshot pause", _e(f"median {_ms(ag.get('pause_median_s'))}, "
                              f"max {_ms(ag.get('pause_max_s'))}")),
        ("allocation sites", _e(tr.get("summary") or tr.get("mode", "?"))),
    ]
    core = core_text(ag)
    if core is not None:
        rows.append(("core", _e(core)))
    if ag.get("checked_in") is False:
        rows.append(("agent", "never checked in: only process figures were recorded"))
    if ag.get("stopped"):
        rows.append(("stopped by", _e(ag["stopped"])))
    errors = ag.get("errors") or []
    rows.append(("errors", "none" if not errors else
                 "<ul>" + "".join(f"<li>{_code(e)}</li>" for e in errors) + "</ul>"))
    return ('<section id="agent"><h2>The agent\'s own cost</h2>'
            '<p class="note">What watching cost the target: the time each snapshot held it, '
            "and how much of the run tracemalloc was on.</p>" + _facts(rows) + "</section>")


def _notes(a: Analysis) -> str:
    if not a.notes:
        return ""
    items = "".join(f"<li>{_prose(n)}</li>" for n in a.notes)
    return f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>'


_CSS = """
:root{--ink:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f5f7fa}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px 20px 40px}
h1,h2,h3,h4{line-height:1.25;margin:0 0 .5em}
h2{font-size:20px}h3{font-size:16px}h4{font-size:14px;margin-top:1em;color:var(--muted)}
.verdict{border-radius:10px;padding:18px 24px;color:#fff}
.verdict.leak{background:#b91c1c}.verdict.no-leak{background:#15803d}
.verdict.inconclusive{background:#b45309}
.verdict .kicker{font-size:12px;text-transform:uppercase;letter-spacing:.08em;opacity:.85}
.verdict h1{font-size:30px;margin:2px 0 6px}
.verdict p{margin:4px 0}.verdict .reason{font-size:17px}
.verdict .meta{opacity:.92;font-size:14px}
.verdict code{background:rgba(255,255,255,.18);color:#fff}
nav{margin:12px 2px 0;font-size:14px;color:var(--muted)}
nav a{color:var(--muted);margin-right:14px;text-decoration:none}
nav a:hover{text-decoration:underline}
section,article{background:#fff;border:1px solid var(--line);border-radius:10px;
 padding:16px 20px;margin-top:16px}
section#findings{background:none;border:0;padding:0;margin-top:22px}
article.finding h3{font-size:17px}
.fid{color:var(--muted);font-weight:600}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;
 font-weight:700;text-transform:uppercase;letter-spacing:.04em;vertical-align:2px}
.badge.high{background:#fee2e2;color:#991b1b}.badge.medium{background:#fef3c7;color:#92400e}
.badge.low{background:#e0e7ff;color:#3730a3}
.evidence{margin:.3em 0 .8em}
.empty{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 20px}
.note{color:var(--muted);font-size:13px;margin:.4em 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;color:var(--muted);font-weight:600;white-space:nowrap}
table.facts th{width:11em;color:var(--muted);font-weight:500}
table.phases{font-size:13px}
table.phases td,table.phases th{white-space:nowrap;padding:5px 7px}
.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;
 background:#f0f4f8;padding:1px 5px;border-radius:4px;overflow-wrap:anywhere}
ul{margin:.2em 0;padding-left:1.3em}
img.chart{display:block;max-width:100%;height:auto;margin:14px auto 4px}
.holders{overflow-x:auto;margin:6px 0}.holders svg{max-width:100%;height:auto}
pre.holders{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 background:#f0f4f8;padding:8px 12px;border-radius:6px}
footer{color:var(--muted);font-size:12px;margin-top:20px;text-align:center}
@media print{body{background:#fff}section,article{break-inside:avoid}}
"""


def render_html(analysis: Analysis, limit_bytes: int | None = None, *,
                pngs: Mapping[str, bytes] | None = None) -> str:
    """The whole report as one HTML document. ``limit_bytes`` is the target's memory
    limit (e.g. :func:`cgroup_memory_limit` when it ran in this cgroup); with it the
    report projects when RSS reaches it. ``pngs``: charts already rendered by
    :func:`heapwatch.report.charts.render_charts` (default: render them here)."""
    a = analysis
    if pngs is None:
        pngs = charts.render_charts(a)
    proj = projection(a, limit_bytes)
    cmd = a.run.get("command") or []
    name = os.path.basename(str(cmd[-1])) if cmd else "in-process run"
    nav = [("findings", "Findings"), ("phases", "Phases"), ("memory", "Memory"),
           ("growth", "What grew"), ("run", "Run"), ("agent", "Agent cost")]
    if a.processes:
        nav.insert(1, ("processes", "Processes"))
    if a.notes:
        nav.append(("notes", "Notes"))
    body = [
        _banner(a, proj),
        "<nav>" + "".join(f'<a href="#{k}">{v}</a>' for k, v in nav) + "</nav>",
        _findings(a, pngs),
        _processes(a, pngs),
        _phases(a, pngs),
        _memory(a, proj, pngs),
        _growth(a, pngs),
        _run(a),
        _agent(a),
        _notes(a),
        f"<footer>heapwatch {_e(__version__)} · {_e(REPORT_SCHEMA)}</footer>",
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>heapwatch: {_e(_VERDICT_TEXT.get(a.verdict, a.verdict))} · {_e(name)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body><main>",
        *[part for part in body if part],
        "</main></body>",
        "</html>",
        "",
    ])


def write_html(analysis: Analysis, path: str, limit_bytes: int | None = None, *,
               pngs: Mapping[str, bytes] | None = None) -> str:
    return write_file(path, render_html(analysis, limit_bytes, pngs=pngs))
