"""The agent that runs inside the target. Loads the stdlib only (psutil if the target has it)."""

from __future__ import annotations

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent.sampler import Agent, AgentConfig, current

__all__ = ["Agent", "AgentConfig", "current"]
