"""Charts for the HTML and Markdown reports, as PNG bytes.

matplotlib is imported inside the functions, never at module import: the agent and the
CLI's fast paths must not pay for it. The figures are drawn on a bare ``Figure`` with the
Agg canvas rather than through ``pyplot``: no global backend is switched and no figure
registry is kept, so writing a report from inside a user's program (``Result.write_report``
in a notebook, say) leaves their own plotting alone.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from heapwatch.analysis import Analysis, finding_points
from heapwatch.analysis.trend import warmup_cut
from heapwatch.errors import HeapwatchError
from heapwatch.model import Finding
from heapwatch.rundir import private_subdir, remove_own, write_file

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MIB = 1024 * 1024
DPI = 100
WIDE = (9.0, 3.4)  # 900 x 340 px

INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
RSS_COLOR = "#2563eb"
HEAP_COLOR = "#0d9488"
FIT_COLOR = "#dc2626"
TRACED_TICK = "#d97706"
PHASE_COLORS = {
    "warmup": "#9aa5b1",
    "baseline": "#16a34a",
    "load": "#d97706",
    "peak": "#dc2626",
    "after": "#2563eb",
}
OTHER_PHASE_COLORS = ("#7c3aed", "#0891b2", "#be185d", "#65a30d", "#ea580c")
BAR_COLORS = ("#93c5fd", "#3b82f6", "#1e3a8a")  # median, p95, max

_STYLE: dict[str, Any] = {
    # Every text is drawn as it is: names come from the target ("$\\frac{x}{y}$" as an
    # attribute, a phase called "$x$"), and mathtext or TeX would parse them, or raise.
    "text.parse_math": False,
    "text.usetex": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.edgecolor": "#cbd2d9",
    "axes.labelcolor": INK,
    "axes.titlecolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": GRID,
    "grid.linewidth": 0.6,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
}


class Scale(NamedTuple):
    """How a series' raw values are shown: divide by ``divisor``, label with ``unit``."""

    divisor: float
    unit: str


