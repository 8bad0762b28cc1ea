"""Ending a test's child processes on every path out of the test."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any


def reap(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` if it still runs, wait for it and close its pipes.

    Call it in a ``finally``: a Popen left running (or its pipes left open) when a test
    fails or skips is found by gc later, in whatever test then runs on that worker, and
    its ResourceWarning fails that test instead. Killing only the direct child and
    waiting for it (not ``communicate()``) cannot hang on a grandchild that still holds
    the pipes, as the target of a killed ``heapwatch run`` does."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):  # unflushed input to a dead child
                stream.close()
