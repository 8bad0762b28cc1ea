"""What every injection method has in common."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Injection:
    """How the code was placed, and what it cost the target."""

    how: str  # "pending-call" | "new-thread" | "deferred" | "remote-exec"
    version: str  # the target's Python version, as far as the method learnt it
    stopped_s: float  # how long the target was stopped (ptrace); 0 for remote-exec
    notes: list[str] = field(default_factory=list)


class Injector(Protocol):
    """A method: put ``code`` (one Python statement, see ``inject.entry_code``) into the
    target so that its main interpreter runs it, then leave."""

    name: str

    def inject(self) -> Injection: ...
