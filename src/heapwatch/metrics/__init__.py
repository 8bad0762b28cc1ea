"""heapwatch's series for Prometheus: an exporter that reads the run store and its analysis.

``heapwatch run|attach ... --metrics HOST:PORT`` serves them from the CLI process (the
target opens no port); ``heapwatch.start(metrics="HOST:PORT")`` serves them from the
target itself, because the program asked. See docs/fleet.md for the series and rules.
"""

from __future__ import annotations

from heapwatch.metrics.exporter import Exporter, Follower, parse_listen, serve

__all__ = ["Exporter", "Follower", "parse_listen", "serve"]
