"""Recent-request ring buffer and latency stats (request_log scenario)."""

from __future__ import annotations

import collections


class RequestRecord:
    def __init__(self, req_id: int, route: str, status: int, latency_ms: float) -> None:
        self.req_id = req_id
        self.route = route
        self.status = status
        self.latency_ms = latency_ms
        self.tags = {"route": route, "ok": status < 500}


RECENT: collections.deque[RequestRecord] = collections.deque(maxlen=256)
ROUTE_COUNTS: collections.Counter[str] = collections.Counter()


def record(req_id: int, route: str, status: int, latency_ms: float) -> None:
    RECENT.append(RequestRecord(req_id, route, status, latency_ms))
    ROUTE_COUNTS[route] += 1


def p95_latency() -> float:
    values = sorted(r.latency_ms for r in RECENT)
    return values[int(len(values) * 0.95)] if values else 0.0
