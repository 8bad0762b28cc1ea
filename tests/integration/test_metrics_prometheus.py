"""A real Prometheus scrapes `heapwatch run --metrics` on a leaking and a steady scenario."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from helpers import SCENARIOS
from servers import Prometheus, prometheus_binary

LEAK_PATH = "pending_tracker.TRACKER._pending"


def start_run(tmp_path: Any, name: str, script: str) -> tuple[subprocess.Popen[str], str]:
    """`heapwatch run --metrics 127.0.0.1:0` without --duration (the long-running mode);
    the port it bound is read from its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "heapwatch", "run", "--interval", "0.5", "--metrics",
         "127.0.0.1:0", "--out", str(tmp_path / name), "--", sys.executable, script],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"metrics on http://(127\.0\.0\.1:\d+)/metrics", line)
        if m:
            return proc, m.group(1)
    raise AssertionError(f"heapwatch run exited without serving metrics ({proc.wait()})")


def stop_run(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return err


def wait_for(what: str, prom: Prometheus, query: str, ok: Any, timeout: float = 90.0) -> Any:
    """Ask Prometheus until ``ok(result)``; the deadline only bounds a broken run."""
    deadline = time.monotonic() + timeout
    result: Any = None
    while time.monotonic() < deadline:
        result = prom.api("query", query=query)["result"]
        if ok(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what}: Prometheus still answers {result!r} to {query}\n"
                         f"{prom.logtext()}")


@pytest.mark.slow
def test_prometheus_sees_the_leaking_container_and_nothing_for_the_steady_one(
        tmp_path: Any) -> None:
    binary = prometheus_binary()
    leak, leak_addr = start_run(tmp_path, "leak",
                                os.path.join(SCENARIOS, "pending_tracker", "pending_tracker.py"))
    steady, steady_addr = start_run(tmp_path, "steady",
                                    os.path.join(SCENARIOS, "lru_cache", "lru_cache.py"))
    prom = Prometheus(binary, [leak_addr, steady_addr], scrape_s=1.0)
    try:
        prom.wait_ready()
        series = wait_for(
            "the suspect container's series", prom,
            f'heapwatch_suspect_container_items{{instance="{leak_addr}"}}',
            lambda r: any(s["metric"].get("path") == LEAK_PATH for s in r))
        labels = next(s["metric"] for s in series if s["metric"]["path"] == LEAK_PATH)
        assert labels["role"] == "main" and re.fullmatch(r"[0-9a-f]{12}", labels["fingerprint"])
        assert not any(k in labels for k in ("pid", "value")), labels
        fp = labels["fingerprint"]
        rate = prom.api("query", query=f'heapwatch_finding_growth_rate{{fingerprint="{fp}"}}'
                        )["result"]
        assert len(rate) == 1 and rate[0]["metric"]["unit"] == "items"
        assert 50 < float(rate[0]["value"][1]) < 200  # the scenario adds ~100 items/s
        severity = prom.api("query", query=f'heapwatch_finding_severity{{fingerprint="{fp}"}}'
                            )["result"]
        assert float(severity[0]["value"][1]) >= 2
        # Prometheus' own view of the growth agrees: the series rises between scrapes.
        wait_for("deriv of the container's length", prom,
                 f'deriv(heapwatch_suspect_container_items{{fingerprint="{fp}"}}[20s]) > 20',
                 lambda r: len(r) == 1)
        # The steady service has been judged on as many snapshots, and shows no finding.
        wait_for("the steady service's snapshots", prom,
                 f'heapwatch_snapshots_total{{instance="{steady_addr}"}} >= 25',
                 lambda r: len(r) == 1)
        verdict = prom.api("query", query=f'heapwatch_verdict{{instance="{steady_addr}",'
                           f'heapwatch_verdict="no-leak"}}')["result"]
        assert [v["value"][1] for v in verdict] == ["1"]
        findings = prom.api("query", query=(
            f'count_over_time({{__name__=~"heapwatch_(finding|suspect)_.*",'
            f'instance="{steady_addr}"}}[10m])'))["result"]
        assert findings == []
        leaked = prom.api("query", query=f'heapwatch_verdict{{instance="{leak_addr}",'
                          f'heapwatch_verdict="leak"}}')["result"]
        assert [v["value"][1] for v in leaked] == ["1"]
    finally:
        prom.stop()
        leak_err = stop_run(leak)
        stop_run(steady)
    assert LEAK_PATH in leak_err  # the run still ends with its report


def test_bad_metrics_address_fails_before_the_target_starts(tmp_path: Any) -> None:
    marker = tmp_path / "started"
    script = f"open({str(marker)!r}, 'w').close()"
    for listen, why in (("127.0.0.1:notaport", "invalid --metrics"),
                        ("203.0.113.1:9464", "cannot serve metrics")):
        proc = subprocess.run(
            [sys.executable, "-m", "heapwatch", "run", "--metrics", listen, "--out",
             str(tmp_path / "r"), "--", sys.executable, "-c", script],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert why in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert not marker.exists()


FORKING = """
import os, signal, sys, time
LEAK = []
kids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        while True:  # a worker: its LEAK grows; SIGTERM ends it
            LEAK.extend(range(50))
            time.sleep(0.05)
    kids.append(pid)
try:
    while True:
        time.sleep(0.1)
except KeyboardInterrupt:
    pass
finally:
    for k in kids:
        os.kill(k, signal.SIGTERM)
        os.waitpid(k, 0)
"""


@pytest.mark.slow
def test_forked_workers_are_one_role_never_a_pid(tmp_path: Any) -> None:
    import urllib.request

    script = tmp_path / "forking.py"
    script.write_text(FORKING)
    run, addr = start_run(tmp_path, "tree", str(script))
    text = ""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
                text = resp.read().decode()
            # Each process is judged once its own snapshots span 20 s; the three agents
            # snapshot at their own moments, so one scrape can show one worker judged and
            # the others not yet: wait for all three, the two workers as one role.
            if (re.search(r'heapwatch_suspect_container_items\{[^}]*role="worker"', text)
                    and 'heapwatch_processes{role="worker"} 2.0' in text
                    and 'heapwatch_processes{role="master"} 1.0' in text):
                break
            time.sleep(1.0)
        else:
            raise AssertionError(f"no scrape with the master and both workers judged, and a "
                                 f"worker suspect series, in 120 s:\n{text}")
    finally:
        err = stop_run(run)
    lines = [ln for ln in text.splitlines() if ln.startswith("heapwatch_suspect_container_items")]
    assert len(lines) == 1 and 'path="forking.LEAK"' in lines[0], lines
    labels = set(re.findall(r'(\w+)="', text))
    assert labels <= {"role", "type", "fingerprint", "path", "kind", "unit", "method",
                      "quantile", "heapwatch_verdict"}, labels
    assert "report:" in err
