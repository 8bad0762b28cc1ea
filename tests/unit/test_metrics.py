"""The exporter's figures and families, on runs built from literals."""

from __future__ import annotations

from typing import Any

import pytest
from test_findings import run_of

from heapwatch.errors import UsageError
from heapwatch.metrics.exporter import families, parse_listen
from heapwatch.metrics.figures import TOP_FINDINGS, compute, label, per_process
from heapwatch.model import ContainerStat, ProcessInfo, ProcessStat, Snapshot
from heapwatch.store import RunData


def exposition(fig: Any) -> str:
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest

    class One:
        def collect(self) -> Any:
            return families(fig)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def leaking(n: int = 40) -> RunData:
    return run_of(n, containers=[("app.TRACKER._pending", "dict", lambda i: 200 + 50 * i)])


def test_a_leak_is_exported_by_fingerprint_path_and_role_never_pid() -> None:
    fig = compute(leaking())
    [f] = fig.findings
    assert (f.role, f.path, f.kind, f.unit, f.severity) == (
        "main", "app.TRACKER._pending", "container", "items", 3)
    assert f.length == 200 + 50 * 39
    assert f.per_second == pytest.approx(50.0, rel=0.01)  # one snapshot a second
    text = exposition(fig)
    assert 'heapwatch_suspect_container_items{fingerprint="' in text
    assert 'heapwatch_verdict{heapwatch_verdict="leak",role="main"} 1.0' in text
    assert "pid=" not in text and 'pid="7"' not in text


def test_steady_run_has_no_finding_series() -> None:
    steady = run_of(40, containers=[("app.CACHE", "dict", lambda i: min(500, 100 + 40 * i))])
    text = exposition(compute(steady))
    assert "heapwatch_finding_" not in text and "heapwatch_suspect_" not in text
    assert 'heapwatch_verdict{heapwatch_verdict="no-leak",role="main"} 1.0' in text


def test_labels_are_bounded_and_redacted() -> None:
    conts = [(f"app.C{i:02d}", "list", (lambda k: lambda i: 200 + (10 + k) * i)(i))
             for i in range(TOP_FINDINGS + 5)]
    conts.append(("app.caches['a1b2c3d4e5f6a7b8']", "dict", lambda i: 200 + 99 * i))
    fig = compute(run_of(40, containers=conts))
    assert len(fig.findings) == TOP_FINDINGS
    paths = {f.path for f in fig.findings}
    assert "app.caches[…]" in paths and not any("a1b2c3" in p for p in paths)
    assert label("svc.SESSIONS['session_id']") == "svc.SESSIONS[…]"
    assert label("x" * 500).endswith("…") and len(label("x" * 500)) == 200


def _stream(pid: int, growth: int, n: int = 40) -> list[Snapshot]:
    return [Snapshot(seq=i + 1, pid=pid, t=1000.0 + i, mono=float(i), reason="interval",
                     duration_s=0.01, phase=None, traced=False,
                     process=ProcessStat(rss=50 << 20, threads=3),
                     types={"dict": 500 + pid},
                     containers=(ContainerStat("app.SEEN", "list", 200 + growth * i, 0,
                                               "app.SEEN"),))
            for i in range(n)]


def test_workers_are_aggregated_by_role() -> None:
    snaps = _stream(10, 0) + _stream(11, 10) + _stream(12, 30)
    meta = {"run": {"command": ["gunicorn"]}, "agent": {"pid": 10}}
    procs = [ProcessInfo(pid=10, t_start=999.0, how="root", role="main"),
             ProcessInfo(pid=11, t_start=999.5, how="fork", ppid=10, role="worker"),
             ProcessInfo(pid=12, t_start=999.5, how="fork", ppid=10, role="worker")]
    data = RunData(path="/tmp/x/run.sqlite", meta=meta, snapshots=snaps, processes=procs)
    assert [(pid, role) for pid, role, _ in per_process(data)] == [
        (10, "master"), (11, "worker"), (12, "worker")]
    fig = compute(data)
    roles = {r.role: r for r in fig.roles}
    assert roles["worker"].processes == 2 and roles["worker"].verdict == "leak"
    assert roles["worker"].threads == 6 and dict(roles["worker"].objects)["dict"] == 1023
    assert roles["master"].verdict == "no-leak"
    [f] = fig.findings
    assert f.role == "worker" and f.length == (200 + 10 * 39) + (200 + 30 * 39)
    assert f.per_second == pytest.approx(40.0, rel=0.01)


def test_a_run_of_one_process_is_main() -> None:
    assert [(pid, role) for pid, role, _ in per_process(leaking())] == [(7, "main")]


@pytest.mark.parametrize(("text", "want"), [
    ("9464", ("127.0.0.1", 9464)), ("0.0.0.0:9464", ("0.0.0.0", 9464)),
    ("[::1]:9000", ("::1", 9000)), (":9464", ("0.0.0.0", 9464)), ("127.0.0.1:0", ("127.0.0.1", 0)),
])
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["host", "host:", "host:99999", "a:b"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_listen(text)