def scale_for(unit: str, values: Sequence[float]) -> Scale:
    """Byte series in KiB or MiB (whichever reads better); counts as they are."""
    if unit != "bytes":
        return Scale(1.0, unit)
    top = max((abs(v) for v in values), default=0.0)
    return Scale(MIB, "MiB") if top >= MIB else Scale(1024.0, "KiB")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401  (probe only)
    except ImportError:
        raise HeapwatchError("the HTML report needs matplotlib: pip install matplotlib") from None


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    _require_matplotlib()
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(cast(Any, _STYLE)), warnings.catch_warnings():  # literal keys
        # a glyph the font lacks (a name in another script, an emoji) is drawn as a box,
        # not reported on the user's terminal
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        yield Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _message(ax: Axes, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", color=MUTED, transform=ax.transAxes)


def phase_color(name: str, index: int) -> str:
    base = name.split("#", 1)[0]
    return PHASE_COLORS.get(base) or OTHER_PHASE_COLORS[index % len(OTHER_PHASE_COLORS)]


# Guessed phases (no marks) mean something only on a run this long: on a short one the
# "peak" window overlaps "load" and a per-phase slope extrapolates seconds to hours.
GUESS_MIN_SNAPSHOTS = 20
GUESS_MIN_SECONDS = 60.0
# A per-phase RSS slope is shown per hour only for phases at least this long.
RATE_MIN_SECONDS = 60.0


def phases_shown(analysis: Analysis) -> tuple[str, str]:
    """("marked" | "guessed" | "none", a sentence saying why) for the report's phases."""
    if not analysis.phases_derived:
        return "marked", "From the phase marks the run recorded; each phase runs until the next mark."
    n = int(analysis.run.get("snapshots") or 0)
    span = float(analysis.run.get("duration_s") or 0.0)
    if analysis.agent.get("checked_in") is False:
        return "none", "No phases: only process figures were recorded."
    if n < GUESS_MIN_SNAPSHOTS or span < GUESS_MIN_SECONDS:
        return "none", (f"No phases: the run has no phase marks, and {n} snapshot"
                        f"{'' if n == 1 else 's'} over {span:.0f} s are too few to guess them "
                        f"(at least {GUESS_MIN_SNAPSHOTS} over {GUESS_MIN_SECONDS:.0f} s). Mark "
                        "them with --phase or `heapwatch mark`.")
    return "guessed", ("Guessed from the series (no phase marks were recorded): warm-up is the "
                       "part the trend analysis excludes, baseline the next fifth, load the "
                       "rest; peak is the window around the highest RSS, inside load; after "
                       "(when present) is where memory fell back.")


def ordered_phases(analysis: Analysis) -> list[tuple[str, dict[str, Any]]]:
    """Phases with figures, in time order (``peak`` overlaps ``load``: it sorts after);
    none when guessed phases would mean nothing (:func:`phases_shown`)."""
    if phases_shown(analysis)[0] == "none":
        return []
    got = [(n, p) for n, p in analysis.phases.items() if p]
    return sorted(got, key=lambda kv: (kv[1]["start_s"], kv[1]["end_s"]))


def _draw_phases(ax: Axes, analysis: Analysis, xs: Sequence[float]) -> None:
    """Shaded bands, one per phase, from its first snapshot to the next phase's first one
    (phases hold whole snapshots, so a band ending at its own last one would leave gaps)."""
    import matplotlib.transforms as mtransforms

    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for i, (name, p) in enumerate(ordered_phases(analysis)):
        start, end = float(p["start_s"]), float(p["end_s"])
        nxt = next((x for x in xs if x > end + 1e-3), end)  # end_s is rounded to 1 ms
        color = phase_color(name, i)
        overlay = name == "peak"
        ax.axvspan(start, nxt, color=color, alpha=0.16 if overlay else 0.09, linewidth=0,
                   zorder=0)
        # A band in the last tenth of the run (the peak window, usually) is labelled
        # leftwards from its end so that the label stays inside the plot.
        near_end = start >= xs[0] + 0.9 * (xs[-1] - xs[0])
        ax.text(nxt if near_end else start, 0.985,
                f"{name} " if near_end else f" {name}", transform=trans, va="top",
                ha="right" if near_end else "left", fontsize=8, color=color,
                fontweight="bold", clip_on=True)


def _snapshot_ticks(ax: Axes, xs: Sequence[float], traced: Sequence[bool]) -> None:
    import matplotlib.transforms as mtransforms

    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    plain = [x for x, t in zip(xs, traced, strict=False) if not t]
    hot = [x for x, t in zip(xs, traced, strict=False) if t]
    if plain:
        ax.plot(plain, [0.0] * len(plain), "|", color=MUTED, markersize=6, transform=trans,
                clip_on=False, label="snapshot")
    if hot:
        ax.plot(hot, [0.0] * len(hot), "|", color=TRACED_TICK, markersize=6, markeredgewidth=1.6,
                transform=trans, clip_on=False, label="snapshot (traced)")


def memory_chart(analysis: Analysis) -> bytes:
    """RSS over the run (and the traced Python heap when tracing ran all the time), with the
    phases as shaded bands and a tick per snapshot (amber: tracemalloc was on)."""
    with _figure(*WIDE) as fig:
        ax = fig.add_subplot()
        ser = analysis.series
        if ser is None or not ser.snapshots:
            _message(ax, "no snapshots were recorded")
            return _png(fig)
        xs = ser.xs
        rss = [s.process.rss / MIB for s in ser.snapshots]
        _draw_phases(ax, analysis, xs)
        # markers too: a short run (or a non-Python one, sampled from outside) has few points
        ax.plot(xs, rss, color=RSS_COLOR, linewidth=1.8, label="RSS", zorder=3,
                marker="o" if len(xs) <= 30 else None, markersize=4)
        if len(xs) == 1:
            ax.annotate(f"{rss[0]:.1f} MiB (one snapshot)", (xs[0], rss[0]),
                        textcoords="offset points", xytext=(8, 8), color=INK)
        # In ``auto`` mode tracemalloc only runs in windows and then counts what was allocated
        # since the window opened: that is no heap size, so it is drawn only for ``on`` (and
        # ``sample``: the sampler's estimate of the live Python heap, always on).
        mode = analysis.trace.get("mode")
        if mode in ("on", "sample"):
            heap = [math.nan if s.process.traced_current is None or not s.traced
                    else s.process.traced_current / MIB for s in ser.snapshots]
            if any(not math.isnan(v) for v in heap):
                ax.plot(xs, heap, color=HEAP_COLOR, linewidth=1.4, marker=".", markersize=3,
                        label="traced Python heap" if mode == "on"
                        else "sampled Python heap (estimate)", zorder=3)
        _snapshot_ticks(ax, xs, [s.traced for s in ser.snapshots])
        top = max(rss)
        ax.set_ylim(0, top * 1.12 if top > 0 else 1)
        ax.set_xlim(xs[0], max(xs[-1], xs[0] + 1e-6))
        ax.set_xlabel("time since first snapshot (s)")
        ax.set_ylabel("memory (MiB)")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=4, borderaxespad=0.2)
        return _png(fig)


