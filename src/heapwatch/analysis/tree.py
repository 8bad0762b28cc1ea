"""A run of several processes: each process analysed on its own, then across the tree.

A pre-fork server or a pool is a tree: a master, workers, helpers (multiprocessing's
resource tracker, a forkserver). Each process's stream is analysed by
:func:`heapwatch.analysis.findings.analyze`, exactly as a run of one process. Then:

- only long-lived processes are judged (``TreeParams``: at least 5 snapshots over at least
  20 s); short-lived ones are summarised, not judged;
- findings are grouped across processes by what grows (owner path, type, site, or the
  process figure) and say where they hold, counted by role: "in 2 of 2 workers";
- recycled workers (gunicorn ``--max-requests``) are judged as generations: a container
  that grows in every generation is a leak however short each one lived, with the size a
  worker reaches before it is replaced;
- the verdict is ``leak`` when any judged process (or generation) has a finding of medium
  or high severity.

A run of one process is returned exactly as :func:`analyze` makes it. Pure: no printing.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from heapwatch.analysis.findings import (
    UNREACHABLE,
    Analysis,
    AnalysisParams,
    _rate,
    analyze,
    finding_series,
)
from heapwatch.analysis.integrity import agent_errors
from heapwatch.analysis.lifecycle import death_note
from heapwatch.analysis.series import Series, main_pid
from heapwatch.model import SEVERITY_RANK, Finding, Growth, Mark, ProcessInfo, ProcessStat, Snapshot
from heapwatch.store import RunData
from heapwatch.units import fmt_bytes

HELPER_ROLES = ("resource tracker", "forkserver")


@dataclass(frozen=True)
class TreeParams:
    """What makes a process long-lived enough to judge, and a generation worth judging."""

    long_lived_snapshots: int = 5
    long_lived_s: float = 20.0
    generation_min_snapshots: int = 3
    generation_min_growth: float = 50.0  # items a container gains in each generation
    generation_min_rise_share: float = 0.6  # of its intervals


DEFAULT_TREE = TreeParams()


@dataclass
class Stream:
    """One process's snapshots and what the store knows of it."""

    info: ProcessInfo
    snapshots: list[Snapshot]

    @property
    def agent(self) -> bool:
        return any(s.source == "agent" for s in self.snapshots)

    @property
    def span(self) -> float:
        own = self.own
        return own[-1].t - own[0].t if len(own) >= 2 else 0.0

    @property
    def own(self) -> list[Snapshot]:
        """The snapshots it is judged on: its agent's, or the ones taken from outside."""
        agent = [s for s in self.snapshots if s.source == "agent"]
        return agent or [s for s in self.snapshots if s.source == "external"]


def streams(run: RunData) -> list[Stream]:
    """One stream per process of the run, in start order. A pid used twice (one process
    exited, another got its pid) gives two streams, split at the second one's start."""
    rows = sorted(run.processes, key=lambda p: (p.t_start, p.id or 0))
    by_pid: dict[int, list[ProcessInfo]] = defaultdict(list)
    for p in rows:
        by_pid[p.pid].append(p)
    snaps: dict[int, list[Snapshot]] = defaultdict(list)
    for s in run.snapshots:
        snaps[s.pid].append(s)
    out: list[Stream] = []
    for pid, pid_snaps in snaps.items():
        infos = by_pid.get(pid)
        if not infos:  # a version-1 store, or a process that never registered
            first = min(s.t for s in pid_snaps)
            how = "root" if pid == main_pid(run) else (
                "external" if all(s.source == "external" for s in pid_snaps) else "fork")
            infos = [ProcessInfo(pid=pid, t_start=first, how=how,
                                 role="main" if how == "root" else None)]
        for i, info in enumerate(infos):
            prev = infos[i - 1] if i else None
            lo = float("-inf") if prev is None else (
                prev.t_end if prev.t_end is not None else info.t_start - 5.0)
            hi = infos[i + 1].t_start - 1e-6 if i + 1 < len(infos) else float("inf")
            out.append(Stream(info, [s for s in pid_snaps if lo <= s.t <= hi]))
    for info in rows:  # processes that left no snapshot at all
        if not snaps.get(info.pid):
            out.append(Stream(info, []))
    out.sort(key=lambda st: (st.info.how != "root", st.info.t_start))
    return out


