"""report.html and its charts: self-contained, escaped, in the right order; the projection."""

from __future__ import annotations

import base64
import os
import re
import sys
from dataclasses import replace
from typing import Any

import pytest

import heapwatch
from heapwatch.analysis import Analysis, analyze
from heapwatch.errors import HeapwatchError
from heapwatch.model import ContainerStat, ItemSample, Mark, ProcessStat, Snapshot
from heapwatch.report import FORMATS, charts, write_reports
from heapwatch.report.html import (
    cgroup_memory_limit,
    hours_to_limit,
    projection,
    render_html,
)
from heapwatch.store import RunData

MB = 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NASTY = '<script>alert("x")</script>&'
GROWING: list[Any] = []


def literal_run(n: int = 30, *, name: str = "app.CACHE", item_type: str = "app.Entry",
                command: list[str] | None = None, rss_step: float = 0.0,
                marks: list[Mark] | None = None) -> RunData:
    """A run whose container ``name`` grows by 40 items a second."""
    snaps = []
    for i in range(n):
        snaps.append(Snapshot(
            seq=i + 1, pid=7, t=1000.0 + i, mono=float(i), reason="interval", duration_s=0.01,
            phase=None, traced=False,
            process=ProcessStat(rss=int(50 * MB + rss_step * i), fds=8, threads=2, children=0,
                                allocated_blocks=100_000, gc_objects=20_000 + 40 * i,
                                gc_collections=(i, 0, 0), sockets=0, tmp_files=3,
                                gc_garbage=0),
            types={"dict": 500},
            containers=(ContainerStat(name, "dict", 200 + 40 * i, 0, name),),
            items=(ItemSample(name, item_type, 8, "/srv/app/app.py:38", None, 120),),
        ))
    meta = {"run": {"command": command or ["python", "app.py"], "cwd": "/srv/app",
                    "interval_s": 1.0, "started": "2026-11-21T10:00:00+00:00"},
            "agent": {"pid": 7, "trace": "auto", "trace_depth": 10, "python": "3.11.7"}}
    return RunData(path="/tmp/x/run.sqlite", meta=meta, snapshots=snaps, marks=marks or [])


@pytest.fixture(scope="module")
def api_analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    """A real run of this process through the in-process API, with a growing list."""
    out = str(tmp_path_factory.mktemp("api") / "run")
    heapwatch.start(out=out, interval=3600, trace="off")
    try:
        for _ in range(16):
            GROWING.extend(bytearray(32) for _ in range(200))
            heapwatch.snapshot()
    finally:
        result = heapwatch.stop()
        GROWING.clear()
    assert result.verdict == "leak", result.analysis.verdict_reason
    return result.analysis


@pytest.fixture(scope="module")
def api_html(api_analysis: Analysis) -> str:
    return render_html(api_analysis)


def test_the_report_is_one_self_contained_file(api_html: str) -> None:
    assert api_html.startswith("<!DOCTYPE html>")
    assert "<script" not in api_html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", api_html, re.I)
    assert "@import" not in api_html and "url(" not in api_html
    imgs = re.findall(r"<img\b[^>]*>", api_html)
    assert len(imgs) >= 3  # memory, growth, one per finding (a short unmarked run: no phases)
    for tag in imgs:
        src = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert src, tag[:120]
        assert base64.b64decode(src.group(1), validate=True).startswith(PNG_MAGIC)
        assert 'alt="' in tag


def test_verdict_first_then_findings_in_order(api_analysis: Analysis, api_html: str) -> None:
    body = api_html[api_html.index("<body"):]
    banner = body.index('class="verdict leak"')
    assert banner < body.index('id="findings"') < body.index('id="phases"')
    assert body.index("<h1>Leak</h1>") < body.index("<h3>")
    starts = [body.index(f'<article class="finding" id="{f.id}"') for f in api_analysis.findings]
    assert starts == sorted(starts) and starts
    first = api_analysis.findings[0]
    assert first.path is not None and first.path.endswith("test_report_html.GROWING")
    assert f"<code>{first.path}</code>" in body


