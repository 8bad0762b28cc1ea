"""One attach per target: the loser of a race is told who holds the target."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from heapwatch.attach import lock
from heapwatch.attach.errors import AttachError


def test_the_loser_names_the_holder_even_before_it_wrote_its_pid(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The holder is caught in the instant between its flock and writing its pid: the
    # file is locked and empty. The kernel's lock table already names it.
    monkeypatch.setattr(lock, "_directory", lambda: str(tmp_path))
    path = tmp_path / "attach-4242.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys
        fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert path.read_text() == ""
        with pytest.raises(AttachError) as exc:
            lock.AttachLock(4242).acquire()
        assert f"another heapwatch attach (heapwatch process {holder.pid}) is attaching" in str(
            exc.value)
    finally:
        holder.communicate(timeout=10)  # closes its stdin: it ends


def test_the_lock_is_taken_and_given_back(tmp_path: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "_directory", lambda: str(tmp_path))
    with lock.AttachLock(4243) as held:
        assert os.path.exists(held.path)
        assert lock._read_holder(held.fd) == os.getpid()
        fd = os.open(held.path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not os.path.exists(held.path)
