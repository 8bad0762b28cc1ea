"""Whole services: every process of a pre-fork server or a pool is watched and judged.

Real servers (gunicorn sync workers, uvicorn --workers, multiprocessing pools with fork
and spawn) under ``heapwatch run``, with bounded HTTP load from 127.0.0.1 on a free port.
A worker must live 20 s to be judged, so the verdict tests are slow; the default tier
checks that every process gets its agent and stream.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from helpers import SCENARIOS, heapwatch, report
from treehelpers import SHOP, Load, count, free_port, gunicorn_quiet_flags, start, tool

POOL = os.path.join(SCENARIOS, "mp_pool")


def _rows(rep: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [p for p in rep["processes"] if p["role"] == role]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_every_pool_worker_gets_an_agent(method: str, tmp_path: Any) -> None:
    out = str(tmp_path / "run")
    proc = heapwatch("run", "--interval", "0.3s", "--out", out, "--", sys.executable,
                     "mp_pool.py", "--start", method, "--duration", "3", cwd=POOL)
    assert proc.returncode == 0, proc.stderr
    rep = report(out)
    workers = _rows(rep, "worker")
    assert len(workers) == 2, rep["processes"]
    root = next(p for p in rep["processes"] if p["how"] == "root")
    assert root["role"] == "master" and root["program"] == "mp_pool"
    for w in workers:
        assert w["how"] == method.replace("spawn", "exec") and w["ppid"] == root["pid"]
        assert w["snapshots"] >= 3, w
    if method == "spawn":  # multiprocessing's helper, started by exec, is watched too
        assert [p["role"] for p in rep["processes"]].count("resource tracker") == 1
    assert rep["tree"]["watched"] == len(rep["processes"])
    assert rep["run"]["processes"] == len(rep["processes"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_leak_is_found_in_every_worker(method: str, tmp_path: Any) -> None:
    out = str(tmp_path / "run")
    proc = heapwatch("run", "--interval", "0.5s", "--out", out, "--", sys.executable,
                     "mp_pool.py", "--start", method, "--duration", "24", cwd=POOL)
    assert proc.returncode == 0, proc.stderr
    rep = report(out)
    first = rep["findings"][0]
    assert rep["verdict"] == "leak", rep["verdict_reason"]
    assert first["path"] == "mp_pool.SEEN", first["title"]
    assert "2 of 2 workers" in first["title"]
    assert sorted(first["in_processes"]["pids"]) == sorted(p["pid"] for p in _rows(rep, "worker"))


def _serve(tmp_path: Any, server: list[str], ready: tuple[str, int], mode: str,
           seconds: int = 26, rate: float = 150.0, interval: str = "0.5s") -> dict[str, Any]:
    out = str(tmp_path / "run")
    port = free_port()
    cmd = [sys.executable, "-m", "heapwatch", "run", "--interval", interval, "--duration",
           f"{seconds}s", "--out", out, "--",
           *[a.replace("PORT", str(port)) for a in server]]
    p = start(cmd, cwd=SHOP, env={"SHOP_MODE": mode})
    try:
        p.wait_for(count(*ready))
        load = Load(port, until=p.proc.pid, rate=rate)
        assert p.finish(timeout=seconds + 60) == 0, p.log()
        result = load.stop()
    finally:
        if p.proc.poll() is None:
            p.proc.kill()
            p.finish()
    assert result["requests"] > 10 * seconds, result
    rep = report(out)
    rep["_load"] = result
    return rep


GUNICORN = [tool("gunicorn"), "-w", "2", "-b", "127.0.0.1:PORT", *gunicorn_quiet_flags(),
            "shop:app"]
UVICORN = [tool("uvicorn"), "--workers", "2", "--host", "127.0.0.1", "--port", "PORT",
           "--log-level", "info", "shop_asgi:app"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--preload"]], ids=["w2", "preload"])
def test_gunicorn_workers_leak(extra: list[str], tmp_path: Any) -> None:
    rep = _serve(tmp_path, GUNICORN[:3] + extra + GUNICORN[3:], ("Booting worker", 2), "leak")
    first = rep["findings"][0]
    assert rep["verdict"] == "leak", rep["verdict_reason"]
    assert first["path"] == "shop.CACHE", first["title"]
    assert "2 of 2 workers" in first["title"], first["title"]
    assert len(_rows(rep, "worker")) == 2 and len(_rows(rep, "master")) == 1


@pytest.mark.slow
def test_gunicorn_steady_cache_is_not_a_leak(tmp_path: Any) -> None:
    rep = _serve(tmp_path, GUNICORN, ("Booting worker", 2), "steady")
    assert rep["verdict"] == "no-leak", (rep["verdict_reason"],
                                         [f["title"] for f in rep["findings"]])
    assert all(p["judged"] for p in rep["processes"]), rep["processes"]


@pytest.mark.slow
def test_uvicorn_workers_leak(tmp_path: Any) -> None:
    rep = _serve(tmp_path, UVICORN, ("Application startup complete", 2), "leak")
    first = rep["findings"][0]
    assert rep["verdict"] == "leak", rep["verdict_reason"]
    assert first["path"] == "shop_asgi.CACHE", first["title"]
    assert "2 of 2 workers" in first["title"], first["title"]


@pytest.mark.slow
def test_uvicorn_steady_cache_is_not_a_leak(tmp_path: Any) -> None:
    rep = _serve(tmp_path, UVICORN, ("Application startup complete", 2), "steady")
    assert rep["verdict"] == "no-leak", (rep["verdict_reason"],
                                         [f["title"] for f in rep["findings"]])


@pytest.mark.slow
def test_recycled_gunicorn_workers_do_not_hide_the_leak(tmp_path: Any) -> None:
    # each worker lives about 8 s: too short to judge alone, not as generations
    server = [*GUNICORN[:3], "--max-requests", "600", "--max-requests-jitter", "0", *GUNICORN[3:]]
    rep = _serve(tmp_path, server, ("Booting worker", 2), "leak", seconds=26, rate=150.0)
    first = rep["findings"][0]
    assert rep["verdict"] == "leak", rep["verdict_reason"]
    assert first["path"] == "shop.CACHE", first["title"]
    assert "every worker generation" in first["title"] + first["evidence"], first
    assert rep["tree"]["replaced"] >= 2, rep["tree"]
    assert "before it is replaced" in first["evidence"]


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _thread_names(pid: int) -> list[str]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/task/{tid}/wchan", encoding="utf-8") as f:
            out.append(f"{tid} {name} {f.read().strip()}")
    return out


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children()]


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info >= (3, 14) or not sys.platform.startswith("linux"),
                    reason="the lldb method covers 3.10-3.13 on Linux")
def test_attach_tree_enters_master_and_workers_under_load(tmp_path: Any) -> None:
    import shutil
    import signal

    if shutil.which("lldb") is None:
        pytest.skip("lldb is not installed (apt-get install -y lldb)")
    port = free_port()
    server = start([a.replace("PORT", str(port)) for a in GUNICORN], cwd=SHOP,
                   env={"SHOP_MODE": "leak"})
    try:
        server.wait_for(count("Booting worker", 2))
        master = server.proc.pid
        before = {pid: _threads(pid) for pid in [master, *_children(master)]}
        load = Load(port, until=master, rate=100.0)
        out = str(tmp_path / "run")
        attach = start([sys.executable, "-m", "heapwatch", "attach", str(master), "--tree",
                        "--interval", "0.5s", "--duration", "12s", "--out", out], cwd=str(tmp_path))
        # a worker forked after the attach gets its agent from the master's fork hook
        attach.wait_for(count("agent started in process", 2), timeout=120)
        os.kill(master, signal.SIGTTIN)
        server.wait_for(count("Booting worker", 3))
        assert attach.finish(timeout=120) == 0, attach.log()
        during = load.stop()
        assert during["failed"] == 0, during
        after = Load(port, until=master, rate=0.0, seconds=2.0)
        served = after.join()
        assert served["requests"] > 20 and served["failed"] == 0, served
        for pid, n in before.items():  # detached: no thread of ours is left behind
            assert _threads(pid) == n, (pid, n, _thread_names(pid), attach.log()[-1500:])
    finally:
        server.proc.send_signal(signal.SIGINT)
        server.finish()
    rep = report(out)
    workers = _rows(rep, "worker")
    assert len(workers) == 3, rep["processes"]
    assert sorted(w["how"] for w in workers) == ["attach", "attach", "fork"]
    assert all(w["snapshots"] >= 3 for w in workers), workers
    assert _rows(rep, "master")[0]["how"] == "root"