def test_target_strings_are_escaped() -> None:
    run = literal_run(name=f"app.CACHE['{NASTY}']", item_type=NASTY,
                      command=["python", "app.py", '<b>&"x"</b>'])
    a = analyze(run)
    assert a.findings and NASTY in (a.findings[0].path or "")
    text = render_html(a)
    assert "<script" not in text.lower()
    assert "<b>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in text
    assert "&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;" in text
    # every '&' in the document starts an entity: nothing raw slipped through
    assert not re.search(r"&(?!(lt|gt|amp|quot|#x27|#\d+);)", text.split("<style>")[0]
                         + text.split("</style>")[1])


def test_verdict_banner_colour_follows_the_verdict() -> None:
    steady = analyze(_steady_run())
    assert steady.verdict == "no-leak"
    assert 'class="verdict no-leak"' in render_html(steady)
    short = analyze(_steady_run(5))
    assert short.verdict == "inconclusive"
    assert 'class="verdict inconclusive"' in render_html(short)


def _steady_run(n: int = 30) -> RunData:
    run = literal_run(n)
    flat = ProcessStat(rss=50 * MB, fds=8, threads=2, gc_objects=20_000)
    run.snapshots = [replace(s, containers=(), items=(), process=flat) for s in run.snapshots]
    return run


def test_phase_table_says_guessed_or_marked() -> None:
    guessed = render_html(analyze(literal_run(80)))
    assert "<h2>Phases (guessed)</h2>" in guessed and "no phase marks were recorded" in guessed
    assert "peak (inside load)" in guessed
    marks = [Mark(1000.0, "baseline", 7), Mark(1010.0, "load", 7), Mark(1025.0, "after", 7)]
    marked = render_html(analyze(literal_run(marks=marks)))
    assert "<h2>Phases (marked)</h2>" in marked and "(guessed)" not in marked
    assert "marked at" in marked and "<strong>after</strong>" in marked


def test_a_short_unmarked_run_shows_no_guessed_phases_nor_hourly_rates() -> None:
    a = analyze(literal_run(30, rss_step=MB))
    text = render_html(a)
    assert "<h2>Phases</h2>" in text and "too few to guess them" in text
    assert "<strong>peak</strong>" not in text and "<strong>load</strong>" not in text
    md = write_md(a)
    assert "too few to guess them" in md and "| peak |" not in md
    assert charts.ordered_phases(a) == []


def write_md(a: Analysis) -> str:
    from heapwatch.report.markdown import render_markdown

    return render_markdown(a)


