"""The sampler's boost window (``--trace sample``): bounded by samples per second."""

from __future__ import annotations

import types
from typing import Any

from heapwatch.agent import sites
from heapwatch.agent.sampler import Agent, AgentConfig


def test_the_boost_interval_widens_with_the_allocation_rate() -> None:
    assert sites.boost_interval(1024, None) == 1024  # rate unknown: as configured
    assert sites.boost_interval(1024, 1e6) == 1024  # a slow leak: 1 KiB (~1,000 samples/s)
    wide = sites.boost_interval(1024, 2.4e9)  # a service allocating 2.4 GB/s
    assert 2.4e9 / wide <= sites.BOOST_MAX_SAMPLES_S < 2.4e9 / (wide - 1)


def steer(monkeypatch: Any, rate: float | None, interval: int = 512 * 1024) -> tuple[list, list]:
    set_to: list[int] = []
    events: list[str] = []
    monkeypatch.setattr(sites, "set_sample_interval", set_to.append)
    cfg = AgentConfig(store="unused.sqlite", sample_interval=interval)
    fake = types.SimpleNamespace(config=cfg, _window_left=0, _cooldown=0, _sited=set(),
                                 _event=lambda kind, msg: events.append(msg))
    Agent._steer_sampling(fake, ["svc.CACHE"], rate)  # type: ignore[arg-type]
    return set_to, events


def test_a_fast_allocator_is_boosted_at_a_bounded_rate(monkeypatch: Any) -> None:
    set_to, events = steer(monkeypatch, 2.4e9)
    assert set_to == [sites.boost_interval(AgentConfig(store="unused.sqlite").sample_boost_interval, 2.4e9)]
    assert set_to[0] > 40_000 and f"~{set_to[0]} bytes" in events[0]
    set_to, _ = steer(monkeypatch, 1e6)
    assert set_to == [AgentConfig(store="unused.sqlite").sample_boost_interval]


def test_no_boost_when_it_would_sample_no_more_than_usual(monkeypatch: Any) -> None:
    set_to, events = steer(monkeypatch, 1e12)  # 1 TB/s: the bound is past 512 KiB
    assert set_to == [] and events == []
