"""Error types. Library code raises these; only ``heapwatch.cli`` turns them into exit codes."""

from __future__ import annotations

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401


class HeapwatchError(Exception):
    """Something went wrong that a user can act on; the message says what to do."""

    exit_code = 2


class UsageError(HeapwatchError):
    """Bad input: a malformed option, duration or path."""


class StoreError(HeapwatchError):
    """A run store could not be opened, read or written."""


class StoreFullError(StoreError):
    """The disk (or the file size limit) is full: the write was rolled back, nothing else
    was lost."""


class SchemaError(StoreError):
    """A run store written by another (newer or unknown) schema version."""


class AgentError(HeapwatchError):
    """The agent could not be started, reached or stopped."""


class LaunchError(HeapwatchError):
    """A target command could not be started."""


class ReportError(HeapwatchError):
    """Some reports could not be written (a full disk, a read-only directory). ``written``
    holds the ones that were ({format: path}), ``failed`` why the others were not."""

    def __init__(self, message: str, written: dict[str, str] | None = None,
                 failed: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.written = dict(written or {})
        self.failed = dict(failed or {})


class MetricsError(HeapwatchError):
    """The metrics endpoint could not be served (the port, prometheus_client missing)."""