def _root(all_streams: list[Stream]) -> Stream | None:
    roots = [st for st in all_streams if st.info.how == "root" and st.agent]
    if roots:
        return roots[0]
    agents = [st for st in all_streams if st.agent]
    if agents:
        return max(agents, key=lambda st: len(st.own))
    return all_streams[0] if all_streams else None


def _sub_run(run: RunData, stream: Stream, root: Stream) -> RunData:
    """The run as one process saw it: its snapshots, its marks (the root's when it has
    none: a worker forked after a mark inherits the phase), its agent's description."""
    pid = stream.info.pid
    marks = [m for m in run.marks if m.pid == pid] or [
        Mark(t=m.t, phase=m.phase, pid=pid, source=m.source) for m in run.marks
        if m.pid == root.info.pid]
    meta = dict(run.meta)
    if stream is not root:
        agent = dict(run.meta.get("agent") or {})
        agent.update(pid=pid, python=stream.info.python or agent.get("python"))
        meta["agent"] = agent if stream.agent else None
        meta.pop("agent_stopped", None)
        if not stream.agent:
            meta["launch"] = {**(run.meta.get("launch") or {}), "no_agent_reason":
                              f"process {pid} ({stream.info.program or '?'}) was recorded "
                              f"from outside"}
    return RunData(path=run.path, meta=meta, snapshots=stream.snapshots, marks=marks,
                   events=[e for e in run.events if e[0] == pid],
                   processes=[stream.info], schema=run.schema, skipped=run.skipped)


def analyze_tree(run: RunData, params: AnalysisParams | None = None,
                 tree_params: TreeParams = DEFAULT_TREE) -> Analysis:
    """Analyse every process of ``run``, then the tree (see the module's docstring)."""
    params = params or AnalysisParams()
    all_streams = [st for st in streams(run) if st.snapshots or st.info.how != "external"]
    with_data = [st for st in all_streams if st.snapshots]
    if len(with_data) <= 1:
        return analyze(run, params)
    root = _root(with_data)
    assert root is not None
    per: dict[int, tuple[Stream, Analysis]] = {}
    for st in with_data:
        per[id(st)] = (st, analyze(_sub_run(run, st, root), params))
    base = per[id(root)][1]
    roles = _display_roles(with_data, root)
    judged = [st for st in with_data if _long_lived(st, tree_params)]
    judged_ids = {id(st) for st in judged}
    role_counts: dict[str, int] = defaultdict(int)
    for st in judged:
        role_counts[roles[id(st)]] += 1

    groups: dict[tuple[str, str], list[tuple[Stream, Finding]]] = defaultdict(list)
    for st in judged:
        for f in per[id(st)][1].findings:
            groups[_group_key(f)].append((st, f))
    generations = _generations(with_data, roles, root)
    gen_findings: dict[tuple[str, str], tuple[Finding, dict[str, Any]]] = {}
    for role, generation in generations.items():
        got = _generation_finding(generation, role, per, tree_params)
        if got is not None:
            gen_findings[_group_key(got[0])] = got

    findings: list[Finding] = []
    spread: dict[str, dict[str, Any]] = {}
    keys = list(groups) + [k for k in gen_findings if k not in groups]
    for key in keys:
        members = groups.get(key, [])
        gen = gen_findings.get(key)
        f, info = _combine(members, gen, roles, role_counts, root)
        findings.append(f)
        spread[f.fingerprint] = info
    findings.sort(key=lambda f: (SEVERITY_RANK.get(f.severity, 9), _kind_rank(f.kind), -f.score))
    findings = [replace(f, id=f"F{i}") for i, f in enumerate(findings[: params.max_findings], 1)]

    rows = [_row(st, per[id(st)][1], roles[id(st)], id(st) in judged_ids, root)
            for st in with_data]
    serious = [f for f in findings if f.severity in ("high", "medium")]
    short = [st for st in with_data if id(st) not in judged_ids and st.agent]
    outside = [st for st in with_data if not st.agent]
    notes = list(base.notes) if root.agent else []
    if short:
        notes.append(f"{len(short)} process(es) lived too briefly to judge (fewer than "
                     f"{tree_params.long_lived_snapshots} snapshots or "
                     f"{tree_params.long_lived_s:g} s): summarised, not judged.")
    if outside:
        names = ", ".join(sorted({st.info.program or "?" for st in outside}))
        notes.append(f"{len(outside)} process(es) without an agent ({names}): recorded from "
                     f"outside (RSS, fds, threads), not judged.")
    if serious:
        verdict = "leak"
        reason = f"{len(serious)} finding(s) of medium or high severity; first: {serious[0].title}"
    elif not judged:
        verdict = "inconclusive"
        reason = (f"no process of the {len(with_data)} lived long enough to judge (at least "
                  f"{tree_params.long_lived_snapshots} snapshots over "
                  f"{tree_params.long_lived_s:g} s): run longer")
    elif all(per[id(st)][1].verdict == "inconclusive" for st in judged):
        verdict, reason = "inconclusive", per[id(judged[0])][1].verdict_reason
    else:
        verdict = "no-leak"
        reason = (f"nothing grew without bound in the {len(judged)} long-lived process(es) "
                  f"({_role_list(role_counts)})")
    died = death_note(base.target_exit)  # the root's end, as analyze() says it
    if died and not reason.startswith(died):
        reason = f"{died}; {reason}"
    tree = {
        "processes": len(with_data),
        "watched": sum(1 for st in with_data if st.agent),
        "outside": len(outside),
        "judged": len(judged),
        "short_lived": len(short),
        "roles": dict(sorted(_count(roles[id(st)] for st in with_data).items())),
        "replaced": sum(1 for e in run.events if e[2] == "replaced"),
        "generations": {role: len(m) for role, m in generations.items()},
        "rss_max_total": _tree_rss_max(with_data),
    }
    analysis = replace(
        base, verdict=verdict, verdict_reason=reason, findings=findings, notes=notes,
        agent={**base.agent, "errors": agent_errors(run, root.snapshots)[:20]},
        run={**base.run, "processes": len(with_data)}, processes=rows, tree=tree,
        per_process={st.info.pid: a for st, a in per.values()}, spread=spread, data=run)
    return analysis