def _what(f: Finding) -> str:
    """What a finding's series is, in a few words: a container's owner path, a type, a
    site, or the process figure (a resource finding's ``path`` names the container that
    probably holds it, not its series)."""
    if f.kind == "container" and f.path and not f.path.startswith("<"):
        return f.path
    if f.kind == "native":
        return "RSS (outside the Python heap)"
    return f.type or f.site or f.kind


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


class Panel(NamedTuple):
    """One small multiple: a title, the points, their unit and the finding's fit if any."""

    title: str
    xs: list[float]
    ys: list[float]
    unit: str
    fit: tuple[float, float, float, float] | None


def growth_panels(analysis: Analysis, top: int = 6) -> list[Panel]:
    """The series worth a small multiple: every finding's (in report order), then the
    containers that grew most from their first to their last snapshot."""
    ser = analysis.series
    if ser is None:
        return []
    panels: list[Panel] = []
    shown: set[str] = set()
    for f in analysis.findings:
        if len(panels) >= top:
            break
        xs, ys = finding_points(analysis, f)  # in the process it was judged in
        if len(xs) >= 2:
            panels.append(Panel(f"{f.id} {_what(f)}", xs, ys, f.growth.unit, f.fit))
            if f.kind == "container" and f.series_key:
                shown.add(f.series_key)
    grown: list[tuple[float, str]] = []
    for key, (xs, ys) in ser.containers.items():
        if key in shown or len(xs) < 3:
            continue
        # what grew during the run: after warm-up, and in more than one step (a dict that
        # jumped once at import is not what a reader is looking for)
        cut = min(warmup_cut(len(xs)), len(xs) - 2)
        rises = sum(1 for a, b in itertools.pairwise(ys[cut:]) if b > a)
        if ys[-1] > ys[cut] and rises >= 2:
            grown.append((ys[-1] - ys[cut], key))
    grown.sort(reverse=True)
    for _, key in grown[: max(0, top - len(panels))]:
        xs, ys = ser.containers[key]
        path = ser.container_paths.get(key)
        title = (f"{path} ({ser.container_types.get(key, 'container')})" if path
                 else f"{key} (unnamed)")
        panels.append(Panel(title, xs, ys, "items", None))
    return panels


