"""Agent registry for the impulse_queue scenario.

Each agent keeps an ``impulses`` inbox.  Impulses are appended by
``Agent.stimulate`` but the agent's ``think`` step only *peeks* at the most
recent impulses and never consumes (pops) anything, so every agent's inbox
grows without bound.
"""

from __future__ import annotations

import time


class Impulse:
    __slots__ = ("created", "kind", "source", "strength")

    def __init__(self, kind: str, strength: float, source: str, created: float) -> None:
        self.kind = kind
        self.strength = strength
        self.source = source
        self.created = created


class Agent:
    def __init__(self, name: str, threshold: float) -> None:
        self.name = name
        self.threshold = threshold
        self.impulses: list[Impulse] = []
        self.activation = 0.0
        self.fired = 0

    def stimulate(self, kind: str, strength: float, source: str) -> None:
        self.impulses.append(Impulse(kind, strength, source, time.monotonic()))  # LEAK-SITE

    def think(self) -> None:
        # Look at the last few impulses to update activation.  The inbox was
        # meant to be drained here (``self.impulses.clear()``) but never is.
        recent = self.impulses[-8:]
        self.activation = 0.8 * self.activation + sum(i.strength for i in recent) / 8
        if self.activation > self.threshold:
            self.fired += 1
            self.activation = 0.0


class AgentRegistry:
    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {
            "alpha": Agent("alpha", threshold=0.6),
            "beta": Agent("beta", threshold=0.7),
            "gamma": Agent("gamma", threshold=0.8),
        }

    def broadcast(self, kind: str, strength: float, source: str) -> None:
        for agent in self.agents.values():
            agent.stimulate(kind, strength, source)

    def step(self) -> None:
        for agent in self.agents.values():
            agent.think()


REGISTRY = AgentRegistry()