def _long_lived(st: Stream, tp: TreeParams) -> bool:
    return st.agent and len(st.own) >= tp.long_lived_snapshots and st.span >= tp.long_lived_s


def _display_roles(all_streams: list[Stream], root: Stream) -> dict[int, str]:
    """The role a person reads: the root is the ``master`` when it has workers."""
    out: dict[int, str] = {}
    has_workers = {st.info.ppid for st in all_streams if st.info.role == "worker"}
    for st in all_streams:
        role = st.info.role or ("main" if st is root else "child")
        if role == "main" and st.info.pid in has_workers:
            role = "master"
        out[id(st)] = role
    return out


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return out


def _plural(role: str, n: int) -> str:
    if n == 1:
        return role
    if role == "child":
        return "children"
    return role + "es" if role.endswith(("s", "sh", "ch", "x")) else role + "s"


def _role_list(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {_plural(r, n)}" for r, n in sorted(counts.items()))


def _kind_rank(kind: str) -> int:
    return {"container": 0, "fds": 1, "sockets": 1, "threads": 1, "files": 1, "processes": 1,
            "garbage": 2, "native": 2, "site": 3, "type": 4}.get(kind, 9)


def _group_key(f: Finding) -> tuple[str, str]:
    """What grows, whichever process it grows in: an owner path, else a type or a site,
    else the process figure (per-process details such as a sampled item's site may
    differ between processes; the thing that grows does not)."""
    if f.kind == "container" and f.path and f.path != UNREACHABLE:
        return (f.kind, f.path)
    return (f.kind, f.type or f.site or f.series_key or f.title)


def _spread_text(members: list[tuple[Stream, Finding]], roles: dict[int, str],
                 role_counts: dict[str, int]) -> tuple[str, dict[str, int]]:
    held = _count(roles[id(st)] for st, _ in members)
    parts = []
    for role, k in sorted(held.items(), key=lambda kv: (-kv[1], kv[0])):
        n = max(role_counts.get(role, 0), k)
        parts.append(f"the {role}" if n == 1 and role in ("master", "main") else
                     f"{k} of {n} {_plural(role, n)}")
    return " and ".join(parts), held


def _combine(members: list[tuple[Stream, Finding]],
             gen: tuple[Finding, dict[str, Any]] | None, roles: dict[int, str],
             role_counts: dict[str, int], root: Stream) -> tuple[Finding, dict[str, Any]]:
    """One finding for what grows in several processes (and/or worker generations)."""
    if not members:
        assert gen is not None
        return gen[0], gen[1]
    members = sorted(members, key=lambda m: (SEVERITY_RANK.get(m[1].severity, 9), -m[1].score))
    rep = members[0][1]
    text, held = _spread_text(members, roles, role_counts)
    rates = [f.growth.per_hour for _, f in members]
    each = len(members) > 1
    similar = max(rates) <= 2 * max(min(rates), 1e-9)
    rate = _rate(statistics.median(rates) if similar else max(rates), rep.growth.unit)
    rate_text = (f"{rate} each" if similar else f"up to {rate}") if each else rate
    title = _title(rep, text, rate_text)
    per_proc = "; ".join(f"pid {st.info.pid} ({roles[id(st)]}) "
                         f"{_rate(f.growth.per_hour, f.growth.unit)}" for st, f in members[:8])
    evidence = rep.evidence
    only_root = len(members) == 1 and members[0][0] is root and sum(role_counts.values()) <= 1
    if not only_root:
        evidence = f"{evidence} It grows in {text}: {per_proc}."
    info: dict[str, Any] = {
        "processes": len(members), "text": text, "roles": dict(held),
        "pids": [st.info.pid for st, _ in members],
        "per_hour": [round(r, 3) for r in rates],
    }
    if gen is not None:
        evidence = f"{evidence} {gen[1]['sentence']}"
        info["generations"] = gen[1]["generations"]
        info["rss_before_replaced"] = gen[1]["rss_before_replaced"]
    sev = min((f.severity for _, f in members), key=lambda s: SEVERITY_RANK.get(s, 9))
    if gen is not None and SEVERITY_RANK[gen[0].severity] < SEVERITY_RANK.get(sev, 9):
        sev = gen[0].severity
    f = replace(rep, title=title if not only_root else rep.title, evidence=evidence,
                severity=sev, confidence=max(f.confidence for _, f in members),
                score=sum(f.score for _, f in members))
    return f, info


def _title(rep: Finding, where: str, rate: str) -> str:
    item = rep.items[0]["type"] if rep.items else None
    if rep.kind == "container" and rep.path:
        holds = f" ({rep.type} of {item})" if item else f" ({rep.type})" if rep.type else ""
        return f"{rep.path} grows in {where}: {rate}{holds}"
    if rep.kind == "type" and rep.type:
        return f"{rep.type} objects accumulate in {where}: {rate}"
    if rep.kind == "site" and rep.site:
        return f"memory allocated at {rep.site} keeps growing in {where}: {rate}"
    if rep.kind == "native":
        return f"RSS grows outside the Python heap in {where}: {rate}"
    return f"{rep.title} (in {where})"


# -- worker generations ------------------------------------------------------------------------

def _generations(all_streams: list[Stream], roles: dict[int, str], root: Stream
                 ) -> dict[str, list[Stream]]:
    """Processes of one role and parent that replaced each other (recycled workers): more
    of them came and went than ever ran at once. Keyed by role."""
    by: dict[tuple[int | None, str], list[Stream]] = defaultdict(list)
    for st in all_streams:
        role = roles[id(st)]
        if st is root or not st.agent or role in ("master", "main") or role in HELPER_ROLES:
            continue
        by[(st.info.ppid, role)].append(st)
    out: dict[str, list[Stream]] = {}
    for (_, role), members in by.items():
        spans = [(st.own[0].t, st.own[-1].t) for st in members if st.own]
        most_at_once = max((sum(1 for a, b in spans if a <= t <= b) for t, _ in spans), default=0)
        if len(members) > most_at_once >= 1:
            out[role] = sorted(members, key=lambda st: st.info.t_start)
    return out


def _rises(ys: list[float]) -> float:
    steps = [b - a for a, b in itertools.pairwise(ys)]
    return sum(1 for d in steps if d > 0) / len(steps) if steps else 0.0


def _generation_finding(members: list[Stream], role: str,
                        per: dict[int, tuple[Stream, Analysis]], tp: TreeParams
                        ) -> tuple[Finding, dict[str, Any]] | None:
    """A container that grows in every generation of recycled ``role`` processes."""
    # The generations that ended (replaced); the last one, cut by the end of the run, only
    # counts when it saw the container long enough.
    ended = [st for st in members if st.info.t_end is not None and st.info.end_reason != "stop"
             and len(st.own) >= tp.generation_min_snapshots]
    if len(ended) < 2:
        return None
    best: tuple[float, str, list[tuple[Stream, float, float, float]]] | None = None
    paths: set[str] | None = None
    for st in ended:
        ser = per[id(st)][1].series
        named = {p for p in (ser.container_paths.values() if ser else []) if p}
        paths = named if paths is None else paths & named
    for path in sorted(paths or ()):
        grew: list[tuple[Stream, float, float, float]] = []
        for st in members:
            ser = per[id(st)][1].series
            assert ser is not None
            key = next((k for k, p in ser.container_paths.items() if p == path), None)
            xs, ys = ser.containers[key] if key is not None else ([], [])
            if (len(ys) < tp.generation_min_snapshots or ys[-1] - ys[0] < tp.generation_min_growth
                    or xs[-1] <= xs[0] or _rises(ys) < tp.generation_min_rise_share):
                if st in ended:
                    break
                # a generation cut by the end of the run (the load may have stopped first:
                # 49, 105, 105) says nothing against the ones that were replaced
                continue
            grew.append((st, ys[0], ys[-1], (ys[-1] - ys[0]) / (xs[-1] - xs[0]) * 3600))
        else:
            total = sum(g[3] for g in grew)
            if len(grew) >= 2 and (best is None or total > best[0]):
                best = (total, path, grew)
    if best is None:
        return None
    _, path, grew = best
    rep_st = max(grew, key=lambda g: g[2] - g[1])[0]
    rep = next((f for f in per[id(rep_st)][1].findings if f.kind == "container"
                and f.path == path), None)
    ser = per[id(rep_st)][1].series
    assert ser is not None
    key = next(k for k, p in ser.container_paths.items() if p == path)
    ctype = ser.container_types.get(key, "container")
    rates = [g[3] for g in grew]
    n = len(grew)
    sizes = [st.own[-1].process.rss for st in ended]
    size_text = (f"; a {role} reaches {fmt_bytes(min(sizes))}"
                 + (f"–{fmt_bytes(max(sizes))}" if max(sizes) > min(sizes) else "")
                 + " of RSS before it is replaced") if sizes else ""
    rate = _rate(statistics.median(rates), "items")
    sentence = (f"It grows in every {role} generation ({n} of {n} {_plural(role, n)} over the "
                f"run, +{statistics.median([g[2] - g[1] for g in grew]):.0f} items in each)"
                f"{size_text}: recycling {_plural(role, 2)} hides the leak, it does not fix it.")
    first, last = grew[-1][1], grew[-1][2]
    base = rep or Finding(
        id="", kind="container", severity="medium", title="", confidence=0.0, evidence="",
        growth=Growth(first=first, last=last, unit="items", per_hour=statistics.median(rates),
                      grew_in=f"{n}/{n} generations"),
        type=ctype, path=path, series_key=key, pid=rep_st.info.pid)
    severity = "high" if n >= 3 else "medium"
    f = replace(base, severity=severity if SEVERITY_RANK[severity] < SEVERITY_RANK.get(
                    base.severity, 9) else base.severity,
                title=f"{path} grows in every {role} generation: {rate} each"
                      + (f" ({ctype})" if ctype else ""),
                evidence=(base.evidence + " " if base.evidence else
                          f"{ctype} at {path} grew in each of {n} short-lived {_plural(role, n)}. ")
                + sentence,
                confidence=max(base.confidence, 0.5 + 0.1 * min(n, 5)),
                score=max(base.score, sum(rates)), pid=rep_st.info.pid)
    info = {"processes": n, "text": f"every {role} generation ({n})", "roles": {role: n},
            "pids": [g[0].info.pid for g in grew], "per_hour": [round(r, 3) for r in rates],
            "generations": n, "rss_before_replaced": sizes, "sentence": sentence}
    return f, info


# -- rows, totals ------------------------------------------------------------------------------

def _row(st: Stream, a: Analysis, role: str, judged: bool, root: Stream) -> dict[str, Any]:
    own = st.own
    t0 = root.own[0].t if root.own else (own[0].t if own else st.info.t_start)
    rss = [s.process.rss for s in own]
    if judged:
        verdict = a.verdict
    elif not st.agent:
        verdict = "not judged: recorded from outside"
    else:
        verdict = "not judged: short-lived"
    i = st.info
    return {
        "pid": i.pid, "ppid": i.ppid, "role": role, "how": i.how, "program": i.program,
        "started_s": round((own[0].t if own else i.t_start) - t0, 3),
        "ended_s": round(i.t_end - t0, 3) if i.t_end is not None else None,
        "lifetime_s": round(st.span, 3), "snapshots": len(own),
        "rss_first": rss[0] if rss else None, "rss_last": rss[-1] if rss else None,
        "rss_max": max(rss) if rss else None, "judged": judged, "verdict": verdict,
        "findings": sum(1 for f in a.findings if f.severity in ("high", "medium")) if judged
        else 0,
        "end_reason": i.end_reason, "exit_code": i.exit_code, "exit_signal": i.exit_signal,
    }


def _tree_rss_max(all_streams: list[Stream]) -> int | None:
    points = tree_points(all_streams, "rss")
    return int(max(points.values())) if points else None


def tree_points(all_streams: list[Stream], figure: str) -> dict[float, float]:
    """The tree's total of a process figure at every snapshot time: each process counts
    with its latest value from its first to its last snapshot."""
    per = []
    for st in all_streams:
        pts = [(s.t, getattr(s.process, figure)) for s in st.own
               if getattr(s.process, figure, None) is not None]
        if pts:
            per.append(pts)
    times = sorted({t for pts in per for t, _ in pts})
    out: dict[float, float] = {}
    for t in times:
        total = 0.0
        for pts in per:
            if pts[0][0] <= t <= pts[-1][0]:
                total += float(next(v for tt, v in reversed(pts) if tt <= t))
        out[t] = total
    return out


def tree_series(a: Analysis) -> Series | None:
    """The whole tree as one series (RSS, fds, threads, objects summed over the processes
    alive at each moment), on the root's time axis: what tree budgets are checked on."""
    if not a.tree or a.data is None or a.series is None or not a.series.snapshots:
        return None
    all_streams = [st for st in streams(a.data) if st.snapshots]
    sums = {f: tree_points(all_streams, f) for f in ("rss", "fds", "threads", "gc_objects")}
    t0 = a.series.snapshots[0].t
    snaps = [Snapshot(seq=i, pid=0, t=t, mono=t, reason="tree", duration_s=0.0, phase=None,
                      traced=False, source="tree",
                      process=ProcessStat(rss=int(sums["rss"].get(t, 0)),
                                          fds=_opt(sums["fds"].get(t)),
                                          threads=_opt(sums["threads"].get(t)),
                                          gc_objects=_opt(sums["gc_objects"].get(t))))
             for i, t in enumerate(sorted(sums["rss"]))]
    return Series(pid=0, snapshots=snaps, xs=[s.t - t0 for s in snaps])


def _opt(v: float | None) -> int | None:
    return None if v is None else int(v)


def series_for(a: Analysis, f: Finding) -> Series | None:
    """The series of the process ``f`` was judged on (the root's for a run of one)."""
    if f.pid is not None and f.pid in a.per_process:
        return a.per_process[f.pid].series
    return a.series


def finding_points(a: Analysis, f: Finding) -> tuple[list[float], list[float]]:
    """``finding_series`` in the process the finding comes from."""
    ser = series_for(a, f)
    return finding_series(ser, f) if ser is not None else ([], [])
