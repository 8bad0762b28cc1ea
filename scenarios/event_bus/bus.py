"""A tiny synchronous publish/subscribe bus used by the event_bus scenario."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

Listener = Callable[[str, Any], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def publish(self, topic: str, payload: Any) -> int:
        delivered = 0
        for listener in list(self._listeners):
            listener(topic, payload)
            delivered += 1
        return delivered


BUS = EventBus()
