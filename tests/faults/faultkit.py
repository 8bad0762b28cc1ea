"""What the fault tests share: running heapwatch, judging its errors, a small filesystem
of their own, another real user (tests run as root; ``nobody`` is the other one), real
processes with handshakes, and greps of what a run wrote."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from heapwatch.attach.diagnose import proc_state

__all__ = ["proc_state"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")
OTHER_UID = 65534  # nobody
OTHER_GID = 65534


def heapwatch(*args: str | bytes, timeout: float = 120, **kw: Any
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heapwatch", *args], capture_output=True,
                          text=True, errors="replace", timeout=timeout, **kw)


def write(path: Any, text: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text))
    return str(path)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, no traceback, and exactly one line that says what went wrong."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith(("heapwatch: error:", "Error:"))]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def as_other_user() -> Callable[[], None]:
    def drop() -> None:
        os.setgroups([])
        os.setgid(OTHER_GID)
        os.setuid(OTHER_UID)
    return drop


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to act as another user (nobody) and to mount a filesystem")


@contextlib.contextmanager
def small_fs(path: str, size: str = "4m", options: str = "") -> Iterator[str]:
    """A tmpfs of ``size`` mounted at ``path`` for the test alone (a full disk that is not
    the machine's); skipped where mounting is not allowed."""
    need_root()
    os.makedirs(path, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


@contextlib.contextmanager
def read_only_view(source: str, path: str) -> Iterator[str]:
    """``source`` seen read-only at ``path`` (a read-only bind mount): even root cannot
    write there."""
    need_root()
    os.makedirs(path, exist_ok=True)
    bind = subprocess.run(["mount", "--bind", source, path], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bind.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,ro,bind", path], capture_output=True,
                            text=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot make a read-only bind mount here: {ro.stderr.strip()}")
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


def fill(path: str) -> None:
    """Fill the filesystem holding ``path`` (a small tmpfs of the test's) to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)


def spawn(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "heapwatch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


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


def agent_errors(rep: dict[str, Any]) -> list[str]:
    """report.json's agent.errors but a walk cut by its CPU budget (a busy machine makes it
    likelier; it is recorded for the reader, and is no failure of the agent)."""
    return [e for e in rep["agent"]["errors"] if not e.startswith("paths: walk cut")]
