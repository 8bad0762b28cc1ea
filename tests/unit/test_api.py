from __future__ import annotations

import os
from typing import Any

import pytest

import heapwatch
from heapwatch.store import open_run

LEAK: list[Any] = []


def test_start_twice_and_stop_without_start(tmp_path: Any) -> None:
    with pytest.raises(heapwatch.HeapwatchError, match="not started"):
        heapwatch.stop()
    with pytest.raises(heapwatch.HeapwatchError, match="not started"):
        heapwatch.mark("load")
    heapwatch.start(out=str(tmp_path / "r"), interval=3600, trace="off")
    try:
        with pytest.raises(heapwatch.HeapwatchError, match="already started"):
            heapwatch.start(out=str(tmp_path / "r2"), interval=3600)
    finally:
        heapwatch.stop()


def test_watch_finds_a_leaking_list(tmp_path: Any) -> None:
    out = str(tmp_path / "run")
    with heapwatch.watch(out=out, interval=3600, trace="on") as run:
        heapwatch.mark("load")
        for _ in range(16):
            LEAK.extend(bytearray(64) for _ in range(200))  # ALLOC
            run.snapshot()
    LEAK.clear()
    result = run.result
    assert result is not None
    assert result.verdict == "leak"
    first = result.findings[0]
    assert first["kind"] == "container"
    assert first["path"].endswith("test_api.LEAK")
    with open(__file__) as f:
        line = next(i for i, text in enumerate(f, 1) if text.rstrip().endswith("# ALLOC"))
    assert first["site"].endswith(f"test_api.py:{line}")
    path = result.write_report()
    assert os.path.exists(path) and os.path.exists(os.path.join(out, "report.md"))
    assert [m.phase for m in open_run(out).marks] == ["load"]


def test_steady_block_is_not_a_leak(tmp_path: Any) -> None:
    cache: dict[int, int] = {}
    with heapwatch.watch(out=str(tmp_path / "run"), interval=3600, trace="off") as run:
        for i in range(16):
            for k in range(300):
                cache[(i * 300 + k) % 400] = k
            run.snapshot()
    assert run.verdict == "no-leak"


def test_bad_arguments(tmp_path: Any) -> None:
    with pytest.raises(heapwatch.HeapwatchError, match="duration"):
        heapwatch.start(out=str(tmp_path / "a"), interval="fast")
    with pytest.raises(heapwatch.HeapwatchError, match="trace"):
        heapwatch.start(out=str(tmp_path / "b"), trace="sometimes")
