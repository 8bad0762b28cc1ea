"""What the fault tests share: running heapwatch, judging its errors, a small filesystem
of their own, and another real user (tests run as root; ``nobody`` is the other one)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
