"""History across soak runs: which findings are new, still present, or gone since the
last run of the same service.

``--history`` takes a SQLite file (the default, one machine) or a PostgreSQL URL
(``postgresql://user@host/db``: one history shared by many services and hosts). Both
backends keep the same two tables, runs and their findings, behind :class:`Backend`;
everything that compares runs lives here, once.

Each finding is known by its fingerprint (kind, owner path, type, site file), so the next
run of a service can say which findings are new, still present, or gone, and how rates
moved. Runs are grouped by service (``--service``, default: the command's script or
module name), so many services can share one history.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from heapwatch.errors import StoreError
from heapwatch.rundir import shown

HISTORY_VERSION = 1
_URL_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Comparison:
    previous_run: int | None
    status: dict[str, str]          # fingerprint -> new | still present
    previous_rate: dict[str, float]  # fingerprint -> per_hour last time
    gone: list[dict[str, Any]]       # findings of the previous run absent now

    def as_dict(self) -> dict[str, Any]:
        return {"previous_run": self.previous_run, "gone": self.gone}


@dataclass(frozen=True)
class RunRecord:
    """One soak run as the history keeps it."""

    service: str
    verdict: str
    passed: bool
    command: list[str] = field(default_factory=list)
    run_dir: str | None = None
    duration_s: float | None = None
    host: str = field(default_factory=socket.gethostname)
    t: float = field(default_factory=time.time)


class Backend(Protocol):
    """Where runs and findings are kept. Every method is one transaction; many processes
    may use the same history at once."""

    where: str

    def last_run(self, service: str) -> tuple[int, list[dict[str, Any]]] | None:
        """The newest run of ``service`` (runs recorded before services existed match any
        service) and its findings."""

    def add_run(self, run: RunRecord, findings: list[dict[str, Any]]) -> int:
        """Record a run and its findings (report.json dicts); return the run's id."""

    def runs(self, last: int, service: str | None = None) -> list[dict[str, Any]]:
        """The last ``last`` runs per service (of one service when given), oldest first,
        each with its findings."""

    def close(self) -> None: ...


def is_url(location: str) -> bool:
    return location.startswith(_URL_SCHEMES)


def safe_location(location: str) -> str:
    """``location`` with any password in a URL hidden, for messages (a file's path as
    text a person can read)."""
    if not is_url(location):
        return shown(location)
    scheme, _, rest = location.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return location
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in userinfo else ''}@{hostpart}"


def open_history(location: str, create: bool = True) -> Backend:
    """The backend for ``location``: a PostgreSQL URL or a SQLite file. With ``create``
    false, a missing SQLite file is an error (reading commands)."""
    if is_url(location):
        from heapwatch.history.postgres import PostgresHistory

        return PostgresHistory(location)
    from heapwatch.history.sqlite import SqliteHistory

    if not create and not os.path.exists(location):
        raise StoreError(f"no history at {shown(location)}")
    return SqliteHistory(location)


def exists(location: str) -> bool:
    """False only for a SQLite history file that was never written (nothing to compare)."""
    return is_url(location) or os.path.exists(location)


def service_name(command: list[str]) -> str:
    """A service's default name (and an attached run's): its script's stem or ``-m``
    module (``app`` for ``python app.py``), else the program's name."""
    for i, arg in enumerate(command[1:], 1):
        if arg == "-m" and i + 1 < len(command):
            return command[i + 1]
        if arg == "-c":
            break
        if not arg.startswith("-"):
            return os.path.splitext(os.path.basename(arg))[0]
    return os.path.basename(command[0]) if command else "service"


def compare(location: str, findings: list[dict[str, Any]], service: str) -> Comparison:
    """Compare ``findings`` (report.json dicts) with the last run of ``service``."""
    fresh = Comparison(None, {f["fingerprint"]: "new" for f in findings}, {}, [])
    if not exists(location):
        return fresh
    backend = open_history(location)
    try:
        last = backend.last_run(service)
    finally:
        backend.close()
    if last is None:
        return fresh
    run_id, previous = last
    prev = {p["fingerprint"]: p for p in previous}
    now = {f["fingerprint"] for f in findings}
    return Comparison(
        previous_run=run_id,
        status={fp: "still present" if fp in prev else "new" for fp in now},
        previous_rate={fp: prev[fp]["per_hour"] for fp in now if fp in prev},
        gone=[p for fp, p in prev.items() if fp not in now],
    )


def record(location: str, run: dict[str, Any], verdict: str, passed: bool,
           findings: list[dict[str, Any]], run_dir: str, service: str) -> int:
    """Add a run (report.json's ``run``) and its findings to the history."""
    backend = open_history(location)
    try:
        return backend.add_run(
            RunRecord(service=service, verdict=verdict, passed=passed,
                      command=list(run.get("command") or []), run_dir=run_dir,
                      duration_s=run.get("duration_s")),
            findings)
    finally:
        backend.close()


def recent(location: str, last: int = 10, service: str | None = None) -> list[dict[str, Any]]:
    """The last ``last`` runs of each service (or of ``service``), oldest first, each with
    its findings, their ``status`` against the service's run before (None for a service's
    first run), and the fingerprints ``gone`` since then."""
    backend = open_history(location, create=False)
    try:
        runs = backend.runs(last + 1, service)  # one more: the status of the oldest shown
    finally:
        backend.close()
    before: dict[str, set[str] | None] = {}
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["service"]] = counts.get(r["service"], 0) + 1
    out: list[dict[str, Any]] = []
    for r in runs:
        svc = r["service"]
        prev = before.get(svc)
        now = {f["fingerprint"] for f in r["findings"]}
        r["gone"] = sorted(prev - now) if prev is not None else []
        for f in r["findings"]:
            f["status"] = None if prev is None else (
                "still present" if f["fingerprint"] in prev else "new")
        if svc in before or counts[svc] <= last:
            out.append(r)
        before[svc] = now
    return out
