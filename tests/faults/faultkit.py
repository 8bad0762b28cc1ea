"""Helpers of the fault matrix (tests/faults): real processes, handshakes, greps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from typing import Any

from heapwatch.attach.diagnose import proc_state

__all__ = ["proc_state"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")


def heapwatch(*args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heapwatch", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)


def spawn(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "heapwatch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def write(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text))
    return path


def report(out: str) -> dict[str, Any]:
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition the code under test must reach (a state, not a guess at time)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def read_line(stream: Any, want: str, timeout: float = 60) -> str:
    """Read lines until one starts with ``want`` (a handshake)."""
    seen = []
    deadline = time.monotonic() + timeout
    for line in stream:
        seen.append(line)
        if line.startswith(want):
            return str(line)
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no line starting with {want!r}; got {''.join(seen)!r}")


def files_containing(root: str, needles: Iterable[str]) -> dict[str, list[str]]:
    """{needle: [files under root whose bytes contain it]} (text and binary alike, as
    UTF-8 and, for SQLite's sake, as UTF-16 too)."""
    needles = list(needles)
    hits: dict[str, list[str]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for n in needles:
                if n.encode() in data or n.encode("utf-16-le") in data:
                    hits.setdefault(n, []).append(os.path.relpath(path, root))
    return hits


def proc_status(pid: int, field: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def env_without_agent() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HEAPWATCH")}