def _plot_series(ax: Axes, xs: Sequence[float], ys: Sequence[float], unit: str,
                 fit: tuple[float, float, float, float] | None, *, marker_size: float) -> Scale:
    sc = scale_for(unit, ys)
    shown = [y / sc.divisor for y in ys]
    x_from = fit[2] if fit else None
    if x_from is not None:
        early = [(x, y) for x, y in zip(xs, shown, strict=False) if x < x_from - 1e-9]
        late = [(x, y) for x, y in zip(xs, shown, strict=False) if x >= x_from - 1e-9]
        if early:
            ax.plot([p[0] for p in early], [p[1] for p in early], "o", color="#bcccdc",
                    markersize=marker_size, label="warm-up (not judged)")
        ax.plot([p[0] for p in late], [p[1] for p in late], "o", color=RSS_COLOR,
                markersize=marker_size, label="samples")
    else:
        ax.plot(xs, shown, "o-", color=RSS_COLOR, markersize=marker_size, linewidth=1.0,
                label="samples")
    if fit is not None:
        slope, intercept, x0, x1 = fit
        ax.plot([x0, x1], [(intercept + slope * x0) / sc.divisor,
                           (intercept + slope * x1) / sc.divisor],
                color=FIT_COLOR, linewidth=1.6, label="trend (Theil–Sen)")
    ax.set_ylabel(sc.unit)
    return sc


def growth_multiples(analysis: Analysis, top: int = 6) -> bytes:
    """Small multiples of the ``top`` growing series (see :func:`growth_panels`)."""
    panels = growth_panels(analysis, top)
    cols = 3 if len(panels) > 2 else max(1, len(panels))
    rows = max(1, math.ceil(len(panels) / cols))
    with _figure(WIDE[0], 0.4 + 2.3 * rows) as fig:
        if not panels:
            _message(fig.add_subplot(), "no container or finding series were recorded")
            return _png(fig)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            _plot_series(ax, panel.xs, panel.ys, panel.unit, panel.fit, marker_size=2.5)
            ax.set_title(_short(panel.title, 40), loc="left", fontsize=9)
            ax.tick_params(labelsize=8)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_axis_off()
        fig.supxlabel("time since first snapshot (s)", fontsize=9, color=INK)
        return _png(fig)


def finding_chart(analysis: Analysis, finding: Finding) -> bytes:
    """The series ``finding`` was judged on, as points, with its fitted trend line over the
    samples the trend used (warm-up samples are drawn paler)."""
    with _figure(*WIDE) as fig:
        ax = fig.add_subplot()
        xs, ys = finding_points(analysis, finding)
        if not xs:
            _message(ax, f"{finding.id}: no samples of its series were recorded")
            return _png(fig)
        _plot_series(ax, xs, ys, finding.growth.unit, finding.fit, marker_size=3.5)
        ax.set_title(_short(f"{finding.id}: {_what(finding)}", 100), loc="left")
        ax.set_xlabel("time since first snapshot (s)")
        ax.legend(loc="upper left")
        return _png(fig)


PROCESS_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#be185d",
                  "#65a30d", "#ea580c", "#475569")


def process_chart(analysis: Analysis) -> bytes:
    """RSS of every process of the run over time, on the root's time axis: one line per
    process, one colour per role (recycled workers show as lines that stop and start)."""
    with _figure(*WIDE) as fig:
        ax = fig.add_subplot()
        ser = analysis.series
        rows = analysis.processes
        if ser is None or not ser.snapshots or not rows or analysis.data is None:
            _message(ax, "no process of the run was recorded")
            return _png(fig)
        from heapwatch.analysis.tree import streams

        t0 = ser.snapshots[0].t
        own = [st for st in streams(analysis.data) if st.snapshots]
        roles = [r["role"] for r in rows]  # the rows follow the streams' order
        count: dict[str, int] = {}
        for role in roles:
            count[role] = count.get(role, 0) + 1
        colors: dict[str, str] = {}
        top = 0.0
        for st, role in zip(own, roles, strict=False):
            pts = [(s.t - t0, s.process.rss / MIB) for s in st.own]
            if not pts:
                continue
            first = role not in colors
            color = colors.setdefault(role, PROCESS_COLORS[len(colors) % len(PROCESS_COLORS)])
            label = (f"{role} ({count[role]})" if count[role] > 1 else f"{role} {st.info.pid}")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, linewidth=1.4,
                    marker="." if len(pts) < 4 else None, label=label if first else None)
            top = max(top, *(v for _, v in pts))
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
        ax.set_xlabel("time since the first snapshot of the run's root (s)")
        ax.set_ylabel("RSS (MiB)")
        ax.legend(loc="lower right", ncols=4)
        return _png(fig)


