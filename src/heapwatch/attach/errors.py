"""Errors of ``heapwatch attach``; the CLI turns them into one line and exit code 2."""

from __future__ import annotations

from heapwatch.errors import HeapwatchError


class AttachError(HeapwatchError):
    """The agent could not be put into (or taken out of) a running process."""


class AttachPermissionError(AttachError):
    """The kernel would refuse (or refused) to let heapwatch trace the process."""


class NoDebuggerError(AttachError):
    """No usable debugger for the method asked for."""


class AttachInterrupted(AttachError):
    """Ctrl-C before the agent started."""

    exit_code = 130