def test_what_grew_leads_with_growth_during_the_run_not_at_import() -> None:
    run = literal_run(40)
    snaps = []
    for i, s in enumerate(run.snapshots):
        imported = ContainerStat("lib.REGISTRY", "dict", 5000 if i >= 1 else 10, 0, "lib.REGISTRY")
        slow = ContainerStat("app.QUEUE", "list", 100 + (i // 3), 0, "app.QUEUE")
        snaps.append(replace(s, containers=(*s.containers, imported, slow)))
    run.snapshots = snaps
    titles = [p.title for p in charts.growth_panels(analyze(run))]
    assert any("app.QUEUE" in t for t in titles), titles
    assert not any("lib.REGISTRY" in t for t in titles), titles


def test_a_non_python_run_says_it_has_only_process_figures() -> None:
    snaps = [Snapshot(seq=i + 1, pid=9, t=1000.0 + 0.5 * i, mono=0.5 * i, reason="external",
                      duration_s=0.0, phase=None, traced=False,
                      process=ProcessStat(rss=2 * MB + i * 4096), source="external")
             for i in range(6)]
    meta = {"run": {"command": ["sleep", "3"], "python": "3.11.7", "interval_s": 5.0},
            "launch": {"exit_code": 0, "checked_in": False, "wall_s": 3.0,
                       "no_agent_reason": "sleep is not a Python program"}}
    a = analyze(RunData(path="/tmp/x/run.sqlite", meta=meta, snapshots=snaps))
    assert a.run["python"] is None
    text = render_html(a)
    assert "Only process figures were recorded" in text and "Nothing grew without bound:" not in text
    assert "the agent never ran in the target" in text and "3.11.7" not in text
    png = charts.memory_chart(a)
    blank = charts.memory_chart(replace(a, series=None))
    assert png != blank


def test_hours_to_limit_arithmetic() -> None:
    assert hours_to_limit(100 * MB, 10 * MB, 200 * MB) == pytest.approx(10.0)
    assert hours_to_limit(1.5e9, 2.5e8, 2e9) == pytest.approx(2.0)
    assert hours_to_limit(200 * MB, 10 * MB, 200 * MB) == 0.0  # already there
    assert hours_to_limit(250 * MB, -10 * MB, 200 * MB) == 0.0
    assert hours_to_limit(100 * MB, 0.0, 200 * MB) is None  # not growing
    assert hours_to_limit(100 * MB, -1.0, 200 * MB) is None


def test_projection_uses_the_rss_trend_and_the_last_rss() -> None:
    a = analyze(literal_run(30, rss_step=1 * MB))  # +1 MiB a second
    assert projection(a, None) is None
    p = projection(a, 1024 * MB)
    assert p is not None
    assert p.rss_bytes == 50 * MB + 29 * MB
    assert p.per_hour == pytest.approx(3600 * MB)
    assert p.hours == pytest.approx((1024 - 79) / 3600)
    text = render_html(a, limit_bytes=1024 * MB)
    assert "of the 1.0 GiB memory limit" in text and "reaches the limit in about 16 min" in text
    assert "memory limit" not in render_html(a)
    # the native finding's evidence names a command in Markdown backticks: shown as code
    assert "<code>memray run --native</code>" in text


def test_cgroup_limit_v2_nested_v1_and_unlimited(tmp_path: Any) -> None:
    def put(rel: str, text: str) -> None:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    put("proc", "0::/svc/worker\n")
    put("root/memory.max", "max\n")
    assert cgroup_memory_limit(str(tmp_path / "root"), str(tmp_path / "proc")) is None
    put("root/svc/memory.max", "536870912\n")
    put("root/svc/worker/memory.max", "max\n")
    assert cgroup_memory_limit(str(tmp_path / "root"), str(tmp_path / "proc")) == 512 * MB
    put("root/svc/worker/memory.max", "268435456\n")
    assert cgroup_memory_limit(str(tmp_path / "root"), str(tmp_path / "proc")) == 256 * MB
    put("v1proc", "4:memory:/box\n0::/\n")
    put("v1/memory/memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroup_memory_limit(str(tmp_path / "v1"), str(tmp_path / "v1proc")) is None
    put("v1/memory/box/memory.limit_in_bytes", "1073741824\n")
    assert cgroup_memory_limit(str(tmp_path / "v1"), str(tmp_path / "v1proc")) == 1024 * MB
    assert cgroup_memory_limit(str(tmp_path / "none"), str(tmp_path / "missing")) is None


def test_write_reports_html_by_default_and_md_links_its_charts(api_analysis: Analysis,
                                                              tmp_path: Any) -> None:
    assert FORMATS == ("json", "md", "html")
    out = write_reports(api_analysis, str(tmp_path))
    assert set(out) == {"json", "md", "html"}
    assert os.path.basename(out["html"]) == "report.html"
    with open(out["md"], encoding="utf-8") as f:
        md = f.read()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "charts/memory.png" in links and "charts/F1.png" in links
    for link in links:
        with open(tmp_path / link, "rb") as f:
            assert f.read(8) == PNG_MAGIC
    (tmp_path / "charts" / "F99.png").write_bytes(b"stale")
    write_reports(api_analysis, str(tmp_path), ("md",))
    assert not (tmp_path / "charts" / "F99.png").exists()


def test_charts_are_pngs_of_the_promised_size(api_analysis: Analysis) -> None:
    for png in (charts.memory_chart(api_analysis), charts.phase_bars(api_analysis),
                charts.finding_chart(api_analysis, api_analysis.findings[0])):
        assert png.startswith(PNG_MAGIC)
        assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (900, 340)
    assert charts.growth_multiples(api_analysis).startswith(PNG_MAGIC)
    panels = charts.growth_panels(api_analysis, top=6)
    assert panels[0].title.startswith("F1 ") and len(panels) <= 6


def test_without_matplotlib_the_error_says_what_to_install(api_analysis: Analysis,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(HeapwatchError, match="pip install matplotlib"):
        charts.memory_chart(api_analysis)
    with pytest.raises(HeapwatchError, match="pip install matplotlib"):
        render_html(api_analysis)