def phase_bars(analysis: Analysis) -> bytes:
    """RSS median, p95 and max per phase, in time order, values on the bars. The axis starts
    near the smallest value (said on the chart): from 0, bars of 180 and 184 MiB look
    the same."""
    phases = ordered_phases(analysis)
    with _figure(*WIDE) as fig:
        ax = fig.add_subplot()
        if not phases:
            _message(ax, phases_shown(analysis)[1] if analysis.phases else "no phases")
            return _png(fig)
        width = 0.26
        vals_all = [p[k] / MIB for _, p in phases for k in ("rss_median", "rss_p95", "rss_max")]
        lo, hi = min(vals_all), max(vals_all)
        pad = max((hi - lo) * 0.25, hi * 0.01, 0.1)
        base = max(0.0, lo - pad)
        for j, (key, label) in enumerate((("rss_median", "median"), ("rss_p95", "p95"),
                                          ("rss_max", "max"))):
            pos = [i + (j - 1) * width for i in range(len(phases))]
            vals = [p[key] / MIB for _, p in phases]
            bars = ax.bar(pos, [v - base for v in vals], bottom=base, width=width * 0.95,
                          color=BAR_COLORS[j], label=f"RSS {label}", zorder=2)
            ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=7, color=INK,
                         padding=2)
        ax.set_xticks(range(len(phases)), [n for n, _ in phases])
        ax.set_ylim(base, hi + pad)
        ax.grid(axis="x", visible=False)
        ax.set_ylabel("RSS (MiB)" + (f", axis from {base:.1f}" if base > 0 else ""))
        ax.legend(loc="upper left", ncols=3)
        return _png(fig)


CHART_DIR = "charts"


def render_charts(analysis: Analysis) -> dict[str, bytes]:
    """Every chart a report shows, by name: ``memory``, ``phases``, ``growth`` (when there
    is a series to show) and one per finding id. Render once, hand to both reports."""
    pngs: dict[str, bytes] = {"memory": memory_chart(analysis), "phases": phase_bars(analysis)}
    if analysis.processes:
        pngs["processes"] = process_chart(analysis)
    if growth_panels(analysis):
        pngs["growth"] = growth_multiples(analysis)
    for f in analysis.findings:
        pngs[f.id] = finding_chart(analysis, f)
    return pngs


def write_chart_files(analysis: Analysis, directory: str,
                      pngs: Mapping[str, bytes] | None = None) -> dict[str, str]:
    """Write the charts (``pngs``, default :func:`render_charts`) as PNG files under
    ``directory/charts`` for report.md; return {chart name: path relative to
    ``directory``}. PNGs of findings a previous report had and this one has not are
    removed, so the directory never shows a stale chart."""
    if pngs is None:
        pngs = render_charts(analysis)
    out_dir = private_subdir(directory, CHART_DIR)
    written: dict[str, str] = {}
    for name, png in pngs.items():
        write_file(os.path.join(out_dir, f"{name}.png"), png)
        written[name] = f"{CHART_DIR}/{name}.png"
    for entry in os.listdir(out_dir):
        stem, ext = os.path.splitext(entry)
        if ext == ".png" and stem[:1] == "F" and stem[1:].isdigit() and stem not in pngs:
            remove_own(out_dir, entry)
    return written
